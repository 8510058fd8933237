import { describe, expect, it } from "vitest";
import { asIoasid } from "@vsva/kernel";
import { Prot } from "@vsva/iommu-core";
import { Guest } from "./guest.js";
import { PAGE } from "./guest-ram.js";
import { vmTestHost } from "./test-host.js";
import { Vm } from "./vm.js";

const RAM = 4 << 20;
const PATTERN = Uint8Array.of(0x67, 0x53, 0x56, 0x41); // "gSVA"

function hostImage(mem: { readBytes(pa: number, b: Uint8Array): boolean }, from: number, to: number): Map<number, string> {
  const out = new Map<number, string>();
  const page = new Uint8Array(PAGE);
  for (let pa = from; pa < to; pa += PAGE) {
    if (!mem.readBytes(pa, page) || page.every((b) => b === 0)) continue;
    out.set(pa, Buffer.from(page).toString("hex"));
  }
  return out;
}

describe("a guest process shares its address space with the assigned device through the vIOMMU", () => {
  it("binds with SVA (vCMD PASID, PASID-cache flush → host bind), and the device's DMA lands in exactly the host page behind the guest process's page", () => {
    const h = vmTestHost();
    const vm = new Vm({ host: h.board, vfio: h.vfio, id: 1, ramBytes: RAM, device: h.device });
    const g = new Guest(vm);
    const p = g.newProcess("P");
    const VA = 0x7000_1000_0000;
    const buf = p.mmap(VA, 4 * PAGE, Prot.READ | Prot.WRITE, { populate: true });
    const bond = g.core.sva.bindDevice(g.device, p);
    const pasid = bond.pasid;
    // The guest's PASID came from the host's VM set through the virtual command interface (identity: guest = host PASID).
    expect(h.board.ioasid.refcount(asIoasid(pasid))).toBeGreaterThanOrEqual(2);
    expect(g.viommu.bound.get(pasid)?.gpgd).toBe(p.pgd);
    expect(g.viommu.stats.binds).toBe(1);

    // Snapshot host RAM, let the device write through both levels, compare.
    const before = hostImage(h.board.mem, 0, 64 << 20);
    const target = buf + 2 * PAGE + 0x30;
    expect(g.dma({ pasid, addr: target, length: PATTERN.length, direction: "write", pattern: PATTERN })).toBe("ok");
    const after = hostImage(h.board.mem, 0, 64 << 20);
    const changed = [...after].filter(([pa, bytes]) => before.get(pa) !== bytes).map(([pa]) => pa);
    const gpa = p.lookup(target);
    expect(gpa).not.toBeNull();
    const hpa = vm.hpa((gpa?.pa ?? 0) + (target - (gpa?.va ?? 0)));
    expect(hpa).not.toBeNull();
    // Exactly one host page changed (the device's writes of table A/D bits aside: they go to the guest's table pages).
    const dataPage = Math.floor((hpa ?? 0) / PAGE) * PAGE;
    expect(changed).toContain(dataPage);
    // Every other changed page is a page of the guest's tables where only accessed/dirty bits (bits 5 and 6 of an entry) moved.
    for (const pa of changed.filter((x) => x !== dataPage)) {
      const was = Buffer.from(before.get(pa) ?? "00".repeat(PAGE), "hex");
      const now = Buffer.from(after.get(pa) ?? "", "hex");
      for (let i = 0; i < PAGE; i++) {
        const x = (was[i] ?? 0) ^ (now[i] ?? 0);
        if (x !== 0) expect({ pa, offset: i, xor: i % 8 === 0 ? x & ~0x60 : x }).toEqual({ pa, offset: i, xor: 0 });
      }
    }
    // In the data page, exactly the pattern's bytes changed, at the target's offset.
    const dataNow = Buffer.from(after.get(dataPage) ?? "", "hex");
    const off = (hpa ?? 0) - dataPage;
    expect([...dataNow.subarray(off, off + PATTERN.length)]).toEqual([...PATTERN]);
    expect(dataNow.filter((b) => b !== 0).length).toBe(PATTERN.filter((b) => b !== 0).length);
    // The guest reads it back by CPU.
    expect([...p.read(target, PATTERN.length)]).toEqual([...PATTERN]);

    // Unbind: PASID entry cleared, PASID-cache flush → host unbind; the PASID goes back to the host.
    g.core.sva.unbindDevice(bond);
    h.board.settle();
    vm.kernel.scheduler.runUntilIdle();
    expect(g.viommu.bound.size).toBe(0);
    expect(g.dma({ pasid, addr: target, length: PATTERN.length, direction: "write", pattern: PATTERN })).not.toBe("ok");
    vm.kill();
    h.board.settle();
    expect(h.board.ioasid.allocated).toBe(0);
  });
});

describe("killing a VM with a bound guest process", () => {
  it("KVM translated the guest PASID while bound; after the kill the device cannot reach the VM, and no PASID, translation, pin or host page is left", () => {
    const h = vmTestHost();
    const pagesBefore = h.board.pages.stats.livePages;
    const allocatedBefore = h.board.ioasid.allocated;
    const vm = new Vm({ host: h.board, vfio: h.vfio, id: 1, ramBytes: RAM, device: h.device });
    const g = new Guest(vm);
    const p = g.newProcess("P");
    const buf = p.mmap(0x7000_2000_0000, 2 * PAGE, Prot.READ | Prot.WRITE, { populate: true });
    const bond = g.core.sva.bindDevice(g.device, p);
    const pasid = bond.pasid;
    // The host's bind carried the guest PASID: KVM's table translates it for ENQCMD (identity this session).
    expect([...vm.kvm.translations()]).toEqual([[pasid, pasid]]);
    expect(vm.kvm.enqcmds(pasid)).toMatchObject({ ok: true, hostPasid: pasid });
    expect(g.dma({ pasid, addr: buf, length: 4, direction: "write", pattern: PATTERN })).toBe("ok");
    const hpa = vm.hpa(p.lookup(buf)?.pa ?? 0) ?? 0;
    const view = vm.ram.view;

    vm.kill();
    h.board.settle();
    expect(view.pinStats.pinnedPages).toBe(0);
    expect(vm.kvm.translations().size).toBe(0);
    expect(h.board.ioasid.allocated).toBe(allocatedBefore);
    expect(h.board.pages.stats.livePages).toBe(pagesBefore);
    expect(h.board.platform.cacheViolations()).toEqual([]);
    // The device, programmed as the guest left it, no longer reaches what was the guest's page.
    const ep = h.device.endpoint;
    ep.dma.setProgram({ pasid, addr: buf, length: 4, direction: "write", pattern: Uint8Array.of(0xee, 0xee, 0xee, 0xee) });
    expect(ep.dma.trigger()).not.toBe("ok");
    expect(h.board.mem.read32(hpa)).not.toBe(0xeeee_eeee);
  });
});
