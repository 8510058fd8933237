import { Errno, TraceRecorder, asHostPasid, sourceId } from "@vsva/kernel";
import { describe, expect, it } from "vitest";
import type { IommuDomain } from "./domain.js";
import { mockHost } from "./testing/mock-host.js";
import { encodeCacheInvalidateInfo } from "./uapi/cache-invalidate.js";
import { CacheInvType, IOMMU_SVA_GPASID_VAL, InvGranularity, InvPasidFlag, PasidFormat } from "./uapi/constants.js";
import { type GpasidBindFields, encodeGpasidBindData } from "./uapi/gpasid-bind.js";
import { errnoOf } from "@vsva/kernel/testing";

const bind = (hpasid: number, more: GpasidBindFields = {}) =>
  encodeGpasidBindData({ hpasid: BigInt(hpasid), gpasid: 101n, flags: BigInt(IOMMU_SVA_GPASID_VAL), gpgd: 0x5000n, ...more });

/** Host PASIDs the tests bind, allocated in the VM's set (the owner check needs them live). */
const PASIDS = [1, 2, 3, 5, 7, 9, 63, 0x40, 0x41];

/** A VM's IOASID set on `h`'s namespace with {@link PASIDS} allocated in it. */
function vmSet(h: ReturnType<typeof mockHost>) {
  const set = h.core.ioasid.allocSet({ vm: 1 }, 64, "mm");
  for (const p of PASIDS) h.core.ioasid.alloc(set, p, p);
  return set;
}

/** A PASID-capable physical device in a nesting parent (what VFIO's nesting container sets up), plus two mdevs on it. */
function vm() {
  const h = mockHost();
  const pdev = h.core.probeDevice(h.iommu, { name: "dsa", sid: sourceId(0x6a, 1, 0), pasidWidth: 20 });
  h.core.enableFeature(pdev, "sva");
  h.core.enableFeature(pdev, "aux");
  const set = vmSet(h);
  const parent = h.core.domainAlloc(pdev, { type: "unmanaged", nestingParent: true, ioasidSet: set });
  h.core.attachDevice(parent, pdev);
  const mdev1 = h.core.addSubDevice(pdev, "wq0");
  const mdev2 = h.core.addSubDevice(pdev, "wq1");
  return { ...h, pdev, parent, mdev1, mdev2, set };
}

describe("aux default PASIDs (iommu_aux_get_pasid)", () => {
  it("gives an aux-attached sub-device its domain's default PASID, the same for siblings, and refuses anything else", () => {
    const { core, parent, pdev, mdev1, mdev2 } = vm();
    expect(errnoOf(() => core.auxGetPasid(parent, mdev1))).toBe(Errno.EINVAL);
    core.attachSubDevice(parent, mdev1);
    core.attachSubDevice(parent, mdev2);
    const p = core.auxGetPasid(parent, mdev1);
    expect(core.auxGetPasid(parent, mdev2)).toBe(p);
    expect(errnoOf(() => core.auxGetPasid(parent, pdev))).toBe(Errno.EINVAL);
    const other = core.domainAlloc(pdev, { type: "unmanaged", nestingParent: false });
    expect(errnoOf(() => core.auxGetPasid(other, mdev1))).toBe(Errno.EINVAL);
    core.detachSubDevice(parent, mdev2);
    expect(errnoOf(() => core.auxGetPasid(parent, mdev2))).toBe(Errno.EINVAL);
    expect(errnoOf(() => core.auxGetPasid(null, mdev1))).toBe(Errno.EINVAL);
  });
});

describe("bind_gpasid through the core", () => {
  it("programs the PASID entry once and returns a nested domain over the parent", () => {
    const { core, mock, parent, pdev } = vm();
    const nested = core.bindGpasid(parent, pdev, bind(0x40));
    expect(nested.type).toBe("nested");
    expect(nested.parent).toBe(parent);
    expect([nested.hpasid, nested.gpasid]).toEqual([0x40, 101]);
    expect(mock.pasidEntries.get("dsa/64")?.data.gpgd).toBe(0x5000n);
  });

  it("refuses binding the same PASID twice on one device (EBUSY, as the v11 VT-d bind_gpasid review asked)", () => {
    const { core, parent, pdev } = vm();
    core.bindGpasid(parent, pdev, bind(0x40));
    expect(errnoOf(() => core.bindGpasid(parent, pdev, bind(0x40)))).toBe(Errno.EBUSY);
  });

  it("counts sibling mdevs on one physical device: the driver sees only the first bind and the last unbind", () => {
    const { core, mock, kernel, parent, mdev1, mdev2 } = vm();
    const rec = new TraceRecorder(kernel.trace);
    const domainsBefore = core.liveDomains;
    core.attachSubDevice(parent, mdev1);
    core.attachSubDevice(parent, mdev2);
    const n = core.bindGpasid(parent, mdev1, bind(0x41));
    core.bindGpasid(parent, mdev2, bind(0x41));
    expect(n.users).toBe(2);
    expect(mock.pasidEntries.size).toBe(1);
    core.unbindGpasid(parent, mdev1, bind(0x41));
    expect(mock.pasidEntries.size).toBe(1);
    core.unbindGpasid(parent, mdev2, bind(0x41));
    expect(mock.pasidEntries.size).toBe(0);
    expect(rec.ofKind("iommu.bind-gpasid").map((e) => e.payload)).toEqual([
      { users: 1, driverCalled: true },
      { users: 2, driverCalled: false },
    ]);
    expect(rec.ofKind("iommu.unbind-gpasid").map((e) => e.payload.driverCalled)).toEqual([false, true]);
    expect(core.liveDomains).toBe(domainsBefore);
  });

  it("refuses a sibling binding the PASID to a different first level (EBUSY)", () => {
    const { core, parent, mdev1, mdev2 } = vm();
    core.attachSubDevice(parent, mdev1);
    core.attachSubDevice(parent, mdev2);
    core.bindGpasid(parent, mdev1, bind(0x41));
    expect(errnoOf(() => core.bindGpasid(parent, mdev2, bind(0x41, { gpgd: 0x9000n })))).toBe(Errno.EBUSY);
  });

  it("binds one PASID on two devices in two nesting parents of the VM (the driver programs each), refusing another first level on either (EBUSY)", () => {
    const v = vm();
    const { core, mock, pdev, parent, set } = v;
    const pdev2 = core.probeDevice(v.iommu, { name: "dsa2", sid: sourceId(0x6b, 1, 0), pasidWidth: 20 });
    core.enableFeature(pdev2, "sva");
    const parent2 = core.domainAlloc(pdev2, { type: "unmanaged", nestingParent: true, ioasidSet: set });
    core.attachDevice(parent2, pdev2);
    core.bindGpasid(parent, pdev, bind(0x40));
    // Another first level (or guest PASID) for the PASID on the other device: refused before the driver is called.
    expect(errnoOf(() => core.bindGpasid(parent2, pdev2, bind(0x40, { gpgd: 0x9000n })))).toBe(Errno.EBUSY);
    expect(errnoOf(() => core.bindGpasid(parent2, pdev2, bind(0x40, { gpasid: 102n })))).toBe(Errno.EBUSY);
    expect(errnoOf(() => core.bindGpasid(parent2, pdev2, bind(0x40, { vtd: { emt: 1 } })))).toBe(Errno.EBUSY);
    expect([...mock.pasidEntries.keys()]).toEqual(["dsa/64"]);
    const n2 = core.bindGpasid(parent2, pdev2, bind(0x40));
    expect([...mock.pasidEntries.keys()].sort()).toEqual(["dsa/64", "dsa2/64"]);
    expect(n2.parent).toBe(parent2);
    // Each record is judged on its own parent: a device is invalidated and unbound only over its own.
    const inv = encodeCacheInvalidateInfo({ cache: CacheInvType.IOTLB, granularity: InvGranularity.PASID, pasidInfo: { flags: InvPasidFlag.PASID, pasid: 0x40n } });
    core.cacheInvalidate(parent2, pdev2, inv);
    expect(errnoOf(() => core.cacheInvalidate(parent, pdev2, inv))).toBe(Errno.EINVAL);
    expect(errnoOf(() => core.unbindGpasid(parent, pdev2, bind(0x40)))).toBe(Errno.EINVAL);
    core.unbindGpasid(parent, pdev, bind(0x40));
    expect([...mock.pasidEntries.keys()]).toEqual(["dsa2/64"]);
    // With the first device gone, its parent binds the PASID again only with the same first level.
    expect(errnoOf(() => core.bindGpasid(parent, pdev, bind(0x40, { gpgd: 0x9000n })))).toBe(Errno.EBUSY);
    core.unbindGpasid(parent2, pdev2, bind(0x40));
    expect(mock.pasidEntries.size).toBe(0);
    core.bindGpasid(parent, pdev, bind(0x40, { gpgd: 0x9000n }));
  });

  it("refuses nesting operations on an mdev that is not IOMMU-backed (EINVAL, no crash)", () => {
    const h = mockHost();
    const pdev = h.core.probeDevice(h.iommu, { name: "p", sid: sourceId(1, 0, 0), pasidWidth: 20 });
    const parent = h.core.domainAlloc(pdev, { type: "unmanaged", nestingParent: true, ioasidSet: vmSet(h) });
    const mdev = h.core.addSubDevice(pdev, "m");
    expect(errnoOf(() => h.core.attachSubDevice(parent, mdev))).toBe(Errno.EINVAL);
    expect(errnoOf(() => h.core.bindGpasid(parent, mdev, bind(5)))).toBe(Errno.EINVAL);
    expect(errnoOf(() => h.core.cacheInvalidate(parent, mdev, encodeCacheInvalidateInfo({ cache: 1 })))).toBe(Errno.EINVAL);
  });

  it.each<[string, (v: ReturnType<typeof vm>) => [IommuDomain, Uint8Array], number]>([
    ["a domain that is not a nesting parent", (v) => [v.core.domainAlloc(v.pdev, { type: "unmanaged", nestingParent: false }), bind(1)], Errno.EINVAL],
    ["a device not attached to the domain", (v) => [v.core.domainAlloc(v.pdev, { type: "unmanaged", nestingParent: true, ioasidSet: v.set }), bind(1)], Errno.EINVAL],
    ["a PASID that was never allocated", (v) => [v.parent, bind(0x77)], Errno.ENOENT],
    ["a PASID of another VM's set", (v) => [v.parent, bind(v.core.ioasid.alloc(v.core.ioasid.allocSet({ vm: 2 }, 4, "mm"), 1, 0xfffff))], Errno.EACCES],
    ["a malformed struct", (v) => [v.parent, bind(1, { version: 2 })], Errno.EINVAL],
    ["an hpasid past the device's limit", (v) => [v.parent, bind(1 << 20)], Errno.EINVAL],
  ])("refuses %s", (_what, make, errno) => {
    const v = vm();
    const [domain, bytes] = make(v);
    expect(errnoOf(() => v.core.bindGpasid(domain, v.pdev, bytes))).toBe(errno);
    expect(v.mock.pasidEntries.size).toBe(0);
  });

  it("honours the device's own PASID limit (as the 2017 SVA API review asked)", () => {
    const h = mockHost();
    const pdev = h.core.probeDevice(h.iommu, { name: "p", sid: sourceId(1, 0, 0), pasidWidth: 20 });
    h.core.enableFeature(pdev, "sva", { maxPasid: 64 });
    const parent = h.core.domainAlloc(pdev, { type: "unmanaged", nestingParent: true, ioasidSet: vmSet(h) });
    h.core.attachDevice(parent, pdev);
    expect(errnoOf(() => h.core.bindGpasid(parent, pdev, bind(64)))).toBe(Errno.EINVAL);
    expect(errnoOf(() => h.core.bindGpasid(parent, pdev, bind(63)))).toBe(0);
  });

  it("fails an unbind of a PASID that is not bound with EINVAL, and rate-limits the warnings", () => {
    const { core, kernel, parent, pdev } = vm();
    for (let i = 0; i < 20; i++) expect(errnoOf(() => core.unbindGpasid(parent, pdev, bind(7)))).toBe(Errno.EINVAL);
    expect(kernel.log.lines.length).toBe(10);
    expect(kernel.log.suppressed("iommu.unbind-gpasid")).toBe(10);
  });

  it("unbinds everything when the device goes away or the domain is detached", () => {
    const { core, mock, pages, parent, pdev, mdev1 } = vm();
    core.attachSubDevice(parent, mdev1);
    core.bindGpasid(parent, pdev, bind(1));
    core.bindGpasid(parent, mdev1, bind(2));
    core.detachDevice(parent, pdev);
    expect([...mock.pasidEntries.keys()]).toEqual(["dsa/2"]);
    core.releaseDevice(pdev);
    expect(mock.pasidEntries.size).toBe(0);
    core.domainFree(parent);
    expect(pages.live()).toEqual([]);
    expect(core.liveDomains).toBe(0);
  });

  it("leaves no binding behind when the bind fails at any injection point", () => {
    for (const point of ["iommu.bind-gpasid", "mock.bind-gpasid"]) {
      const { core, mock, kernel, parent, pdev } = vm();
      kernel.faults.failPoint(point);
      expect(errnoOf(() => core.bindGpasid(parent, pdev, bind(3)))).toBe(Errno.ENOMEM);
      expect(mock.pasidEntries.size).toBe(0);
      expect(parent.type === "unmanaged" && parent.nested.size).toBe(0);
      expect(errnoOf(() => core.bindGpasid(parent, pdev, bind(3)))).toBe(0);
    }
  });
});

describe("the core owns the binding record", () => {
  it("a driver's FREE report drops the record without calling the driver back; domain free after it unbinds nothing twice", () => {
    const { core, mock, kernel, parent, pdev, mdev1, set } = vm();
    const rec = new TraceRecorder(kernel.trace);
    core.attachSubDevice(parent, mdev1);
    const nested = core.bindGpasid(parent, pdev, bind(0x40));
    core.bindGpasid(parent, mdev1, bind(0x40));
    const live = core.liveDomains;
    // What a driver does on an IOASID FREE: tear its entry down itself, then report.
    mock.pasidEntries.delete("dsa/64");
    if (parent.type !== "unmanaged" || parent.driver.kind !== "nesting-parent") throw new Error("expected a nesting parent");
    mock.uplink?.gpasidFreed(parent.driver, nested.hpasid);
    expect(nested.freed).toBe(true);
    expect(parent.nested.size).toBe(0);
    expect(core.liveDomains).toBe(live - 1);
    expect(rec.ofKind("iommu.gpasid-freed").map((e) => e.payload.users)).toEqual([2]);
    // A report for what the core does not know is ignored.
    mock.uplink?.gpasidFreed(parent.driver, nested.hpasid);
    expect(core.liveDomains).toBe(live - 1);
    // The mock throws on an unbind of an entry it does not have: teardown must not reach it.
    core.detachSubDevice(parent, mdev1);
    core.detachDevice(parent, pdev);
    core.domainFree(parent);
    expect(set.refcount).toBe(1);
  });

  it("an unbind of a PASID that was never allocated is ENOENT (ioasid_find), of one live but not bound EINVAL", () => {
    const { core, parent, pdev } = vm();
    expect(errnoOf(() => core.unbindGpasid(parent, pdev, bind(0x99)))).toBe(Errno.ENOENT);
    expect(errnoOf(() => core.unbindGpasid(parent, pdev, bind(3)))).toBe(Errno.EINVAL);
  });

  it("the nesting parent holds its IOASID set until freed; a bad set fails the allocation with nothing left", () => {
    const h = mockHost();
    const pdev = h.core.probeDevice(h.iommu, { name: "p", sid: sourceId(1, 0, 0), pasidWidth: 20 });
    const set = vmSet(h);
    const parent = h.core.domainAlloc(pdev, { type: "unmanaged", nestingParent: true, ioasidSet: set });
    expect(set.refcount).toBe(2);
    h.core.domainFree(parent);
    expect(set.refcount).toBe(1);
    const live = h.core.liveDomains;
    const driverDomains = h.mock.domains.size;
    h.core.ioasid.setPut(set);
    expect(errnoOf(() => h.core.domainAlloc(pdev, { type: "unmanaged", nestingParent: true, ioasidSet: set }))).toBe(Errno.EINVAL);
    expect(h.core.liveDomains).toBe(live);
    expect(h.mock.domains.size).toBe(driverDomains);
  });
});

describe("cache invalidation through the core", () => {
  it("passes a valid invalidation for a bound PASID to the driver on the physical device", () => {
    const { core, mock, parent, pdev, mdev1 } = vm();
    core.attachSubDevice(parent, mdev1);
    core.bindGpasid(parent, mdev1, bind(9));
    const info = core.cacheInvalidate(parent, mdev1, encodeCacheInvalidateInfo({ cache: CacheInvType.IOTLB, granularity: InvGranularity.PASID, pasidInfo: { flags: InvPasidFlag.PASID, pasid: 9n } }));
    expect(info.granularity).toBe(InvGranularity.PASID);
    expect(mock.invalidations).toHaveLength(1);
    expect(mock.invalidations[0]?.dev).toBe(pdev);
  });

  it("refuses an invalidation naming a PASID the caller has not bound (EINVAL)", () => {
    const { core, mock, parent, pdev } = vm();
    const bytes = encodeCacheInvalidateInfo({ cache: CacheInvType.IOTLB, granularity: InvGranularity.PASID, pasidInfo: { flags: InvPasidFlag.PASID, pasid: 9n } });
    expect(errnoOf(() => core.cacheInvalidate(parent, pdev, bytes))).toBe(Errno.EINVAL);
    expect(mock.invalidations).toHaveLength(0);
  });
});

describe("nesting info", () => {
  it("comes from the driver for a nesting parent, and is ENODEV for any other domain", () => {
    const { core, parent, pdev } = vm();
    expect(core.nestingInfo(parent).format).toBe(PasidFormat.INTEL_VTD);
    expect(errnoOf(() => core.nestingInfo(core.domainAlloc(pdev, { type: "unmanaged", nestingParent: false })))).toBe(Errno.ENODEV);
  });
});

describe("page requests of a PASID bound through a sub-device (an mdev in a guest)", () => {
  const request = (pasid: number, grpid = 3) => ({ pasid: asHostPasid(pasid), addr: 0x7000, read: true, write: false, exec: false, priv: false, grpid, last: true });

  it("go to the sub-device's handler, not the physical device's; the answer on the sub-device reaches the physical device once; another PASID still goes to the physical device's handler", () => {
    const { core, mock, parent, pdev, mdev1 } = vm();
    core.attachSubDevice(parent, mdev1);
    core.bindGpasid(parent, mdev1, bind(0x40));
    const toMdev: number[] = [];
    const toPdev: number[] = [];
    core.unregisterDeviceFaultHandler(pdev);
    core.registerDeviceFaultHandler(pdev, (_d, f) => (toPdev.push(f.pasid ?? -1), true));
    core.registerDeviceFaultHandler(mdev1, (d, f) => (expect(d).toBe(mdev1), toMdev.push(f.pasid ?? -1), true));
    expect(core.reportDeviceFault(pdev, request(0x40))).toBe(true);
    expect(core.reportDeviceFault(pdev, request(0x41))).toBe(true);
    expect([toMdev, toPdev]).toEqual([[0x40], [0x41]]);
    // The group is pending on the sub-device it went to: answering it on the physical device is a response to nothing.
    expect(errnoOf(() => core.pageResponse(pdev, { pasid: asHostPasid(0x40), grpid: 3, code: "success" }))).toBe(Errno.EINVAL);
    core.pageResponse(mdev1, { pasid: asHostPasid(0x40), grpid: 3, code: "success" });
    expect(mock.responses.map((r) => [r.dev, r.response.pasid, r.response.code])).toEqual([[pdev, 0x40, "success"]]);
    expect(errnoOf(() => core.pageResponse(mdev1, { pasid: asHostPasid(0x40), grpid: 3, code: "success" }))).toBe(Errno.EINVAL);
  });

  it("a sub-device without a handler, or with the PASID not bound through it, leaves the request to the physical device's", () => {
    const { core, parent, pdev, mdev1, mdev2 } = vm();
    core.attachSubDevice(parent, mdev1);
    core.attachSubDevice(parent, mdev2);
    core.bindGpasid(parent, mdev1, bind(0x40));
    const toPdev: number[] = [];
    const toMdev2: number[] = [];
    core.unregisterDeviceFaultHandler(pdev);
    core.registerDeviceFaultHandler(pdev, (_d, f) => (toPdev.push(f.pasid ?? -1), true));
    core.registerDeviceFaultHandler(mdev2, (_d, f) => (toMdev2.push(f.pasid ?? -1), true));
    core.reportDeviceFault(pdev, request(0x40));
    expect([toPdev, toMdev2]).toEqual([[0x40], []]);
  });

  it("groups the sub-device's owner never answered are answered invalid when its handler goes, or when the sub-device goes", () => {
    for (const end of ["unregister", "release"] as const) {
      const { core, mock, parent, pdev, mdev1 } = vm();
      core.attachSubDevice(parent, mdev1);
      core.bindGpasid(parent, mdev1, bind(0x40));
      core.registerDeviceFaultHandler(mdev1, () => true);
      core.reportDeviceFault(pdev, request(0x40, 5));
      if (end === "unregister") core.unregisterDeviceFaultHandler(mdev1);
      else core.releaseDevice(mdev1);
      expect(mock.responses.map((r) => [r.dev, r.response.grpid, r.response.code])).toEqual([[pdev, 5, "invalid"]]);
    }
  });
});
