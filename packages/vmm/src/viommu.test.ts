import { describe, expect, it } from "vitest";
import { type TraceEvent, TraceRecorder, asHostPasid, asIoasid } from "@vsva/kernel";
import { CapReg, EcapReg, InvType, PasidCacheDesc, PasidIotlbDesc, PcGran, PiotlbGran, RegOffset, WaitDesc, readReg } from "@vsva/iommu-hw";
import { submitVtdDescriptors } from "@vsva/iommu-hw/testing";
import { Prot } from "@vsva/iommu-core";
import { Guest } from "./guest.js";
import { PAGE } from "./guest-ram.js";
import { vmTestHost } from "./test-host.js";
import { Vm } from "./vm.js";

const RAM = 4 << 20;
const VA = 0x7000_0000_0000;
const PATTERN = Uint8Array.of(0x11, 0x22, 0x33, 0x44);

function boot() {
  const h = vmTestHost();
  const vm = new Vm({ host: h.board, vfio: h.vfio, id: 1, ramBytes: RAM, device: h.device });
  const g = new Guest(vm);
  const p = g.newProcess("P");
  p.mmap(VA, 8 * PAGE, Prot.READ | Prot.WRITE, { populate: true });
  const host = new TraceRecorder(h.board.kernel.trace);
  const guest = new TraceRecorder(vm.kernel.trace);
  return { h, vm, g, p, host, guest };
}

const isOp = (op: string) => (e: TraceEvent): boolean => e.kind === "vfio.nesting-op" && (e.payload as { op?: string }).op === op;
const isGuestWait = (e: TraceEvent): boolean => e.kind === "vtd.invalidation" && (e.payload as { type?: string }).type === "wait";

describe("the virtual VT-d shadows the guest's PASID state onto VFIO", () => {
  it("exposes caching mode and the virtual command interface, with the PASID width and first-level modes of the host's nesting info", () => {
    const { vm, g } = boot();
    const cap = readReg(g.viommu.unit, RegOffset.CAP, CapReg);
    const ecap = readReg(g.viommu.unit, RegOffset.ECAP, EcapReg);
    expect(CapReg.get(cap, "CM")).toBe(1);
    expect(EcapReg.get(ecap, "VCS")).toBe(1);
    expect(EcapReg.get(ecap, "PSS") + 1).toBe(vm.nesting.pasidBits);
    expect(CapReg.get(cap, "FL5LP")).toBe(vm.nesting.addrWidth >= 57 ? 1 : 0);
    // The guest's IOASID layer allocates through it.
    expect(g.ioasid.customAllocatorActive).toBe(true);
  });

  it("binds on the host only when the guest flushes its PASID cache, and completes the guest's wait only after the host bound", () => {
    const { g, p, host, guest } = boot();
    const exits = g.viommu.stats.exits;
    const bond = g.core.sva.bindDevice(g.device, p);
    const binds = host.events.filter(isOp("bind"));
    expect(binds).toHaveLength(1);
    const bindSeq = binds[0]?.seq ?? Infinity;
    // The guest's PASID-cache invalidation of the PASID, then its wait, which the guest saw complete after the host's bind.
    const pc = guest.events.find((e) => e.kind === "vtd.invalidation" && (e.payload as { type?: string; pasid?: number }).type === "pasid-cache" && (e.payload as { pasid?: number }).pasid === bond.pasid);
    expect(pc).toBeDefined();
    const waitAfter = guest.events.filter(isGuestWait).find((e) => e.seq > (pc?.seq ?? Infinity));
    expect(waitAfter?.seq).toBeGreaterThan(bindSeq);
    expect(pc?.seq).toBeLessThan(bindSeq);
    // One VCMD and the queue submissions of the bind, each one exit.
    expect(g.viommu.stats.exits - exits).toBe(3);
    const e2 = g.viommu.stats.exits;
    g.core.sva.unbindDevice(bond);
    expect(host.events.filter(isOp("unbind"))).toHaveLength(1);
    expect(g.viommu.bound.size).toBe(0);
    expect(g.viommu.stats.exits - e2).toBe(2);
  });

  it("turns the guest's invalidations of one queue submission into one CACHE_INVLD, so the device stops using an unmapped page", () => {
    const { h, g, p, host } = boot();
    const bond = g.core.sva.bindDevice(g.device, p);
    const target = VA + 3 * PAGE + 0x20;
    expect(g.dma({ pasid: bond.pasid, addr: target, length: 4, direction: "write", pattern: PATTERN })).toBe("ok");
    const before = host.events.filter(isOp("invalidate")).length;
    p.munmap(VA + 3 * PAGE, PAGE);
    expect(host.events.filter(isOp("invalidate")).length - before).toBe(1);
    // Without the flush the host's IOTLB (and the device TLB) would still serve the old page.
    expect(h.board.platform.cacheViolations()).toEqual([]);
    expect(g.dma({ pasid: bond.pasid, addr: target, length: 4, direction: "write", pattern: PATTERN })).not.toBe("ok");
    // A new page there: the DMA follows the guest's new mapping.
    p.mmap(VA + 3 * PAGE, PAGE, Prot.READ | Prot.WRITE, { populate: true });
    expect(g.dma({ pasid: bond.pasid, addr: target, length: 4, direction: "write", pattern: PATTERN })).toBe("ok");
    expect([...p.read(target, 4)]).toEqual([...PATTERN]);
    g.core.sva.unbindDevice(bond);
  });

  it("merges a submission's PASID-based IOTLB flushes per PASID: one page is passed as a range, several pages as the whole PASID, and the wait waits for it", () => {
    const { g, p, host, guest } = boot();
    const bond = g.core.sva.bindDevice(g.device, p);
    const qw = (a: Uint32Array, i: number): bigint => BigInt(a[i] ?? 0) | (BigInt(a[i + 1] ?? 0) << 32n);
    const piotlb = (addr: number): bigint[] => {
      const d = PasidIotlbDesc.alloc();
      PasidIotlbDesc.set(d, "TYPE", InvType.PASID_IOTLB);
      PasidIotlbDesc.set(d, "G", PiotlbGran.PAGE);
      PasidIotlbDesc.set(d, "DID", 1);
      PasidIotlbDesc.set(d, "PASID", bond.pasid);
      PasidIotlbDesc.setAddr(d, "ADDR", addr);
      return [qw(d, 0), qw(d, 2)];
    };
    const w = WaitDesc.alloc();
    WaitDesc.set(w, "TYPE", InvType.WAIT);
    const wait = [qw(w, 0), 0n];
    const invalidations = (): TraceEvent[] => host.events.filter((e) => e.kind === "iommu.cache-invalidate");
    // One page, twice in one submission: one host invalidation of that page.
    submitVtdDescriptors(g.viommu.unit, g.vm.ram.view, [piotlb(VA), piotlb(VA), wait]);
    g.viommu.service();
    expect(invalidations().map((e) => e.payload)).toEqual([expect.objectContaining({ cache: 1, granularity: 2 })]);
    // Three different pages: one PASID-wide invalidation, and the guest's wait completes after it.
    submitVtdDescriptors(g.viommu.unit, g.vm.ram.view, [piotlb(VA), piotlb(VA + PAGE), piotlb(VA + 2 * PAGE), wait]);
    g.viommu.service();
    const all = invalidations();
    expect(all.map((e) => e.payload)).toEqual([expect.objectContaining({ granularity: 2 }), expect.objectContaining({ cache: 1, granularity: 1 })]);
    const lastWait = guest.events.filter(isGuestWait).at(-1);
    expect(lastWait?.seq).toBeGreaterThan(all.at(-1)?.seq ?? Infinity);
    g.core.sva.unbindDevice(bond);
  });

  it("what the host refuses is a guest-visible error: a PASID the guest never got from the host is not bound, the guest's flush never completes (its driver logs the failed wait), the host is untouched", () => {
    const { h, g, p, host, guest } = boot();
    const allocatedBefore = h.board.ioasid.allocated;
    // The guest driver writes an entry for PASID 77 on its own: Linux's PASID setup logs a failed flush and goes on.
    g.driver.svaBind(g.device, { pgd: p.pgd, levels: 4, pasid: asHostPasid(77), name: "rogue" });
    expect(g.viommu.stats.refused).toBe(1);
    expect(g.viommu.bound.size).toBe(0);
    expect(host.events.filter(isOp("bind"))).toEqual([]);
    const warned = guest.events.filter((e) => e.kind === "kernel.log" && ((e.payload as { message?: string }).message ?? "").includes('did not complete'));
    expect(warned).toHaveLength(1);
    expect(h.board.ioasid.allocated).toBe(allocatedBefore);
    expect(h.board.ioasid.state(asIoasid(77))).toBe("IDLE");
    expect(g.dma({ pasid: 77, addr: VA + 0x10, length: 4, direction: "write", pattern: PATTERN })).not.toBe("ok");
    // The guest goes on: a proper bind still works.
    const bond = g.core.sva.bindDevice(g.device, p);
    expect(g.dma({ pasid: bond.pasid, addr: VA + 0x10, length: 4, direction: "write", pattern: PATTERN })).toBe("ok");
  });
});

describe("a hostile guest's second unbind", () => {
  it("a PASID-cache invalidation of a PASID the VMM has nothing bound for (the entry cleared again after an unbind) sends the host nothing, and the guest's wait still completes with its status write", () => {
    const { g, p, host } = boot();
    const bond = g.core.sva.bindDevice(g.device, p);
    g.core.sva.unbindDevice(bond);
    expect(host.events.filter(isOp("unbind"))).toHaveLength(1);
    const ops = host.events.filter((e) => e.kind === "vfio.nesting-op").length;
    const stats = { ...g.viommu.stats };
    const mem = g.vm.ram.view;
    const status = g.pages.allocPage("wait status");
    mem.write32(status, 0);
    const pc = PasidCacheDesc.encode({ TYPE: InvType.PASID_CACHE, G: PcGran.PASID, PASID: bond.pasid });
    const w = WaitDesc.alloc();
    WaitDesc.set(w, "TYPE", InvType.WAIT);
    WaitDesc.set(w, "SW", 1);
    WaitDesc.set(w, "STDATA", 0x5a5a);
    WaitDesc.setAddr(w, "STADDR", status);
    const qw = (a: Uint32Array, i: number): bigint => BigInt(a[i] ?? 0) | (BigInt(a[i + 1] ?? 0) << 32n);
    submitVtdDescriptors(g.viommu.unit, mem, [[qw(pc, 0), qw(pc, 2)], [qw(w, 0), qw(w, 2)]]);
    // The wait is held for the VMM (a PASID-cache sync is the host's business), which finds nothing to do and releases it.
    expect(mem.read32(status)).toBe(0);
    g.viommu.service();
    expect(mem.read32(status)).toBe(0x5a5a);
    expect(host.events.filter((e) => e.kind === "vfio.nesting-op")).toHaveLength(ops);
    expect([g.viommu.stats.unbinds, g.viommu.stats.refused, g.viommu.stats.batches]).toEqual([stats.unbinds, stats.refused, stats.batches + 1]);
  });
});
