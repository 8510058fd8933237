import { Errno, KernelError, TraceRecorder, asIoasid, errnoName } from "@vsva/kernel";
import { TableWriter, x86Format } from "@vsva/iommu-hw";
import { MiB } from "../world/host.js";
import { hostScenario, type StepContext } from "../world/host-scenario.js";
import type { DeviceSlot } from "../world/host.js";
import { PATTERN, dmaWrite, hexBytes, plugInSvaDevice } from "./sva-common.js";
import {
  PAGE, type Vmm, allocPasid, bindOp, bindToVfio, configOf, freePasids, groupOf, invalidateOp, mapGuestRam, openContainer, startVmm, unbindOp, unmapIova, vfioOn,
} from "./vfio-common.js";
import { VfioIoctl, vfioPciOps } from "@vsva/vfio-type1";

/** Guest RAM of every VM here: 1 MiB, backed by host pages in the data area below the kernel pool. */
const RAM = 1 * MiB;
const VM_A_HOST = 8 * MiB;
const VM_B_HOST = 10 * MiB;

/** A DMA without PASID (requests-without-PASID go through the second level, the DMA API's or VFIO's domain). */
function dmaWriteRid(ctx: StepContext, slot: DeviceSlot, iova: number, bytes: Uint8Array): string {
  slot.ep.dma.setProgram({ addr: iova, length: bytes.length, direction: "write", pattern: bytes });
  const first = slot.ep.dma.trigger();
  if (first !== "pageRequestPending") return first;
  ctx.host.settle();
  return slot.ep.dma.result;
}

function landed(ctx: StepContext, hpa: number): string {
  const b = new Uint8Array(PATTERN.length);
  ctx.host.mem.readBytes(hpa, b);
  return hexBytes(b);
}

/**
 * The guest kernel: an x86-64 4-level first-level table in its RAM (every
 * pointer a GPA, pages from a bump allocator above 512 KiB), and a mapping
 * of its process's buffer.
 */
export function guestTable(vmm: Vmm): TableWriter {
  let next = 0x8_0000;
  return new TableWriter(vmm.ram, x86Format({ levels: 4 }), { alloc: () => (next += PAGE) });
}

export const vfioMap = hostScenario({
  name: "vfio-map",
  summary: "VFIO type1v2: a VMM maps guest RAM with MAP_DMA (pinned, charged), a DMA without PASID lands in the right host pages, UNMAP unpins everything",
  title: "VFIO MAP_DMA/UNMAP_DMA through the second level",
  platforms: ["vtd"],
  body(ctx) {
    const h = ctx.host;
    const vfio = vfioOn(h);
    const slot = ctx.step("plug in nic0 at 00:03.0; vfio-pci takes it", () => {
      const s = h.addDevice("nic0", 3);
      bindToVfio(ctx, vfio, s);
      return s;
    });
    const vmm = startVmm(ctx, "qemu", VM_A_HOST, RAM);
    // Three regions of guest RAM, each a seeded number of pages at a seeded place (apart, so they never overlap).
    const regions = [0, 1, 2].map((i) => {
      const pages = ctx.choose.int(`region ${i} pages`, 1, 16);
      const at = i * 0x5_0000 + ctx.choose.int(`region ${i} offset`, 0, 0x3_0000, { align: PAGE });
      return { gpa: at, size: pages * PAGE };
    });
    const c = ctx.step("VMM: open the container and the group, SET_IOMMU type1v2 (the group is attached to a fresh unmanaged domain)", () =>
      openContainer(vfio, vmm, groupOf(slot.dev), "type1v2"));
    ctx.step("VMM: MAP_DMA three regions of guest RAM at IOVA = GPA (pages pinned, charged to RLIMIT_MEMLOCK)", () => {
      for (const r of regions) mapGuestRam(c, vmm, r.gpa, r.size);
      const bytes = regions.reduce((a, r) => a + r.size, 0);
      ctx.expect(vmm.user.lockedBytes === bytes, `${bytes} bytes charged (got ${vmm.user.lockedBytes})`);
      ctx.expect(vmm.ram.pinStats.pinnedPages === bytes / PAGE, `${bytes / PAGE} pages pinned (got ${vmm.ram.pinStats.pinnedPages})`);
    });
    ctx.step("the device DMAs without PASID into the last page of each region: the bytes land in the host page behind that guest page", () => {
      for (const r of regions) {
        const iova = r.gpa + r.size - PAGE + 0x40;
        ctx.expect(dmaWriteRid(ctx, slot, iova, PATTERN) === "ok", `DMA at IOVA 0x${iova.toString(16)} completes`);
        ctx.expect(landed(ctx, vmm.hpa(iova)) === hexBytes(PATTERN), `IOVA 0x${iova.toString(16)} lands at host 0x${vmm.hpa(iova).toString(16)}`);
      }
    });
    ctx.step("a DMA outside every mapping faults", () => {
      ctx.require(dmaWriteRid(ctx, slot, 0xf_0000 + 0x40, PATTERN) !== "ok", "no DMA through an IOVA nothing maps");
    });
    ctx.step("VMM: UNMAP_DMA every region: pins and the locked-memory charge back to zero", () => {
      for (const r of regions) unmapIova(c, r.gpa, r.size);
      ctx.expect(vmm.user.lockedBytes === 0, `nothing charged (got ${vmm.user.lockedBytes})`);
      ctx.expect(vmm.ram.pinStats.pinnedPages === 0, `nothing pinned (got ${vmm.ram.pinStats.pinnedPages})`);
    });
    ctx.step("a DMA into an unmapped region faults", () => {
      const r = regions[0];
      if (r !== undefined) ctx.require(dmaWriteRid(ctx, slot, r.gpa, PATTERN) !== "ok", "no DMA after UNMAP_DMA");
    });
  },
});

export const vfioNestedBind = hostScenario({
  name: "vfio-nested-bind",
  summary: "nested-bind through VFIO: PASID_REQUEST, NESTING_OP bind of the guest's table in guest RAM, DMA through both levels, cache invalidate, unbind, free",
  title: "vSVA through VFIO: the nesting type, PASID_REQUEST and NESTING_OP",
  // As nested-bind: only VT-d had the bind_gpasid op in the 2020 interface.
  platforms: ["vtd"],
  body(ctx) {
    const h = ctx.host;
    const vfio = vfioOn(h);
    const GVA = ctx.choose.int("guest buffer GVA", 0x1_0000_0000, 0x7fff_ffff_f000, { align: PAGE });
    const GPA_A = ctx.choose.int("guest page GPA", 0x1_0000, 0x7_f000, { align: PAGE });
    const GPA_B = GPA_A ^ 0x4_0000; // the page the guest moves its buffer to: another 64 KiB chunk, so another host page
    const slot = plugInSvaDevice(ctx, "plug in dsa0 (probed by the IOMMU driver, SVA enabled); vfio-pci takes it");
    bindToVfio(ctx, vfio, slot);
    const vmm = startVmm(ctx, "qemu", VM_A_HOST, RAM);
    const pt = guestTable(vmm);
    const c = ctx.step("VMM: a nesting container (SET_IOMMU TYPE1_NESTING: the VM's IOASID set is made for its mm); MAP_DMA all guest RAM", () => {
      const f = openContainer(vfio, vmm, groupOf(slot.dev), "nesting");
      mapGuestRam(f, vmm, 0, RAM);
      return f;
    });
    const hpasid = ctx.step("VMM: PASID_REQUEST alloc from the VM's set", () => {
      const p = asIoasid(allocPasid(c, 1, 0xfffff));
      ctx.expect(h.ioasid.refcount(p) === 1, `refcount 1: the VM's allocation (got ${h.ioasid.refcount(p)})`);
      return p;
    });
    ctx.step("guest: build its first-level table in guest RAM mapping its buffer", () => pt.map(GVA, GPA_A, PAGE, { write: true, user: true }));
    ctx.step("VMM: NESTING_OP BIND_PGTBL (guest table GPA): VFIO passes it to the IOMMU core for the container's device", () => {
      c.ioctl(VfioIoctl.IOMMU_NESTING_OP, bindOp(hpasid, pt.root));
      ctx.expect(h.ioasid.refcount(hpasid) === 2, `refcount 2 while bound (got ${h.ioasid.refcount(hpasid)})`);
      ctx.bindSpace(hpasid, (va) => {
        const m = pt.lookup(va);
        return m === null ? null : vmm.ram.gpaToHpa(m.pa + (va - m.va));
      });
    });
    ctx.step("DMA with the host PASID: guest table walk and data both through the second level", () => {
      ctx.expect(dmaWrite(h, slot, hpasid, GVA + 0x10, PATTERN) === "ok", "nested DMA completes");
      ctx.expect(landed(ctx, vmm.hpa(GPA_A + 0x10)) === hexBytes(PATTERN), "the bytes land in the host page behind the guest's page");
    });
    ctx.step("guest: move its buffer to another page and invalidate (NESTING_OP CACHE_INVLD, PASID-selective IOTLB)", () => {
      pt.unmap(GVA, PAGE);
      pt.map(GVA, GPA_B, PAGE, { write: true, user: true });
      c.ioctl(VfioIoctl.IOMMU_NESTING_OP, invalidateOp(hpasid));
    });
    ctx.step("DMA again: it follows the guest's new mapping", () => {
      ctx.expect(dmaWrite(h, slot, hpasid, GVA + 0x20, PATTERN) === "ok", "nested DMA completes");
      ctx.expect(landed(ctx, vmm.hpa(GPA_B + 0x20)) === hexBytes(PATTERN), "the bytes land behind the guest's new page");
    });
    ctx.step("VMM: NESTING_OP UNBIND_PGTBL", () => {
      c.ioctl(VfioIoctl.IOMMU_NESTING_OP, unbindOp(hpasid));
      ctx.unbindSpace(hpasid);
      ctx.expect(h.ioasid.refcount(hpasid) === 1, `refcount back to 1 (got ${h.ioasid.refcount(hpasid)})`);
    });
    ctx.step("a DMA with the unbound PASID faults", () => {
      ctx.require(dmaWrite(h, slot, hpasid, GVA + 0x10, PATTERN) !== "ok", "no DMA through an unbound PASID");
    });
    ctx.step("VMM: PASID_REQUEST free: the PASID is reclaimed", () => {
      ctx.expect(freePasids(c, hpasid, hpasid) === 0, "free returns 0");
      h.settle();
      ctx.expect(h.ioasid.state(hpasid) === "IDLE", `the PASID is reclaimed (state ${h.ioasid.state(hpasid)})`);
    });
  },
});

/** A parent device whose driver (the VDCM) enables aux domains and SVA, with two IOMMU-backed mdevs in VFIO. */
function parentWithMdevs(ctx: StepContext, names: readonly string[]) {
  const h = ctx.host;
  const vfio = vfioOn(h);
  const slot = plugInSvaDevice(ctx, "plug in dsa0 (probed by the IOMMU driver); its driver enables SVA");
  const mdevs = ctx.step(`its driver enables aux domains and creates ${names.join(" and ")} on its work queues (IOMMU-backed: sub-devices of dsa0)`, () => {
    h.core.enableFeature(slot.dev, "aux");
    return names.map((n) => {
      const sub = h.core.addSubDevice(slot.dev, n);
      const m = vfio.addMdev(n, sub, vfioPciOps(configOf(slot)));
      ctx.defer(`remove ${n}`, () => vfio.removeDevice(m));
      return m;
    });
  });
  return { vfio, slot, mdevs };
}

export const mdevSiblings = hostScenario({
  name: "mdev-siblings",
  summary: "two IOMMU-backed mdevs of one parent in two nesting containers of one VM, bound to the same PASID: the first bind programs the entry, the last unbind clears it",
  title: "Sibling mdevs share one nested PASID entry on their parent",
  platforms: ["vtd"],
  body(ctx) {
    const h = ctx.host;
    const rec = new TraceRecorder(h.kernel.trace);
    const driverCalls = (kind: "iommu.bind-gpasid" | "iommu.unbind-gpasid"): boolean[] => rec.ofKind(kind).map((e) => e.payload.driverCalled);
    const GVA = ctx.choose.int("guest buffer GVA", 0x1_0000_0000, 0x7fff_ffff_f000, { align: PAGE });
    const GPA = ctx.choose.int("guest page GPA", 0x1_0000, 0x7_f000, { align: PAGE });
    const { vfio, slot, mdevs } = parentWithMdevs(ctx, ["mdev1", "mdev2"]);
    const vmm = startVmm(ctx, "qemu", VM_A_HOST, RAM);
    const pt = guestTable(vmm);
    const [c1, c2] = ctx.step("VMM: one nesting container per mdev (one group each), guest RAM mapped in both", () =>
      mdevs.map((m) => {
        const c = openContainer(vfio, vmm, m.group?.id ?? -1, "nesting");
        mapGuestRam(c, vmm, 0, RAM);
        return c;
      }));
    if (c1 === undefined || c2 === undefined) return;
    const hpasid = ctx.step("VMM: PASID_REQUEST alloc (one IOASID set per VM: both containers share it)", () => asIoasid(allocPasid(c1, 1, 0xfffff)));
    ctx.step("guest: its table maps the buffer", () => pt.map(GVA, GPA, PAGE, { write: true, user: true }));
    ctx.step("bind the PASID through mdev1's container: the parent's PASID entry is programmed", () => {
      c1.ioctl(VfioIoctl.IOMMU_NESTING_OP, bindOp(hpasid, pt.root));
      ctx.expect(driverCalls("iommu.bind-gpasid").join() === "true", `the driver was called for the first bind (${driverCalls("iommu.bind-gpasid").join()})`);
      ctx.bindSpace(hpasid, (va) => {
        const m = pt.lookup(va);
        return m === null ? null : vmm.ram.gpaToHpa(m.pa + (va - m.va));
      });
    });
    ctx.step("bind the same PASID through mdev2's container: counted, the entry is not written again", () => {
      c2.ioctl(VfioIoctl.IOMMU_NESTING_OP, bindOp(hpasid, pt.root));
      ctx.expect(driverCalls("iommu.bind-gpasid").join() === "true,false", `the second bind did not reach the driver (${driverCalls("iommu.bind-gpasid").join()})`);
    });
    ctx.step("the parent DMAs with the PASID: through both levels", () => {
      ctx.expect(dmaWrite(h, slot, hpasid, GVA + 0x30, PATTERN) === "ok", "nested DMA completes");
      ctx.expect(landed(ctx, vmm.hpa(GPA + 0x30)) === hexBytes(PATTERN), "the bytes land behind the guest page");
    });
    // Either may leave first. The one that programmed the entry (mdev1) leaving hands it over: the entry is written
    // again over the sibling's second level (its aux domain), so the driver is called; the other leaving only drops a count.
    const programmerFirst = ctx.choose.int("mdev1 (the programmer) unbinds first", 0, 1, { show: (b) => (b === 1 ? "yes" : "no") }) === 1;
    const [first, last] = programmerFirst ? [c1, c2] : [c2, c1];
    ctx.step(`unbind through ${programmerFirst ? "mdev1 (handed over to mdev2)" : "mdev2 (a count dropped)"}: the sibling still uses the entry, so it stays`, () => {
      first.ioctl(VfioIoctl.IOMMU_NESTING_OP, unbindOp(hpasid));
      ctx.expect(driverCalls("iommu.unbind-gpasid").join() === String(programmerFirst), `the first unbind reached the driver only to hand over (${driverCalls("iommu.unbind-gpasid").join()})`);
      ctx.expect(dmaWrite(h, slot, hpasid, GVA + 0x40, PATTERN) === "ok", "DMA still completes: the entry is live");
    });
    ctx.step("unbind through the other, the last user: the entry is cleared", () => {
      last.ioctl(VfioIoctl.IOMMU_NESTING_OP, unbindOp(hpasid));
      ctx.unbindSpace(hpasid);
      ctx.expect(driverCalls("iommu.unbind-gpasid").join() === `${programmerFirst},true`, `the last unbind cleared the entry (${driverCalls("iommu.unbind-gpasid").join()})`);
      ctx.require(dmaWrite(h, slot, hpasid, GVA + 0x40, PATTERN) !== "ok", "no DMA through the cleared entry");
    });
    ctx.step("VMM: free the PASID", () => {
      freePasids(c1, hpasid, hpasid);
      h.settle();
      ctx.expect(h.ioasid.state(hpasid) === "IDLE", `reclaimed (state ${h.ioasid.state(hpasid)})`);
    });
  },
});

export const mdevNotIommuBacked = hostScenario({
  name: "mdev-not-iommu-backed",
  summary: "an mdev with no IOMMU backing in a nesting container: every nesting op is EINVAL, no driver is reached, nothing changes",
  title: "Nesting ops on an mdev without IOMMU backing",
  platforms: ["vtd"],
  body(ctx) {
    const h = ctx.host;
    const vfio = vfioOn(h);
    const rec = new TraceRecorder(h.kernel.trace);
    const GPGD = ctx.choose.int("guest table GPA", 0x1_0000, 0xf_f000, { align: PAGE });
    const slot = ctx.step("plug in nic0 (its vendor driver emulates DMA in software: no IOMMU sub-device)", () => h.addDevice("nic0", 4));
    const mdev = ctx.step("its driver creates mdev-sw, IOMMU-less", () => {
      const m = vfio.addMdev("mdev-sw", null, vfioPciOps(configOf(slot)));
      ctx.defer("remove mdev-sw", () => vfio.removeDevice(m));
      return m;
    });
    const vmm = startVmm(ctx, "qemu", VM_A_HOST, RAM);
    const c = ctx.step("VMM: nesting container with the mdev's group; MAP_DMA guest RAM (the vendor driver's external domain)", () => {
      const f = openContainer(vfio, vmm, mdev.group?.id ?? -1, "nesting");
      mapGuestRam(f, vmm, 0, RAM);
      return f;
    });
    const hpasid = ctx.step("VMM: PASID_REQUEST alloc", () => asIoasid(allocPasid(c, 1, 0xfffff)));
    ctx.step("every NESTING_OP (bind, cache invalidate, unbind) is EINVAL and reaches no IOMMU driver", () => {
      const before = { events: rec.events.length, refs: h.ioasid.refcount(hpasid), locked: vmm.user.lockedBytes, maps: c.container.mappings.length };
      for (const [what, op] of [["bind", bindOp(hpasid, GPGD)], ["invalidate", invalidateOp(hpasid)], ["unbind", unbindOp(hpasid)]] as const) {
        let errno: number | null = null;
        try {
          c.ioctl(VfioIoctl.IOMMU_NESTING_OP, op);
        } catch (e) {
          if (!(e instanceof KernelError)) throw e;
          errno = e.errno;
        }
        ctx.require(errno === Errno.EINVAL, `${what}: EINVAL (got ${errno === null ? "success" : errnoName(errno)})`);
      }
      const iommuEvents = rec.events.slice(before.events).filter((e) => e.kind.startsWith("iommu.") || e.kind.startsWith("vtd."));
      ctx.require(iommuEvents.length === 0, `no IOMMU event (got ${iommuEvents.map((e) => e.kind).join(", ")})`);
      ctx.require(h.ioasid.refcount(hpasid) === before.refs, "the PASID's references are unchanged");
      ctx.require(vmm.user.lockedBytes === before.locked && c.container.mappings.length === before.maps, "mappings and pins are unchanged");
    });
    ctx.step("VMM: free the PASID", () => {
      freePasids(c, hpasid, hpasid);
      h.settle();
      ctx.expect(h.ioasid.state(hpasid) === "IDLE", `reclaimed (state ${h.ioasid.state(hpasid)})`);
    });
  },
});

export const vfioQuota = hostScenario({
  name: "vfio-quota",
  summary: "a VM exhausts its PASID quota (PASID_REQUEST ENOSPC); another VM on the same host still allocates",
  title: "Per-VM PASID quota of VFIO's IOASID sets",
  platforms: ["vtd"],
  body(ctx) {
    const h = ctx.host;
    const quota = ctx.choose.int("per-VM PASID quota", 2, 6);
    const vfio = vfioOn(h, { pasidQuota: quota });
    const slots = ctx.step("plug in dsa0 and dsa1; vfio-pci takes both", () =>
      (["dsa0", "dsa1"] as const).map((n, i) => {
        const s = h.addDevice(n, 5 + i);
        h.enableSva(s);
        bindToVfio(ctx, vfio, s);
        return s;
      }));
    const vms = [startVmm(ctx, "qemu-A", VM_A_HOST, RAM), startVmm(ctx, "qemu-B", VM_B_HOST, RAM)];
    const cs = ctx.step("each VMM: a nesting container with its device", () => vms.map((vm, i) => openContainer(vfio, vm, groupOf(slots[i]?.dev ?? { group: null }), "nesting")));
    const [ca, cb] = cs;
    if (ca === undefined || cb === undefined) return;
    ctx.step(`VM A allocates its whole quota (${quota}), then one more: ENOSPC, nothing allocated`, () => {
      for (let i = 0; i < quota; i++) allocPasid(ca, 1, 0xfffff);
      let errno: number | null = null;
      try {
        allocPasid(ca, 1, 0xfffff);
      } catch (e) {
        if (!(e instanceof KernelError)) throw e;
        errno = e.errno;
      }
      ctx.require(errno === Errno.ENOSPC, `over quota: ENOSPC (got ${errno === null ? "a PASID" : errnoName(errno)})`);
    });
    ctx.step("VM B is unaffected: it allocates (and frees) a PASID", () => {
      const p = asIoasid(allocPasid(cb, 1, 0xfffff));
      ctx.expect(h.ioasid.refcount(p) === 1, "VM B holds its PASID");
      freePasids(cb, p, p);
    });
    ctx.step("VM A frees everything and can allocate again", () => {
      freePasids(ca, 1, 0xfffff);
      h.settle();
      const p = allocPasid(ca, 1, 0xfffff);
      ctx.expect(p > 0, "VM A allocates again");
    });
  },
});

export const vfioReleaseLive = hostScenario({
  name: "vfio-release-live",
  summary: "the VMM dies with live binds and mappings: VFIO unbinds the guest PASID, unmaps and unpins, frees the domain and the VM's PASIDs, in order; nothing is left",
  title: "The VMM dies with a live vSVA bind",
  platforms: ["vtd"],
  body(ctx) {
    const h = ctx.host;
    const vfio = vfioOn(h);
    const rec = new TraceRecorder(h.kernel.trace);
    const GVA = ctx.choose.int("guest buffer GVA", 0x1_0000_0000, 0x7fff_ffff_f000, { align: PAGE });
    const GPA = ctx.choose.int("guest page GPA", 0x1_0000, 0x7_f000, { align: PAGE });
    const slot = plugInSvaDevice(ctx, "plug in dsa0 (SVA enabled); vfio-pci takes it");
    bindToVfio(ctx, vfio, slot);
    const vmm = startVmm(ctx, "qemu", VM_A_HOST, RAM);
    const pt = guestTable(vmm);
    const c = ctx.step("VMM: nesting container, MAP_DMA guest RAM, open the device", () => {
      const f = openContainer(vfio, vmm, groupOf(slot.dev), "nesting");
      mapGuestRam(f, vmm, 0, RAM);
      return f;
    });
    const pasids = ctx.step("VMM: PASID_REQUEST two PASIDs; the guest maps its buffer; bind the first", () => {
      const p = asIoasid(allocPasid(c, 1, 0xfffff));
      const spare = asIoasid(allocPasid(c, 1, 0xfffff));
      pt.map(GVA, GPA, PAGE, { write: true, user: true });
      c.ioctl(VfioIoctl.IOMMU_NESTING_OP, bindOp(p, pt.root));
      ctx.bindSpace(p, (va) => {
        const m = pt.lookup(va);
        return m === null ? null : vmm.ram.gpaToHpa(m.pa + (va - m.va));
      });
      ctx.expect(dmaWrite(h, slot, p, GVA, PATTERN) === "ok", "nested DMA completes while live");
      return [p, spare] as const;
    });
    ctx.step("the VMM is killed: exit closes its files; the last close releases the container", () => {
      const from = rec.events.length;
      const set = h.ioasid.findSetByToken(vmm.user.mm);
      vmm.user.exit();
      h.settle();
      ctx.unbindSpace(pasids[0]);
      const kinds = rec.events.slice(from).map((e) => e.kind);
      const unbind = kinds.indexOf("iommu.unbind-gpasid");
      const unmap = kinds.indexOf("vfio.unmap");
      const setFree = kinds.indexOf("ioasid.set.free");
      ctx.require(unbind >= 0, "the live bind was unbound");
      ctx.require(unbind < unmap || unmap < 0, "unbind before the second level is unmapped (the nested entry never outlives its second level)");
      ctx.require(setFree < 0 || unbind < setFree, "unbind before the VM's PASIDs are freed (free always succeeds, nothing still bound)");
      ctx.require(vmm.ram.pinStats.pinnedPages === 0 && vmm.user.lockedBytes === 0, `nothing pinned or charged (pinned ${vmm.ram.pinStats.pinnedPages}, charged ${vmm.user.lockedBytes})`);
      ctx.require(vmm.user.openFiles === 0 && vfio.liveMms === 0, "no file and no vfio_mm left");
      ctx.require(c.container.domains.length === 0 && c.container.mappings.length === 0, "no domain and no mapping left");
      ctx.require(set === null || h.ioasid.findSetByToken(vmm.user.mm) === null, "the VM's IOASID set is gone");
      for (const p of pasids) ctx.require(h.ioasid.state(p) === "IDLE", `PASID ${p} reclaimed (state ${h.ioasid.state(p)})`);
    });
    ctx.step("a DMA with the dead VM's PASID faults", () => {
      ctx.require(dmaWrite(h, slot, pasids[0], GVA, PATTERN) !== "ok", "no DMA after the VMM died");
    });
  },
});
