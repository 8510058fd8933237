import { Prot } from "@vsva/iommu-core";
import { Guest, Vm } from "@vsva/vmm";
import { hostScenario } from "../world/host-scenario.js";
import { PATTERN, hexBytes } from "./sva-common.js";
import { PAGE, bindToVfio, groupOf, vfioOn } from "./vfio-common.js";
import { replayDeadDma, vmKillPoint } from "./vm-kill.js";

/**
 * The first guest scenario: a VM made by the VMM package (guest RAM over
 * scattered host pages, a nesting container, KVM), a guest kernel running
 * the same IOMMU packages over its virtual VT-d, and a guest process that
 * binds the assigned device with SVA. Every host action on the guest's
 * behalf comes from the VMM's traps: the virtual command for the PASID, the
 * PASID-cache flush for the bind, the guest's page group response for a
 * fault. The invariant checker holds the device's PASID DMA to the guest
 * process's mapping, through the guest's table and the VM's RAM.
 */
/** Guest RAM: small, so the fail-nth sweep (MAP_DMA pins page by page) stays quick; the guest kernel's pool is its upper half. */
const RAM = 512 * 1024;

export const guestSva = hostScenario({
  name: "guest-sva",
  summary: "a guest process binds an assigned device with SVA through the vIOMMU: vCMD PASID, PASID-cache flush → host bind, nested DMA, a guest page fault round trip, unbind, VM killed with nothing left",
  title: "vSVA end to end: a guest kernel over the virtual VT-d",
  platforms: ["vtd"],
  at: "kill VM 1 (its VMM process dies) after step STEP of the run; the device then replays the guest's last DMA, which must not translate",
  body(outer) {
    const k = vmKillPoint(outer);
    const ctx = k.ctx;
    const h = ctx.host;
    const vfio = vfioOn(h);
    const devNo = ctx.choose.int("dsa0's slot", 1, 31, { show: (d) => `00:${d.toString(16).padStart(2, "0")}.0` });
    const VA = ctx.choose.int("the guest process's buffer", 0x1_0000_0000, 0x3fff_ffff_0000, { align: 0x1_0000 });
    const slot = ctx.step("plug in dsa0; vfio-pci takes it (no host driver enables SVA on it)", () => {
      const s = h.addDevice("dsa0", devNo);
      bindToVfio(ctx, vfio, s);
      return s;
    });
    const vm = ctx.step("VMM starts VM 1: 512 KiB of guest RAM over scattered host pages, nesting container, all RAM mapped (IOVA = GPA), KVM", () => {
      const v = new Vm({ host: h, vfio, id: 1, ramBytes: RAM, device: { group: groupOf(slot.dev), name: "dsa0", endpoint: slot.ep } });
      ctx.defer("the VMM process exits: VFIO release, KVM teardown, guest RAM back to the host", () => v.kill());
      ctx.watchVm(v);
      k.setVm(v);
      ctx.expect(v.ram.view.pinStats.pinnedPages === RAM / PAGE, "all guest RAM pinned");
      return v;
    });
    const g = k.step("guest boots its IOMMU stack over the virtual VT-d (caching mode, virtual command allocator)", () => new Guest(vm));
    if (g === null) return;
    const p = k.step("guest process P maps 8 KiB (the second page left for demand paging) and binds dsa0 with SVA", () => {
      const mm = g.newProcess("P");
      mm.mmap(VA, 2 * PAGE, Prot.READ | Prot.WRITE);
      mm.write(VA, new Uint8Array(4)); // touches the first page only
      const bond = g.core.sva.bindDevice(g.device, mm);
      ctx.bindSpace(bond.pasid, (va) => {
        const m = mm.lookup(va);
        return m === null ? null : vm.hpa(m.pa + (va - m.va));
      });
      ctx.expect(g.viommu.bound.get(bond.pasid)?.gpgd === mm.pgd, "the host bound the guest's table for the PASID");
      ctx.expect(h.ioasid.refcount(bond.pasid as never) >= 2, "the host PASID is held by the VM's set and the bind");
      return { mm, bond };
    });
    if (p === null) return;
    k.step("the guest's driver programs dsa0 with its PASID: the write walks the guest's table and guest RAM through the host's second level", () => {
      ctx.expect(g.dma({ pasid: p.bond.pasid, addr: VA + 0x10, length: PATTERN.length, direction: "write", pattern: PATTERN }) === "ok", "nested DMA completes");
      ctx.expect(hexBytes(p.mm.read(VA + 0x10, 4)) === hexBytes(PATTERN), "the guest process reads the bytes by CPU");
    });
    k.step("DMA to the untouched page: page request → VFIO fault ring → the guest's page request queue → guest pages in → response → retry", () => {
      ctx.expect(g.dma({ pasid: p.bond.pasid, addr: VA + PAGE + 0x20, length: PATTERN.length, direction: "write", pattern: PATTERN }) === "ok", "the retried DMA completes");
      ctx.expect(g.viommu.stats.pageRequests >= 1 && g.viommu.stats.responses === g.viommu.stats.pageRequests, "the fault went through the guest and back");
      ctx.expect(hexBytes(p.mm.read(VA + PAGE + 0x20, 4)) === hexBytes(PATTERN), "the guest sees the bytes in the page it faulted in");
    });
    k.step("guest P unbinds: the guest clears its PASID entry and flushes; the VMM unbinds on the host", () => {
      g.core.sva.unbindDevice(p.bond);
      ctx.unbindSpace(p.bond.pasid);
      ctx.expect(g.viommu.bound.size === 0, "nothing bound on the host for the guest");
    });
    k.step("a DMA with the unbound PASID faults", () => {
      ctx.require(g.dma({ pasid: p.bond.pasid, addr: VA + 0x10, length: PATTERN.length, direction: "write", pattern: PATTERN }) !== "ok", "no DMA through an unbound PASID");
    });
    if (!k.alive()) replayDeadDma(ctx, slot.ep.dma, p.bond.pasid, VA + 0x10);
  },
});
