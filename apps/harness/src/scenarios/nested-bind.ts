import { IommuProt, PagingDomain, encodeGpasidBindData } from "@vsva/iommu-core";
import { TableWriter, x86Format } from "@vsva/iommu-hw";
import { asHostPasid } from "@vsva/kernel";
import { VtdNestingDomain } from "@vsva/intel-svm";
import { GuestRamView } from "../world/guest-ram.js";
import { MiB } from "../world/host.js";
import { hostScenario } from "../world/host-scenario.js";
import { PATTERN, dmaWrite, hexBytes, plugInSvaDevice } from "./sva-common.js";

/** Guest RAM: GPA [0, 4 MiB) is host memory at 8 MiB (the data area below the kernel pool). */
const GUEST_HPA = 8 * MiB;
const GUEST_RAM = 4 * MiB;
/** The guest process's buffer, and the guest-physical page behind it. */
const GVA = 0x7f12_3456_7000;
const GPA_DATA = 0x20_0000;

/**
 * The host half of vSVA, before VFIO arrives: a region of host memory plays
 * guest RAM behind a nesting domain's second level (GPA -> HPA), a "guest"
 * builds an x86-64 first-level table in it (every pointer a GPA), the host
 * binds that table to a host PASID with bind_gpasid (a nested PASID entry:
 * first level = the guest table, second level = the domain's), DMA with the
 * host PASID goes through both levels, and unbind tears it down.
 */
export const nestedBind = hostScenario({
  name: "nested-bind",
  summary: "host-only vSVA: guest first-level table in GPA space, bind_gpasid installs a nested PASID entry, DMA through both levels, unbind",
  title: "Nested translation: bind_gpasid on the host (the host half of vSVA)",
  // SMMUv3 reports empty nesting info in the 2020 interface (seed 004): no bind_gpasid there.
  platforms: ["vtd"],
  body(ctx) {
    const h = ctx.host;
    const guest = new GuestRamView(h.mem, GUEST_HPA, GUEST_RAM);
    // The guest kernel's page allocator: a bump over guest RAM above 1 MiB.
    let nextGpa = 0x10_0000;
    const guestPt = new TableWriter(guest, x86Format({ levels: 4 }), { alloc: () => (nextGpa += 0x1000) });

    const slot = plugInSvaDevice(ctx);
    const vm = ctx.step("VMM: the VM's IOASID set; allocate a host PASID for the guest (as VFIO will)", () => {
      const set = h.ioasid.allocSet({ vm: "A" }, 8, "mm");
      ctx.defer("VMM: free the VM's IOASID set", () => h.ioasid.freeSet(set));
      const hpasid = h.ioasid.alloc(set, 1, 0xfffff, null);
      ctx.expect(h.ioasid.refcount(hpasid) === 1, "refcount 1: the VMM's allocation is the only holder");
      return { set, hpasid };
    });
    const s2 = ctx.step("VMM: a nesting-capable unmanaged domain owned by the VM's set; attach dsa0; map guest RAM GPA -> HPA in its second level", () => {
      const dom = h.core.domainAlloc(slot.dev, { type: "unmanaged", nestingParent: true, ioasidSet: vm.set });
      if (!(dom instanceof PagingDomain) || !(dom.driver instanceof VtdNestingDomain)) throw new Error("expected a VT-d nesting parent");
      let attached = false;
      ctx.defer("VMM: detach and free the nesting domain", () => {
        if (attached) h.core.detachDevice(dom, slot.dev);
        h.core.domainFree(dom);
      });
      h.core.attachDevice(dom, slot.dev);
      attached = true;
      h.core.map(dom, 0, GUEST_HPA, GUEST_RAM, IommuProt.READ | IommuProt.WRITE);
      return { dom };
    });
    const root = ctx.step("guest: build a 4-level first-level table in guest RAM mapping its buffer (every pointer a GPA)", () => {
      guestPt.map(GVA, GPA_DATA, 0x1000, { write: true, user: true });
      return guestPt.root;
    });
    ctx.step("bind_gpasid: nested PASID entry (first level = guest table GPA, second level = the domain's)", () => {
      h.core.bindGpasid(s2.dom, slot.dev, encodeGpasidBindData({ hpasid: BigInt(vm.hpasid), gpgd: BigInt(root), addrWidth: 48 }));
      ctx.defer("unbind the guest PASID if still bound", () => {
        if (s2.dom.nested.has(asHostPasid(vm.hpasid))) h.core.unbindGpasidPasid(s2.dom, slot.dev, vm.hpasid);
      });
      ctx.expect(h.ioasid.refcount(vm.hpasid) === 2, `refcount 2 while bound: the VMM and the IOMMU driver's bind (got ${h.ioasid.refcount(vm.hpasid)})`);
      // The truth for this PASID: the guest's own table, then GPA -> HPA.
      ctx.bindSpace(vm.hpasid, (va) => {
        const m = guestPt.lookup(va);
        return m === null ? null : guest.gpaToHpa(m.pa + (va - m.va));
      });
    });
    ctx.step("DMA with the host PASID: every guest table access and the final GPA go through the second level", () => {
      ctx.expect(dmaWrite(h, slot, vm.hpasid, GVA + 0x10, PATTERN) === "ok", "nested DMA completes");
      const landed = new Uint8Array(4);
      h.mem.readBytes(GUEST_HPA + GPA_DATA + 0x10, landed);
      ctx.expect(hexBytes(landed) === hexBytes(PATTERN), "the bytes land in the host page behind the guest's page");
    });
    ctx.step("unbind_gpasid: entry cleared; PASID cache, PASID-based IOTLB and device TLB flushed; page requests drained", () => {
      h.core.unbindGpasidPasid(s2.dom, slot.dev, vm.hpasid);
      ctx.unbindSpace(vm.hpasid);
      ctx.expect(h.ioasid.refcount(vm.hpasid) === 1, `refcount back to 1 after unbind: the driver dropped its reference (got ${h.ioasid.refcount(vm.hpasid)})`);
    });
    ctx.step("a DMA with the unbound PASID faults", () => {
      ctx.require(dmaWrite(h, slot, vm.hpasid, GVA + 0x10, PATTERN) !== "ok", "no DMA through an unbound PASID");
    });
    ctx.step("VMM frees the host PASID: reclaimed at once (no references left)", () => {
      h.ioasid.free(vm.set, vm.hpasid);
      h.settle();
      ctx.expect(h.ioasid.state(vm.hpasid) === "IDLE", `the host PASID is reclaimed (state ${h.ioasid.state(vm.hpasid)})`);
    });
  },
});
