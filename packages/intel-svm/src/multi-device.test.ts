import { describe, expect, it } from "vitest";
import { Errno, TraceRecorder, asHostPasid } from "@vsva/kernel";
import { PasidEntry } from "@vsva/iommu-hw";
import {
  CacheInvType,
  InvGranularity,
  InvPasidFlag,
  IommuProt,
  type PagingDomain,
  decodeCacheInvalidateInfo,
  encodeCacheInvalidateInfo,
} from "@vsva/iommu-core";
import { errnoOf } from "@vsva/kernel/testing";
import type { VtdNestingDomain } from "./domain.js";
import { GPA_DATA, GUEST_HPA, GUEST_RAM, GVA, type VmHost, vmHost } from "./nested-host.js";
import { PATTERN, bindBytes, dmaWrite, endpoint, probe } from "./test-host.js";

/**
 * One VM with two devices behind its vIOMMU, each in a nesting container of
 * its own (as QEMU gives each device its own address space): two nesting
 * parents over the same guest RAM, owned by the VM's one IOASID set.
 */
function twoDevices(): VmHost & { readonly ep2: VmHost["ep"]; readonly pdev2: VmHost["pdev"]; readonly parent2: PagingDomain; readonly vtd2: VtdNestingDomain } {
  const vm = vmHost();
  const ep2 = endpoint(vm, 5);
  const pdev2 = probe(vm, ep2, 20, "dsa1");
  vm.core.enableFeature(pdev2, "sva");
  const parent2 = vm.core.domainAlloc(pdev2, { type: "unmanaged", nestingParent: true, ioasidSet: vm.set }) as PagingDomain;
  vm.core.attachDevice(parent2, pdev2);
  vm.core.map(parent2, 0, GUEST_HPA, GUEST_RAM, IommuProt.READ | IommuProt.WRITE);
  return { ...vm, ep2, pdev2, parent2, vtd2: parent2.driver as VtdNestingDomain };
}

const iotlbFor = (hpasid: number, pasidInfo = true) =>
  encodeCacheInvalidateInfo({ cache: CacheInvType.IOTLB, granularity: InvGranularity.PASID, pasidInfo: { flags: pasidInfo ? InvPasidFlag.PASID : 0, pasid: BigInt(hpasid) } });

function cachedDids(vm: VmHost, hpasid: number): number[] {
  return [...vm.unit.debug.cachedTranslations()].filter((t) => t.hadPasid && t.pasid === hpasid).map((t) => t.did);
}

/** One host PASID bound on both devices over their own nesting domains (with guest PASID `gpasid`, if given), traced from before the binds. */
function boundOnBoth(gpasid?: number): { vm: ReturnType<typeof twoDevices>; rec: TraceRecorder; hpasid: ReturnType<VmHost["alloc"]>; bytes: Uint8Array } {
  const vm = twoDevices();
  const rec = new TraceRecorder(vm.kernel.trace);
  const hpasid = vm.alloc();
  const bytes = bindBytes(hpasid, { gpgd: vm.gpgd, ...(gpasid === undefined ? {} : { gpasid }) });
  vm.core.bindGpasid(vm.parent, vm.pdev, bytes);
  vm.core.bindGpasid(vm.parent2, vm.pdev2, bytes);
  return { vm, rec, hpasid, bytes };
}

describe("one guest PASID bound on two devices over two nesting domains", () => {
  it("both bind; each entry is set up over its own domain (DID, second level); DMA from both lands; one reference, one BIND", () => {
    const { vm, rec, hpasid } = boundOnBoth(101);
    expect(vm.vtd.did).not.toBe(vm.vtd2.did);
    const fields = (dev: VmHost["pdev"]) => {
      const e = vm.drv.hw.device(dev).table.read(hpasid);
      if (e === null) return null;
      const f = PasidEntry.decode(e);
      return [f.DID, f.SLPTPTR * 4096, f.FLPTPTR * 4096];
    };
    expect(fields(vm.pdev)).toEqual([vm.vtd.did, vm.vtd.writer.root, vm.gpgd]);
    expect(fields(vm.pdev2)).toEqual([vm.vtd2.did, vm.vtd2.writer.root, vm.gpgd]);
    expect(dmaWrite(vm.ep, GVA, PATTERN, hpasid)).toBe("ok");
    expect(dmaWrite(vm.ep2, GVA + 0x10, Uint8Array.of(1, 2, 3, 4), hpasid)).toBe("ok");
    expect(vm.mem.read32(GUEST_HPA + GPA_DATA)).toBe(0xefbeadde);
    expect(vm.mem.read32(GUEST_HPA + GPA_DATA + 0x10)).toBe(0x04030201);
    expect(vm.ioasid.refcount(hpasid)).toBe(2);
    expect(vm.drv.nested.svmOf(hpasid)?.users).toBe(2);
    expect(rec.ofKind("ioasid.notify").filter((e) => e.payload.event === "BIND")).toHaveLength(1);
    expect(rec.ofKind("vtd-drv.bind-gpasid").map((e) => e.ids.domain)).toEqual([vm.vtd.did, vm.vtd2.did]);
  });

  it("unbinding one device leaves the other translating; the last unbind gives the reference back and sends UNBIND once", () => {
    const { vm, rec, hpasid, bytes } = boundOnBoth(101);
    vm.core.unbindGpasid(vm.parent, vm.pdev, bytes);
    expect(dmaWrite(vm.ep, GVA, PATTERN, hpasid)).toBe("translationFault");
    expect(dmaWrite(vm.ep2, GVA, PATTERN, hpasid)).toBe("ok");
    expect(vm.ioasid.refcount(hpasid)).toBe(2);
    expect(vm.ioasid.info(hpasid)?.spid).toBe(101);
    // The second device's record is over its own domain: the first domain no longer reaches it.
    expect(errnoOf(() => vm.drv.nested.unbind(vm.vtd, vm.pdev2, hpasid))).toBe(Errno.EINVAL);
    expect(errnoOf(() => vm.core.unbindGpasid(vm.parent, vm.pdev, bytes))).toBe(Errno.EINVAL);
    expect(rec.ofKind("ioasid.notify").filter((e) => e.payload.event === "UNBIND")).toHaveLength(0);
    vm.core.unbindGpasid(vm.parent2, vm.pdev2, bytes);
    expect(dmaWrite(vm.ep2, GVA, PATTERN, hpasid)).toBe("translationFault");
    expect(vm.ioasid.refcount(hpasid)).toBe(1);
    expect(vm.ioasid.info(hpasid)?.spid).toBeNull();
    expect(vm.drv.nested.svmOf(hpasid)).toBeUndefined();
    expect(rec.ofKind("ioasid.notify").filter((e) => e.payload.event === "UNBIND")).toHaveLength(1);
  });

  it("a guest invalidation on each device flushes with that device's domain DID only; over the other domain it is refused", () => {
    const { vm, hpasid, bytes } = boundOnBoth();
    expect(dmaWrite(vm.ep, GVA, PATTERN, hpasid)).toBe("ok");
    expect(dmaWrite(vm.ep2, GVA, PATTERN, hpasid)).toBe("ok");
    expect(new Set(cachedDids(vm, hpasid))).toEqual(new Set([vm.vtd.did, vm.vtd2.did]));

    vm.core.cacheInvalidate(vm.parent2, vm.pdev2, iotlbFor(hpasid), {});
    expect(new Set(cachedDids(vm, hpasid))).toEqual(new Set([vm.vtd.did]));
    vm.core.cacheInvalidate(vm.parent, vm.pdev, iotlbFor(hpasid), {});
    expect(cachedDids(vm, hpasid)).toEqual([]);

    // The driver judges per device record: device 2 is not bound over the first domain.
    const info = decodeCacheInvalidateInfo(iotlbFor(hpasid), {});
    expect(errnoOf(() => vm.drv.nested.cacheInvalidate(vm.vtd, vm.pdev2, info))).toBe(Errno.EINVAL);
    expect(errnoOf(() => vm.core.cacheInvalidate(vm.parent, vm.pdev2, iotlbFor(hpasid), {}))).toBe(Errno.EINVAL);
    vm.core.unbindGpasid(vm.parent, vm.pdev, bytes);
    expect(errnoOf(() => vm.drv.nested.cacheInvalidate(vm.vtd, vm.pdev, info))).toBe(Errno.EINVAL);
    vm.core.cacheInvalidate(vm.parent2, vm.pdev2, iotlbFor(hpasid), {});
  });

  it("a different first level for the PASID on the second device is EBUSY, with nothing programmed there", () => {
    const vm = twoDevices();
    const hpasid = vm.alloc();
    vm.core.bindGpasid(vm.parent, vm.pdev, bindBytes(hpasid, { gpgd: vm.gpgd, gpasid: 101 }));
    expect(errnoOf(() => vm.core.bindGpasid(vm.parent2, vm.pdev2, bindBytes(hpasid, { gpgd: vm.gpgd + 0x1000, gpasid: 101 })))).toBe(Errno.EBUSY);
    expect(errnoOf(() => vm.core.bindGpasid(vm.parent2, vm.pdev2, bindBytes(hpasid, { gpgd: vm.gpgd, gpasid: 102 })))).toBe(Errno.EBUSY);
    expect(vm.drv.hw.device(vm.pdev2).table.isPresent(hpasid)).toBe(false);
    expect(vm.parent2.nested.size).toBe(0);
    expect(vm.drv.nested.svmOf(hpasid)?.users).toBe(1);
    expect(vm.ioasid.refcount(hpasid)).toBe(2);
  });

  it("FREE while bound on both tears down every device's entry, drops both core records, and puts the reference once", () => {
    const { vm, rec, hpasid, bytes } = boundOnBoth(101);
    vm.ioasid.free(vm.set, hpasid);
    expect(vm.parent.nested.size + vm.parent2.nested.size).toBe(0);
    expect(rec.ofKind("iommu.gpasid-freed").map((e) => e.ids.domain)).toEqual([vm.parent.id, vm.parent2.id]);
    vm.kernel.scheduler.drain();
    expect(vm.drv.hw.device(vm.pdev).table.isPresent(hpasid)).toBe(false);
    expect(vm.drv.hw.device(vm.pdev2).table.isPresent(hpasid)).toBe(false);
    expect(vm.ioasid.state(hpasid)).toBe("IDLE");
    expect(rec.ofKind("vtd-drv.free-teardown").map((e) => e.payload.devices)).toEqual([2]);
    expect(errnoOf(() => vm.core.unbindGpasid(vm.parent2, vm.pdev2, bytes))).toBe(Errno.ENOENT);
    expect(vm.drv.nested.svmOf(hpasid)).toBeUndefined();
  });

  it("freeing one nesting domain unbinds only its device; the other keeps translating and holds the reference", () => {
    const { vm, hpasid, bytes } = boundOnBoth();
    vm.core.detachDevice(vm.parent, vm.pdev);
    vm.core.domainFree(vm.parent);
    expect(vm.drv.hw.device(vm.pdev).table.isPresent(hpasid)).toBe(false);
    expect(dmaWrite(vm.ep2, GVA, PATTERN, hpasid)).toBe("ok");
    expect(vm.ioasid.refcount(hpasid)).toBe(2);
    expect(vm.drv.nested.svmOf(hpasid)?.users).toBe(1);
    expect(vm.parent2.nested.get(asHostPasid(hpasid))?.users).toBe(1);
    vm.core.unbindGpasid(vm.parent2, vm.pdev2, bytes);
    expect(vm.ioasid.refcount(hpasid)).toBe(1);
  });

  it("sibling mdevs of one device in two aux nesting domains share the entry; the borrower's invalidations flush with the entry's DID, also after a handover", () => {
    const vm = vmHost();
    const parent3 = vm.core.domainAlloc(vm.pdev, { type: "unmanaged", nestingParent: true, ioasidSet: vm.set }) as PagingDomain;
    vm.core.map(parent3, 0, GUEST_HPA, GUEST_RAM, IommuProt.READ | IommuProt.WRITE);
    const vtd3 = parent3.driver as VtdNestingDomain;
    const a = vm.core.addSubDevice(vm.pdev, "wq0");
    const b = vm.core.addSubDevice(vm.pdev, "wq1");
    vm.core.attachSubDevice(vm.parent, a);
    vm.core.attachSubDevice(parent3, b);
    const hpasid = vm.alloc();
    const bytes = bindBytes(hpasid, { gpgd: vm.gpgd });
    vm.core.bindGpasid(vm.parent, a, bytes);
    vm.core.bindGpasid(parent3, b, bytes);
    const did = () => {
      const e = vm.drv.hw.device(vm.pdev).table.read(hpasid);
      return e === null ? null : PasidEntry.decode(e).DID;
    };
    expect(did()).toBe(vm.vtd.did);
    expect(dmaWrite(vm.ep, GVA, PATTERN, hpasid)).toBe("ok");
    expect(cachedDids(vm, hpasid).length).toBeGreaterThan(0);
    // The borrower's container asks: the flush is made over the domain the entry uses.
    vm.core.cacheInvalidate(parent3, b, iotlbFor(hpasid), {});
    expect(cachedDids(vm, hpasid)).toEqual([]);
    // The first binder leaves: the entry is set up again over the borrower's domain, and its flushes follow.
    vm.core.unbindGpasid(vm.parent, a, bytes);
    expect(did()).toBe(vtd3.did);
    expect(dmaWrite(vm.ep, GVA, PATTERN, hpasid)).toBe("ok");
    expect(cachedDids(vm, hpasid)).toEqual([vtd3.did]);
    vm.core.cacheInvalidate(parent3, b, iotlbFor(hpasid), {});
    expect(cachedDids(vm, hpasid)).toEqual([]);
    vm.core.unbindGpasid(parent3, b, bytes);
    expect(vm.ioasid.refcount(hpasid)).toBe(1);
  });
});
