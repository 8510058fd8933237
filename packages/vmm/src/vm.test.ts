import { describe, expect, it } from "vitest";
import { Errno, TraceRecorder, asIoasid } from "@vsva/kernel";
import { errnoOf } from "@vsva/kernel/testing";
import { PAGE } from "./guest-ram.js";
import { vmTestHost } from "./test-host.js";
import { Vm, VMM_RAM_BASE } from "./vm.js";
import { allocPasid } from "./vfio-uapi.js";

const RAM = 1 << 20;

describe("a VM: guest RAM, the VMM's nesting container, KVM", () => {
  it("backs guest RAM with scattered host pages, pins and maps all of it for the device at IOVA = GPA, and registers KVM by the VMM's mm", () => {
    const h = vmTestHost();
    const before = h.board.pages.stats.livePages;
    const vm = new Vm({ host: h.board, vfio: h.vfio, id: 1, ramBytes: RAM, device: h.device });
    expect(vm.kernel.context).toBe("vm1");
    // Every guest page has a host page, each a different one, and neighbours are not neighbours in host memory.
    const hpas = Array.from({ length: RAM / PAGE }, (_, i) => vm.hpa(i * PAGE));
    expect(hpas.every((p) => p !== null)).toBe(true);
    expect(new Set(hpas).size).toBe(RAM / PAGE);
    const adjacent = hpas.filter((p, i) => i > 0 && p === (hpas[i - 1] ?? 0) + PAGE).length;
    expect(adjacent).toBeLessThan(RAM / PAGE / 8);
    // MAP_DMA pinned all of it and charged it to the VMM.
    expect(vm.ram.view.pinStats.pinnedPages).toBe(RAM / PAGE);
    expect(vm.vmm.lockedBytes).toBe(RAM);
    expect(h.board.pages.stats.livePages).toBeGreaterThan(before + RAM / PAGE - 1);
    // The host's nesting info came through GET_INFO.
    expect(vm.nesting).toMatchObject({ addrWidth: expect.any(Number) as number, pasidBits: 20 });
    // A DMA without PASID at a GPA lands in the host page behind it (the container's second level).
    const gpa = 0x3_4000 + 0x10;
    h.slot.ep.dma.setProgram({ addr: gpa, length: 4, direction: "write", pattern: Uint8Array.of(1, 2, 3, 4) });
    expect(h.slot.ep.dma.trigger()).toBe("ok");
    const got = new Uint8Array(4);
    vm.ram.view.readBytes(gpa, got);
    expect([...got]).toEqual([1, 2, 3, 4]);
    expect(h.board.mem.read32(vm.hpa(gpa) ?? 0)).toBe(0x0403_0201);
    // The VMM's user address of a GPA is the RAM block base plus the GPA.
    expect(VMM_RAM_BASE % PAGE).toBe(0);
    vm.kill();
  });

  it("once killed, nothing of the VM is reachable: no pin, no PASID, no KVM table, no host page, no open file; the group can be assigned again", () => {
    const h = vmTestHost();
    const pagesBefore = h.board.pages.stats.livePages;
    const setsBefore = h.board.ioasid.snapshot().sets;
    const vm = new Vm({ host: h.board, vfio: h.vfio, id: 1, ramBytes: RAM, device: h.device });
    expect(h.board.ioasid.snapshot().sets.length).toBe(setsBefore.length + 1);
    const p = allocPasid(vm.container, 1, 0xf_ffff);
    expect(h.board.ioasid.refcount(asIoasid(p))).toBe(1);
    expect(vm.kvm.pages).toBeGreaterThan(0);
    const view = vm.ram.view;
    vm.kill();
    h.board.settle();
    expect(vm.state).toBe("dead");
    expect(view.pinStats.pinnedPages).toBe(0);
    expect(view.mappedPages).toBe(0);
    expect(vm.vmm.openFiles).toBe(0);
    expect(vm.vmm.lockedBytes).toBe(0);
    expect(h.board.ioasid.allocated).toBe(0);
    expect(h.board.ioasid.snapshot().sets).toEqual(setsBefore);
    expect(vm.kvm.pages).toBe(0);
    expect(h.board.pages.stats.livePages).toBe(pagesBefore);
    // The device no longer DMAs into the dead VM's memory: the second level is gone.
    h.slot.ep.dma.setProgram({ addr: 0x10, length: 4, direction: "write", pattern: Uint8Array.of(1, 2, 3, 4) });
    expect(h.slot.ep.dma.trigger()).not.toBe("ok");
    vm.kill(); // idempotent
    const again = new Vm({ host: h.board, vfio: h.vfio, id: 2, ramBytes: RAM, device: h.device });
    again.kill();
    h.board.settle();
    expect(h.board.pages.stats.livePages).toBe(pagesBefore);
  });

  it("announces its death on the host's trace (vmm.exit) once, before VFIO's release detaches the device and frees the VM's IOASID set, so a watcher can tell DMA before it from DMA after it", () => {
    const h = vmTestHost();
    const rec = new TraceRecorder(h.board.kernel.trace);
    const vm = new Vm({ host: h.board, vfio: h.vfio, id: 3, ramBytes: RAM, device: h.device });
    rec.clear();
    vm.kill();
    vm.kill();
    const exits = rec.ofKind("vmm.exit");
    expect(exits.map((e) => [e.ids.vm, e.payload.name, e.payload.ramPages])).toEqual([[3, "vm3", RAM / PAGE]]);
    const kinds = rec.events.map((e) => e.kind);
    expect(kinds.indexOf("vmm.exit")).toBe(0);
    expect(kinds.indexOf("iommu.detach")).toBeGreaterThan(0); // release detaches the device and unmaps guest RAM after it
    expect(kinds.indexOf("ioasid.set.release")).toBeGreaterThan(0);
  });

  it("refuses a RAM size that is not whole 64 KiB blocks (EINVAL) and a second VM on a taken group (EBUSY), holding nothing", () => {
    const h = vmTestHost();
    const pagesBefore = h.board.pages.stats.livePages;
    expect(errnoOf(() => new Vm({ host: h.board, vfio: h.vfio, id: 1, ramBytes: RAM + PAGE, device: h.device }))).toBe(Errno.EINVAL);
    const vm = new Vm({ host: h.board, vfio: h.vfio, id: 2, ramBytes: RAM, device: h.device });
    const live = h.board.pages.stats.livePages;
    const err = errnoOf(() => new Vm({ host: h.board, vfio: h.vfio, id: 3, ramBytes: RAM, device: h.device }));
    expect(err).toBe(Errno.EBUSY);
    expect(h.board.pages.stats.livePages).toBe(live);
    vm.kill();
    h.board.settle();
    expect(h.board.pages.stats.livePages).toBe(pagesBefore);
  });
});
