import { describe, expect, it } from "vitest";
import { Errno, TraceRecorder, asHostPasid } from "@vsva/kernel";
import { errnoOf } from "@vsva/kernel/testing";
import { IoasidCore } from "@vsva/ioasid";
import { CacheInvType, type GpasidBindData, type IommuDevice, type IommuDomain, InvGranularity, InvPasidFlag, encodeCacheInvalidateInfo } from "@vsva/iommu-core";
import { VtdNestingDomain } from "@vsva/intel-svm";
import { GPA_DATA, GUEST_HPA, GVA, type VmHost, vmHost } from "./nested-host.js";
import { PATTERN, bindBytes, dmaWrite } from "./test-host.js";

/** Two mdevs of the VM's physical device, aux-attached to its nesting parent (the path VFIO takes for mdevs). */
function mdevs(vm: VmHost): [IommuDevice, IommuDevice] {
  const a = vm.core.addSubDevice(vm.pdev, "wq0");
  const b = vm.core.addSubDevice(vm.pdev, "wq1");
  vm.core.attachSubDevice(vm.parent, a);
  vm.core.attachSubDevice(vm.parent, b);
  return [a, b];
}

/** The unit's fault reports for `hpasid` (recorded in an FRCD register or suppressed). */
function faultsOf(vm: VmHost, hpasid: number): boolean[] {
  const out: boolean[] = [];
  vm.kernel.trace.subscribe((e) => {
    if (e.kind === "vtd.fault" && e.payload.pasid === hpasid) out.push(e.payload.recorded);
  });
  return out;
}

/** Turns ATS off on the endpoint: its DMA goes untranslated to the unit, whose fault path then records (or not). */
function noAts(vm: VmHost): void {
  vm.ep.configWrite(vm.ep.config.offsets.ats + 6, 2, 0);
}

/**
 * The nesting life cycle as VFIO will drive it: through IommuCore only, on
 * the VT-d driver, with the public exports of both packages.
 */
describe("the IOASID set is fixed when the nesting domain is allocated", () => {
  it("the driver's domain gets the set from the core's allocation request, and the domain holds a set reference until it is freed", () => {
    const vm = vmHost();
    expect(vm.vtd).toBeInstanceOf(VtdNestingDomain);
    expect(vm.vtd.ioasidSet).toBe(vm.set);
    expect(vm.parent.ioasidSet).toBe(vm.set);
    expect(vm.set.refcount).toBe(2);
    vm.core.detachDevice(vm.parent, vm.pdev);
    vm.core.domainFree(vm.parent);
    expect(vm.set.refcount).toBe(1);
  });

  it("refuses a set the host's IOASID namespace does not know (EINVAL), leaving no domain behind", () => {
    const vm = vmHost();
    const foreign = new IoasidCore({ scheduler: vm.kernel.scheduler, trace: vm.kernel.trace, faults: vm.kernel.faults, log: vm.kernel.log, name: "other-pasid" });
    const theirs = foreign.allocSet({ vm: 9 }, 4, "mm");
    const live = vm.core.liveDomains;
    const pages = vm.pages.stats.livePages;
    expect(errnoOf(() => vm.core.domainAlloc(vm.pdev, { type: "unmanaged", nestingParent: true, ioasidSet: theirs }))).toBe(Errno.EINVAL);
    expect(vm.core.liveDomains).toBe(live);
    expect(vm.pages.stats.livePages).toBe(pages);
  });

  it("the core checks the set owns the PASID before it calls the driver: another VM's PASID is EACCES with no driver work and no reference taken", () => {
    const vm = vmHost();
    const other = vm.ioasid.allocSet({ vm: 2 }, 4, "mm");
    const theirs = vm.ioasid.alloc(other, 1, 0xfffff);
    const driverLines = (): number => vm.kernel.log.lines.filter((l) => l.key.startsWith("dmar0.")).length;
    const before = driverLines();
    expect(errnoOf(() => vm.core.bindGpasid(vm.parent, vm.pdev, bindBytes(theirs, { gpgd: vm.gpgd })))).toBe(Errno.EACCES);
    expect(errnoOf(() => vm.core.unbindGpasid(vm.parent, vm.pdev, bindBytes(theirs, { gpgd: vm.gpgd })))).toBe(Errno.EACCES);
    expect(driverLines()).toBe(before);
    expect(vm.ioasid.refcount(theirs)).toBe(1);
    expect(vm.drv.hw.device(vm.pdev).table.isPresent(theirs)).toBe(false);
    expect(dmaWrite(vm.ep, GVA, PATTERN, theirs)).toBe("translationFault");
  });
});

describe("a FREE while bound: the driver reports its teardown and the core drops its record", () => {
  it("the record goes at FREE; a late unbind through the core is ENOENT before and after the teardown; after reallocation the PASID binds again", () => {
    const vm = vmHost();
    const rec = new TraceRecorder(vm.kernel.trace);
    const hpasid = vm.alloc();
    const bytes = bindBytes(hpasid, { gpgd: vm.gpgd, gpasid: 101 });
    const live = vm.core.liveDomains;
    const nested = vm.core.bindGpasid(vm.parent, vm.pdev, bytes);
    expect(vm.core.liveDomains).toBe(live + 1);

    vm.ioasid.free(vm.set, hpasid);
    expect(vm.parent.nested.has(asHostPasid(hpasid))).toBe(false);
    expect(nested.freed).toBe(true);
    expect(vm.core.liveDomains).toBe(live);
    expect(rec.ofKind("iommu.gpasid-freed").map((e) => [e.ids.hpasid, e.payload.users])).toEqual([[hpasid, 1]]);
    // Between FREE and the queued teardown: the ID is FREE_PENDING, ioasid_find fails.
    expect(errnoOf(() => vm.core.unbindGpasid(vm.parent, vm.pdev, bytes))).toBe(Errno.ENOENT);

    vm.kernel.scheduler.drain();
    expect(vm.ioasid.state(hpasid)).toBe("IDLE");
    expect(errnoOf(() => vm.core.unbindGpasid(vm.parent, vm.pdev, bytes))).toBe(Errno.ENOENT);
    expect(rec.ofKind("iommu.unbind-gpasid")).toEqual([]);

    // The same ID comes back to the same VM: binding it through the core works, and DMA goes through it.
    expect(vm.alloc()).toBe(hpasid);
    vm.core.bindGpasid(vm.parent, vm.pdev, bytes);
    expect(dmaWrite(vm.ep, GVA + 0x20, PATTERN, hpasid)).toBe("ok");
    expect(vm.mem.read32(GUEST_HPA + GPA_DATA + 0x20)).toBe(0xefbeadde);
    vm.core.unbindGpasid(vm.parent, vm.pdev, bytes);
    expect(vm.ioasid.refcount(hpasid)).toBe(1);
    expect(vm.core.liveDomains).toBe(live);
  });

  it("with sibling mdevs bound, the whole record goes; both bind again after reallocation, and the driver programs once", () => {
    const vm = vmHost();
    const [a, b] = mdevs(vm);
    const hpasid = vm.alloc();
    const bytes = bindBytes(hpasid, { gpgd: vm.gpgd });
    vm.core.bindGpasid(vm.parent, a, bytes);
    vm.core.bindGpasid(vm.parent, b, bytes);
    vm.ioasid.free(vm.set, hpasid);
    vm.kernel.scheduler.drain();
    expect(vm.parent.nested.size).toBe(0);
    expect(errnoOf(() => vm.core.unbindGpasid(vm.parent, a, bytes))).toBe(Errno.ENOENT);
    expect(vm.alloc()).toBe(hpasid);
    const rec = new TraceRecorder(vm.kernel.trace);
    vm.core.bindGpasid(vm.parent, a, bytes);
    vm.core.bindGpasid(vm.parent, b, bytes);
    expect(rec.ofKind("vtd-drv.bind-gpasid")).toHaveLength(1);
    expect(vm.parent.nested.get(asHostPasid(hpasid))?.users).toBe(2);
  });

  it("a late unbind after the ID went to another VM is EACCES, and that VM's binding is untouched", () => {
    const vm = vmHost();
    const hpasid = vm.alloc();
    const bytes = bindBytes(hpasid, { gpgd: vm.gpgd });
    vm.core.bindGpasid(vm.parent, vm.pdev, bytes);
    vm.ioasid.free(vm.set, hpasid);
    vm.kernel.scheduler.drain();
    const other = vm.ioasid.allocSet({ vm: 2 }, 4, "mm");
    expect(vm.ioasid.alloc(other, hpasid, hpasid)).toBe(hpasid);
    expect(errnoOf(() => vm.core.unbindGpasid(vm.parent, vm.pdev, bytes))).toBe(Errno.EACCES);
    expect(vm.ioasid.refcount(hpasid)).toBe(1);
  });
});

describe("fault reporting stops at FREE, before the teardown", () => {
  it("a DMA on the freed PASID between FREE and teardown faults without being recorded; before FREE the same DMA was recorded", () => {
    const vm = vmHost();
    const hpasid = vm.alloc();
    vm.core.bindGpasid(vm.parent, vm.pdev, bindBytes(hpasid, { gpgd: vm.gpgd }));
    noAts(vm);
    const faults = faultsOf(vm, hpasid);
    // The guest table maps one page at GVA: the next page is not present in its first level.
    const unmapped = GVA + 0x1000;
    expect(dmaWrite(vm.ep, GVA, PATTERN, hpasid)).toBe("ok");
    expect(dmaWrite(vm.ep, unmapped, PATTERN, hpasid)).not.toBe("ok");
    expect(faults).toEqual([true]);

    vm.ioasid.free(vm.set, hpasid);
    expect(vm.drv.freeHandler.pending).toBe(1);
    expect(vm.drv.hw.device(vm.pdev).table.isPresent(hpasid)).toBe(true);
    expect(dmaWrite(vm.ep, unmapped, PATTERN, hpasid)).not.toBe("ok");
    expect(faults).toEqual([true, false]);

    // After the teardown the cleared entry keeps FPD: still silent.
    vm.kernel.scheduler.drain();
    expect(dmaWrite(vm.ep, GVA, PATTERN, hpasid)).not.toBe("ok");
    expect(faults).toEqual([true, false, false]);
  });
});

describe("one place counts users: sibling mdevs on the core's path", () => {
  it("first bind programs and takes the driver's one IOASID reference (one BIND); the last unbind clears (one UNBIND)", () => {
    const vm = vmHost();
    const rec = new TraceRecorder(vm.kernel.trace);
    const [a, b] = mdevs(vm);
    const hpasid = vm.alloc();
    const bytes = bindBytes(hpasid, { gpgd: vm.gpgd, gpasid: 7 });
    const table = vm.drv.hw.device(vm.pdev).table;
    vm.core.bindGpasid(vm.parent, a, bytes);
    expect(table.isPresent(hpasid)).toBe(true);
    vm.core.bindGpasid(vm.parent, b, bytes);
    expect(vm.parent.nested.get(asHostPasid(hpasid))?.users).toBe(2);
    expect(vm.drv.nested.svmOf(hpasid)?.users).toBe(1);
    expect(vm.ioasid.refcount(hpasid)).toBe(2);
    expect(errnoOf(() => vm.core.bindGpasid(vm.parent, a, bytes))).toBe(Errno.EBUSY);

    vm.core.unbindGpasid(vm.parent, a, bytes);
    expect(table.isPresent(hpasid)).toBe(true);
    expect(dmaWrite(vm.ep, GVA, PATTERN, hpasid)).toBe("ok");
    vm.core.unbindGpasid(vm.parent, b, bytes);
    expect(table.isPresent(hpasid)).toBe(false);
    expect(vm.ioasid.refcount(hpasid)).toBe(1);
    const events = rec.ofKind("ioasid.notify").map((e) => e.payload.event);
    expect(events.filter((e) => e === "BIND")).toHaveLength(1);
    expect(events.filter((e) => e === "UNBIND")).toHaveLength(1);
    expect(rec.ofKind("vtd-drv.unbind-gpasid")).toHaveLength(1);
  });

  it("the driver takes no sub-device: the count cannot be kept in two places", () => {
    const vm = vmHost();
    const [a] = mdevs(vm);
    const hpasid = vm.alloc();
    const data = vm.core.bindGpasid(vm.parent, a, bindBytes(hpasid, { gpgd: vm.gpgd })).data;
    expect(errnoOf(() => vm.drv.nested.bind(vm.vtd, a, data))).toBe(Errno.EINVAL);
    expect(vm.drv.nested.svmOf(hpasid)?.users).toBe(1);
  });
});

describe("no TypeError at the boundary VFIO calls", () => {
  const inv = encodeCacheInvalidateInfo({ cache: CacheInvType.IOTLB, granularity: InvGranularity.PASID, pasidInfo: { flags: InvPasidFlag.PASID, pasid: 1n } });
  type Call = (vm: VmHost) => unknown;
  const cases: readonly (readonly [string, Call, Errno])[] = [
    ["bind: no device (an mdev that is not IOMMU-backed)", (vm) => vm.core.bindGpasid(vm.parent, null, bindBytes(vm.alloc())), Errno.EINVAL],
    ["bind: undefined device", (vm) => vm.core.bindGpasid(vm.parent, undefined, bindBytes(vm.alloc())), Errno.EINVAL],
    ["bind: no domain", (vm) => vm.core.bindGpasid(null, vm.pdev, bindBytes(vm.alloc())), Errno.EINVAL],
    ["bind: null user buffer", (vm) => vm.core.bindGpasid(vm.parent, vm.pdev, null), Errno.EFAULT],
    ["bind: no bind data (in-kernel form)", (vm) => vm.core.bindGpasidData(vm.parent, vm.pdev, null), Errno.EINVAL],
    ["bind: bind data without its vendor part", (vm) => vm.core.bindGpasidData(vm.parent, vm.pdev, { hpasid: vm.alloc(), gpgd: 0x1000n, addrWidth: 48 } as unknown as GpasidBindData), Errno.EINVAL],
    ["unbind: no device", (vm) => vm.core.unbindGpasid(vm.parent, null, bindBytes(vm.alloc())), Errno.EINVAL],
    ["unbind: null user buffer", (vm) => vm.core.unbindGpasid(vm.parent, vm.pdev, undefined), Errno.EFAULT],
    ["unbind by PASID: no device", (vm) => vm.core.unbindGpasidPasid(vm.parent, null, vm.alloc()), Errno.EINVAL],
    ["unbind: a PASID never allocated", (vm) => vm.core.unbindGpasid(vm.parent, vm.pdev, bindBytes(0x777)), Errno.ENOENT],
    ["cache invalidate: no device", (vm) => vm.core.cacheInvalidate(vm.parent, null, inv), Errno.EINVAL],
    ["cache invalidate: null user buffer", (vm) => vm.core.cacheInvalidate(vm.parent, vm.pdev, null), Errno.EFAULT],
    ["nesting info: no domain", (vm) => vm.core.nestingInfo(null), Errno.EINVAL],
    ["domain alloc: no device", (vm) => vm.core.domainAlloc(null, { type: "unmanaged", nestingParent: true, ioasidSet: vm.set }), Errno.EINVAL],
    ["attach device: no device", (vm) => vm.core.attachDevice(vm.parent, null), Errno.EINVAL],
    ["attach device: no domain", (vm) => vm.core.attachDevice(undefined, vm.pdev), Errno.EINVAL],
    ["detach device: no device", (vm) => vm.core.detachDevice(vm.parent, null), Errno.EINVAL],
    ["attach group: no group", (vm) => vm.core.attachGroup(vm.parent, null), Errno.EINVAL],
    ["aux attach: no sub-device", (vm) => vm.core.attachSubDevice(vm.parent, null), Errno.EINVAL],
    ["aux detach: no sub-device", (vm) => vm.core.detachSubDevice(vm.parent, undefined), Errno.EINVAL],
    ["enable feature: no device", (vm) => vm.core.enableFeature(null, "sva"), Errno.EINVAL],
    ["map: no domain", (vm) => vm.core.map(null, 0, 0, 4096, 3), Errno.EINVAL],
    ["unmap: no domain", (vm) => vm.core.unmap(undefined, 0, 4096), Errno.EINVAL],
    ["register fault handler: no device", (vm) => vm.core.registerDeviceFaultHandler(null, () => false), Errno.EINVAL],
  ];

  it.each(cases)("%s -> errno %d, nothing programmed", (_what, call, errno) => {
    const vm = vmHost();
    const live = vm.core.liveDomains;
    const pages = vm.pages.stats.livePages;
    expect(errnoOf(() => call(vm))).toBe(errno);
    expect(vm.core.liveDomains).toBe(live);
    expect(vm.pages.stats.livePages).toBe(pages);
    expect(vm.parent.nested.size).toBe(0);
  });

  it("a refusal at the UAPI boundary is a logged warning and a traced refusal, not a crash", () => {
    const vm = vmHost();
    const rec = new TraceRecorder(vm.kernel.trace);
    const domain: IommuDomain | null = null;
    expect(errnoOf(() => vm.core.bindGpasid(domain, null, null))).toBe(Errno.EINVAL);
    expect(rec.ofKind("iommu.uapi-refused").map((e) => [e.ids.device, e.payload.errno])).toEqual([["no device", Errno.EINVAL]]);
  });
});
