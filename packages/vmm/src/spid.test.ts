import { describe, expect, it } from "vitest";
import { Errno, asIoasid } from "@vsva/kernel";
import { errnoOf } from "@vsva/kernel/testing";
import { Ia32Pasid } from "@vsva/kvm-pasid";
import { Prot } from "@vsva/iommu-core";
import { Guest } from "./guest.js";
import { PAGE } from "./guest-ram.js";
import { assign, vmTestHost } from "./test-host.js";
import { Vm } from "./vm.js";
import { apply, bootVictimAndTarget, pasidEntryGpa } from "./fuzz-target.js";
import { PcGran } from "@vsva/iommu-hw";

const RAM = 1 << 20;
const SHARED_GPASID = 101;

function ia32Pasid(pasid: number): bigint {
  const v = Ia32Pasid.encode({ PASID: pasid, VALID: 1 });
  return BigInt(v[0] ?? 0) | (BigInt(v[1] ?? 0) << 32n);
}

/** Two VMs with SPIDs on one host, each with its own assigned function. */
function twoVms(): { h: ReturnType<typeof vmTestHost>; a: Vm; b: Vm } {
  const h = vmTestHost();
  const second = assign(h.board, "dsa1", 5, h.vfio);
  const a = new Vm({ host: h.board, vfio: h.vfio, id: 1, ramBytes: RAM, device: h.device, guestPasids: "spid" });
  const b = new Vm({ host: h.board, vfio: h.vfio, id: 2, ramBytes: RAM, device: second.device, guestPasids: "spid" });
  return { h, a, b };
}

/** Guest PASIDs through the guest's own IOASID layer (its allocator is the vIOMMU's virtual command) until the next one is `next`. */
function fillUpTo(g: Guest, next: number): void {
  const set = g.ioasid.allocSet({ filler: g.vm.name }, next, "none");
  for (let i = 1; i < next; i++) g.ioasid.alloc(set, 1, 2 ** g.viommu.unit.cfg.pasidBits - 1);
}

describe("SPIDs: a guest PASID namespace per VM", () => {
  it("two VMs both bind with guest PASID 101 on different host PASIDs; each VM's ENQCMD of 101 carries its own host PASID", () => {
    const { h, a, b } = twoVms();
    // The host's numbers are made to differ from the guests': VM B's allocations start after A's.
    const ga = new Guest(a);
    fillUpTo(ga, SHARED_GPASID);
    const gb = new Guest(b);
    fillUpTo(gb, SHARED_GPASID);
    const pa = ga.newProcess("PA");
    const pb = gb.newProcess("PB");
    pa.mmap(0x7000_0000_0000, PAGE, Prot.READ | Prot.WRITE, { populate: true });
    pb.mmap(0x7000_0000_0000, PAGE, Prot.READ | Prot.WRITE, { populate: true });
    const bondA = ga.core.sva.bindDevice(ga.device, pa);
    const bondB = gb.core.sva.bindDevice(gb.device, pb);
    expect([bondA.pasid, bondB.pasid]).toEqual([SHARED_GPASID, SHARED_GPASID]);

    const hostA = a.viommu.hostPasid(SHARED_GPASID);
    const hostB = b.viommu.hostPasid(SHARED_GPASID);
    expect(hostA).not.toBeNull();
    expect(hostB).not.toBeNull();
    expect(hostA).not.toBe(hostB);
    // The host attached each guest's number as the SPID of its own host PASID, in that VM's set.
    expect(h.board.ioasid.info(asIoasid(hostA ?? 0))?.spid).toBe(SHARED_GPASID);
    expect(h.board.ioasid.info(asIoasid(hostB ?? 0))?.spid).toBe(SHARED_GPASID);
    expect(h.board.ioasid.info(asIoasid(hostA ?? 0))?.set).not.toBe(h.board.ioasid.info(asIoasid(hostB ?? 0))?.set);
    // KVM translates the same guest IA32_PASID to each VM's own host PASID.
    expect(a.kvm.enqcmd(ia32Pasid(SHARED_GPASID))).toMatchObject({ ok: true, guestPasid: SHARED_GPASID, hostPasid: hostA });
    expect(b.kvm.enqcmd(ia32Pasid(SHARED_GPASID))).toMatchObject({ ok: true, guestPasid: SHARED_GPASID, hostPasid: hostB });

    // Unbind in A: A's translation goes, B's stays.
    ga.core.sva.unbindDevice(bondA);
    h.board.settle();
    expect(a.kvm.enqcmd(ia32Pasid(SHARED_GPASID)).ok).toBe(false);
    expect(b.kvm.enqcmd(ia32Pasid(SHARED_GPASID))).toMatchObject({ ok: true, hostPasid: hostB });
    a.kill();
    b.kill();
    h.board.settle();
    expect(h.board.ioasid.allocated).toBe(0);
  });

  it("identity VMs cannot share a number: the second VM's guest PASID is another host PASID", () => {
    const h = vmTestHost();
    const second = assign(h.board, "dsa1", 5, h.vfio);
    const a = new Vm({ host: h.board, vfio: h.vfio, id: 1, ramBytes: RAM, device: h.device });
    const b = new Vm({ host: h.board, vfio: h.vfio, id: 2, ramBytes: RAM, device: second.device });
    const ga = new Guest(a);
    const gb = new Guest(b);
    const pa = ga.newProcess("PA");
    const pb = gb.newProcess("PB");
    const bondA = ga.core.sva.bindDevice(ga.device, pa);
    const bondB = gb.core.sva.bindDevice(gb.device, pb);
    expect(bondA.pasid).not.toBe(bondB.pasid);
    expect(a.viommu.hostPasid(bondA.pasid)).toBe(bondA.pasid);
    a.kill();
    b.kill();
  });

  it("a PASID entry the guest writes for a guest PASID it never allocated binds nothing on the host (no host PASID is behind it): the flush is refused", () => {
    const t = bootVictimAndTarget("spid");
    const g = t.g1;
    const owned = t.bond1.pasid;
    const forged = owned + 1;
    expect(g.viommu.hostPasid(forged)).toBeNull();
    const at = pasidEntryGpa(g, g.sid, owned);
    expect(at).not.toBeNull();
    const words = new Uint32Array(16);
    expect(t.vm1.ram.view.readBytes(at ?? 0, new Uint8Array(words.buffer))).toBe(true);
    const allocatedBefore = t.h.ioasid.allocated;
    const refusedBefore = g.viommu.stats.refused;
    // The guest copies its own entry to the next PASID and flushes that PASID's cache entry.
    apply(t, { kind: "pasid-entry", pick: 2, pasid: forged, words: [...words], gran: PcGran.PASID });
    expect(g.viommu.bound.has(forged)).toBe(false);
    expect(g.viommu.bound.has(owned)).toBe(true);
    expect(g.viommu.stats.refused).toBe(refusedBefore + 1);
    expect(t.h.ioasid.allocated).toBe(allocatedBefore);
    t.vm1.kill();
    t.h.settle();
    expect(t.h.ioasid.allocated).toBe(t.allocatedBefore);
  });
  it("the VMM sets where a VM's guest PASIDs start: each VM's first virtual-command PASID is 101, the next 102, on host PASIDs of their own", () => {
    const h = vmTestHost();
    const second = assign(h.board, "dsa1", 5, h.vfio);
    const a = new Vm({ host: h.board, vfio: h.vfio, id: 1, ramBytes: RAM, device: h.device, guestPasids: "spid", firstGuestPasid: SHARED_GPASID });
    const b = new Vm({ host: h.board, vfio: h.vfio, id: 2, ramBytes: RAM, device: second.device, guestPasids: "spid", firstGuestPasid: SHARED_GPASID });
    const ga = new Guest(a);
    const gb = new Guest(b);
    const bonds = [ga, gb].flatMap((g) =>
      ["P", "Q"].map((name) => {
        const mm = g.newProcess(name);
        mm.mmap(0x7000_0000_0000, PAGE, Prot.READ | Prot.WRITE, { populate: true });
        return g.core.sva.bindDevice(g.device, mm).pasid;
      }),
    );
    expect(bonds).toEqual([SHARED_GPASID, SHARED_GPASID + 1, SHARED_GPASID, SHARED_GPASID + 1]);
    const hosts = [a.viommu.hostPasid(SHARED_GPASID), a.viommu.hostPasid(SHARED_GPASID + 1), b.viommu.hostPasid(SHARED_GPASID), b.viommu.hostPasid(SHARED_GPASID + 1)];
    expect(new Set(hosts).size).toBe(4);
    expect(hosts).not.toContain(null);
    a.kill();
    b.kill();
    h.board.settle();
    expect(h.board.ioasid.allocated).toBe(0);
  });

  it.each([[0], [2 ** 20], [1.5]])("a first guest PASID of %s is EINVAL, and so is one for identity guest PASIDs; nothing of the VM is made", (first) => {
    const h = vmTestHost();
    expect(errnoOf(() => new Vm({ host: h.board, vfio: h.vfio, id: 1, ramBytes: RAM, device: h.device, guestPasids: "spid", firstGuestPasid: first }))).toBe(Errno.EINVAL);
    expect(errnoOf(() => new Vm({ host: h.board, vfio: h.vfio, id: 1, ramBytes: RAM, device: h.device, firstGuestPasid: 101 }))).toBe(Errno.EINVAL);
    // The name is free again: the refused VMs left no context behind.
    new Vm({ host: h.board, vfio: h.vfio, id: 1, ramBytes: RAM, device: h.device }).kill();
    h.board.settle();
  });
});
