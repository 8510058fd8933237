import { describe, expect, it } from "vitest";
import { TraceRecorder } from "@vsva/kernel";
import { InvType, PageGroupResponseDesc, WaitDesc } from "@vsva/iommu-hw";
import { submitVtdDescriptors } from "@vsva/iommu-hw/testing";
import { Prot } from "@vsva/iommu-core";
import { Guest } from "./guest.js";
import { PAGE } from "./guest-ram.js";
import { vmTestHost } from "./test-host.js";
import { Vm } from "./vm.js";

const RAM = 4 << 20;
const VA = 0x7000_0000_0000;
const PATTERN = Uint8Array.of(0xfa, 0x17, 0x0e, 0x55);

function boot() {
  const h = vmTestHost();
  const vm = new Vm({ host: h.board, vfio: h.vfio, id: 1, ramBytes: RAM, device: h.device });
  const g = new Guest(vm);
  const p = g.newProcess("P");
  const buf = p.mmap(VA, 4 * PAGE, Prot.READ | Prot.WRITE); // not populated: pages come on first touch
  const bond = g.core.sva.bindDevice(g.device, p);
  return { h, vm, g, p, buf, bond };
}

describe("recoverable faults of a guest's PASID go to the guest and its answer back to the device", () => {
  it("a DMA to a page the guest has not faulted in: page request → VFIO's fault ring → the guest's PRQ → the guest pages it in → its response → VFIO → the device retries and the bytes land", () => {
    const { vm, g, p, buf, bond } = boot();
    expect(p.lookup(buf + PAGE)).toBeNull();
    expect(g.dma({ pasid: bond.pasid, addr: buf + PAGE + 0x10, length: 4, direction: "write", pattern: PATTERN })).toBe("ok");
    expect(g.viommu.stats.pageRequests).toBeGreaterThanOrEqual(1);
    expect(g.viommu.stats.responses).toBe(g.viommu.stats.pageRequests);
    // The guest's own fault handling made the page present, and the device wrote into it.
    const m = p.lookup(buf + PAGE);
    expect(m).not.toBeNull();
    expect([...p.read(buf + PAGE + 0x10, 4)]).toEqual([...PATTERN]);
    expect(vm.hpa(m?.pa ?? -1)).not.toBeNull();
  });

  it("a page group response for a request the guest never got reaches no device: the VMM drops it", () => {
    const { h, g } = boot();
    const rec = new TraceRecorder(h.board.kernel.trace);
    const d = PageGroupResponseDesc.alloc();
    PageGroupResponseDesc.set(d, "TYPE", InvType.PAGE_GROUP_RESPONSE);
    PageGroupResponseDesc.set(d, "PASID", 1);
    PageGroupResponseDesc.set(d, "PRGI", 7);
    PageGroupResponseDesc.set(d, "LPIG", 1);
    const w = WaitDesc.alloc();
    WaitDesc.set(w, "TYPE", InvType.WAIT);
    const qw = (a: Uint32Array, i: number): bigint => BigInt(a[i] ?? 0) | (BigInt(a[i + 1] ?? 0) << 32n);
    submitVtdDescriptors(g.viommu.unit, g.vm.ram.view, [[qw(d, 0), qw(d, 2)], [qw(w, 0), 0n]]);
    g.viommu.service();
    expect(g.viommu.stats.strayResponses).toBe(1);
    expect(g.viommu.stats.responses).toBe(0);
    expect(rec.events.filter((e) => e.context === "host" && e.kind.includes('response'))).toEqual([]);
  });
});

describe("a VM killed while a page request of its guest is outstanding", () => {
  it("VFIO's release answers the device (invalid): the DMA ends without landing, and nothing of the VM is left", () => {
    const h = vmTestHost();
    const pagesBefore = h.board.pages.stats.livePages;
    const vm = new Vm({ host: h.board, vfio: h.vfio, id: 1, ramBytes: RAM, device: h.device });
    const g = new Guest(vm);
    const p = g.newProcess("P");
    const buf = p.mmap(VA, PAGE, Prot.READ | Prot.WRITE);
    const bond = g.core.sva.bindDevice(g.device, p);
    const ep = h.device.endpoint;
    ep.dma.setProgram({ pasid: bond.pasid, addr: buf + 0x20, length: 4, direction: "write", pattern: PATTERN });
    expect(ep.dma.trigger()).toBe("pageRequestPending");
    h.board.settle(); // the host's PRQ thread puts it in VFIO's fault ring
    expect(g.viommu.pollFaults()).toBe(1); // the VMM gives it to the guest, which has not run yet
    vm.kill();
    h.board.settle();
    expect(ep.dma.result).not.toBe("ok");
    expect(ep.dma.result).not.toBe("pageRequestPending");
    expect(h.board.pages.stats.livePages).toBe(pagesBefore);
    expect(h.board.ioasid.allocated).toBe(0);
    expect(h.board.platform.cacheViolations()).toEqual([]);
  });
});
