import { TraceRecorder, asIoasid, asVmId } from "@vsva/kernel";
import { DSA_COMPLETION_SIZE, DescFlag, DsaCmdErr, DsaOpcode, DsaStatus, decodeCompletion, encodeDescriptor } from "@vsva/dsa";
import { openMdev } from "@vsva/vdcm/testing";
import { VfioIoctl } from "@vsva/vfio-type1";
import { MiB } from "../world/host.js";
import { hostScenario } from "../world/host-scenario.js";
import { createMdev, guestMemmove, plugAccelerator } from "./vdcm-common.js";
import { guestTable } from "./vfio.js";
import { allocPasid, bindOp, freePasids, mapGuestRam, startVm, unbindOp, vfioOn } from "./vfio-common.js";

const RAM = 1 * MiB;
const VM_HOST = 8 * MiB;
const PAGE = 0x1000;
const PASID_MAX = 0xfffff;

/**
 * The VDCM's half of the guest life cycle (steps 8–16 of the normal table of
 * the proposed Documentation/driver-api/ioasid.rst, "VDCM PASID
 * Programming", vSVA series on the iommu list, 2020) on the real stack: the
 * guest's idxd driver (a stand-in reaching the mdev only through the VMM's
 * VFIO device file, as a guest's MMIO traps would) writes its guest PASID
 * into the virtual WQCFG and enables the WQ; the VDCM traps the command,
 * translates the guest PASID by SPID in the VM's set (taking a reference) and
 * programs the host PASID into the hardware WQCFG through idxd. The guest
 * reads back only its own PASID; a guest PASID that does not resolve gets the
 * device's own error; disabling the WQ quiesces and clears the hardware WQ
 * before the reference goes.
 */
export const vdcmProgram = hostScenario({
  name: "vdcm-program",
  summary: "an mdev's DMA API use runs on its aux domain's default PASID; a guest programs its guest PASID on an mdev's dedicated WQ through the VFIO device file: the hardware WQCFG holds the host PASID (refs 4 then 3 as steps 9-16), an unbound PASID gets the device's error, the clear is never lazy",
  title: "VDCM PASID programming through an mdev's virtual BAR0",
  // bind_gpasid: VT-d only.
  platforms: ["vtd"],
  body(ctx) {
    const h = ctx.host;
    const vfio = vfioOn(h);
    const rec = new TraceRecorder(h.kernel.trace);
    const gpasid = ctx.choose.int("guest PASID", 1, PASID_MAX);
    const drawn = ctx.choose.int("unbound guest PASID", 1, PASID_MAX);
    const stray = drawn === gpasid ? (gpasid % PASID_MAX) + 1 : drawn;
    const gva = ctx.choose.int("guest buffer GVA", 0x1_0000_0000, 0x7fff_ffff_0000, { align: 0x1_0000 });
    const gpa = ctx.choose.int("guest buffer GPA", 0x1_0000, 0x7_0000, { align: 0x1_0000 });
    const accel = plugAccelerator(ctx, vfio);
    const hw = accel.idxd.wq(0);
    const vmId = asVmId(1);
    const mm = { vmm: "qemu" };
    const mdev = createMdev(ctx, accel, "mdev0", 0, vmId, mm);
    const vm = startVm(ctx, "qemu", VM_HOST, RAM, vmId, mm);
    const pt = guestTable(vm);
    const { container: c, guest } = ctx.step("VMM: opens mdev0 (nesting container: the VM's IOASID set; its group; its device file); MAP_DMA guest RAM", () => {
      const o = openMdev(vfio, vm.user, mdev, vmId);
      mapGuestRam(o.container, vm, 0, RAM);
      return o;
    });
    ctx.step("guest driver: enables the WQ with PASID_EN clear (its DMA API use): the VDCM programs the mdev's default PASID, its aux domain's, and a MEMMOVE with guest-physical addresses lands in guest RAM through VFIO's MAP_DMA", () => {
      const err = guest.programWq(null);
      ctx.require(err === 0, `ENABLE_WQ succeeds (CMDSTS error 0x${err.toString(16)})`);
      const domain = mdev.sub.domain;
      ctx.require(domain !== null, "the mdev is aux-attached to the container's domain");
      const aux = h.core.auxGetPasid(domain, mdev.sub);
      ctx.expect(hw.pasid === aux, `the hardware WQ holds the aux domain's default PASID ${aux} (got ${hw.pasid ?? "none"})`);
      // The default PASID's address space is the container's second level (IOVA = GPA) for as long as the mdev is aux-attached.
      ctx.bindSpace(asIoasid(aux), (iova) => (iova < RAM ? vm.hpa(iova) : null));
      // Source, destination and completion record are GPAs: the aux domain's second level (MAP_DMA of guest RAM, IOVA = GPA) translates them.
      const data = Uint8Array.from({ length: 64 }, (_, i) => (i * 13 + 5) & 0xff);
      h.mem.writeBytes(vm.hpa(gpa), data);
      const taken = guest.submit(encodeDescriptor({ opcode: DsaOpcode.MEMMOVE, flags: DescFlag.CRAV | DescFlag.RCR, completionAddr: gpa + PAGE, src: gpa, dst: gpa + 0x800, size: data.length }));
      h.settle();
      const rec = new Uint8Array(DSA_COMPLETION_SIZE);
      h.mem.readBytes(vm.hpa(gpa) + PAGE, rec);
      const moved = new Uint8Array(data.length);
      h.mem.readBytes(vm.hpa(gpa) + 0x800, moved);
      ctx.expect(taken === 64 && decodeCompletion(rec).status === DsaStatus.SUCCESS, `the move completes (status 0x${decodeCompletion(rec).status.toString(16)})`);
      ctx.expect(moved.every((b, i) => b === data[i]), "the destination GPA holds the source bytes");
      ctx.require(guest.disableWq() === 0 && hw.pasid === null, "DISABLE_WQ clears the hardware WQ");
    });
    const hpasid = ctx.step(`VMM: PASID_REQUEST alloc; NESTING_OP bind of the guest's table with guest PASID ${gpasid} (refcount 3: VM, IOMMU, KVM)`, () => {
      const p = asIoasid(allocPasid(c, 1, PASID_MAX));
      pt.map(gva, gpa, 2 * PAGE, { write: true, user: true });
      c.ioctl(VfioIoctl.IOMMU_NESTING_OP, bindOp(p, pt.root, gpasid));
      ctx.bindSpace(p, (va) => {
        const m = pt.lookup(va);
        return m === null ? null : vm.ram.gpaToHpa(m.pa + (va - m.va));
      });
      ctx.expect(h.ioasid.refcount(p) === 3, `refcount 3 (got ${h.ioasid.refcount(p)})`);
      return p;
    });
    const refsAt = (kind: "vdcm.program" | "vdcm.clear", from: number): (number | undefined)[] =>
      rec.events.slice(from).filter((e) => e.kind === kind && e.ids.hpasid === hpasid).map((e) => e.refcount);

    ctx.step(`guest driver: PASID capability on, guest PASID ${gpasid} into WQCFG, ENABLE_DEVICE, ENABLE_WQ (all region accesses of the device file)`, () => {
      const from = rec.events.length;
      const err = guest.programWq(gpasid);
      ctx.expect(err === 0, `ENABLE_WQ succeeds (CMDSTS error 0x${err.toString(16)})`);
      ctx.expect(hw.pasid === (hpasid as number), `the hardware WQCFG holds host PASID ${hpasid} (got ${hw.pasid ?? "none"})`);
      ctx.expect(guest.readbackPasid() === gpasid && guest.wqEnabled(), `the guest reads back its own PASID ${gpasid}, WQ enabled (got ${guest.readbackPasid() ?? "none"})`);
      // Steps 9–11: hpasid = find_by_spid(gpasid), the VDCM's reference: 4.
      const refs = refsAt("vdcm.program", from);
      ctx.expect(refs.join(",") === "4", `the VDCM's find_by_spid leaves refcount 4 (got ${refs.join(",")})`);
    });
    guestMemmove(ctx, vm, guest, gva, gpa);
    ctx.step("guest driver: DISABLE_WQ; the VDCM drains and clears the hardware WQ, then drops its reference", () => {
      const from = rec.events.length;
      const err = guest.disableWq();
      ctx.expect(err === 0, `DISABLE_WQ succeeds (CMDSTS error 0x${err.toString(16)})`);
      ctx.require(hw.pasid === null, `the hardware WQ holds no PASID (got ${hw.pasid ?? "none"})`);
      // Steps 14–16: mdev_clear, dev_clear, ioasid_put: 3.
      const refs = refsAt("vdcm.clear", from);
      ctx.expect(refs.join(",") === "3", `the VDCM's put leaves refcount 3 (got ${refs.join(",")})`);
    });
    ctx.step(`guest driver: programs guest PASID ${stray}, which the VM never bound: ENABLE_WQ gets the device's PASID_EN error, the host is unchanged`, () => {
      const before = h.ioasid.refcount(hpasid);
      const err = guest.programWq(stray);
      ctx.require(err === DsaCmdErr.PASID_EN, `CMDSTS error 0x${DsaCmdErr.PASID_EN.toString(16)} (PASID_EN) to the guest (got 0x${err.toString(16)})`);
      ctx.require(hw.pasid === null && mdev.programmed === null, "the hardware WQ holds nothing; the VDCM holds nothing");
      ctx.require(h.ioasid.refcount(hpasid) === before, `the bound PASID's references are unchanged (${before})`);
    });
    ctx.step("guest driver: programs its PASID again, then the VMM frees the PASID while the WQ holds it: the VDCM's FREE handler queues the clear; the reference goes only once the WQ is clear", () => {
      const err = guest.programWq(gpasid);
      ctx.expect(err === 0 && hw.pasid === (hpasid as number), `programmed again (CMDSTS error 0x${err.toString(16)}, WQ ${hw.pasid ?? "none"})`);
      freePasids(c, hpasid, hpasid);
      ctx.require(h.ioasid.state(hpasid) !== "IDLE", "not reclaimed while the hardware WQ may still hold it");
      h.settle();
      ctx.require(hw.pasid === null, `the hardware WQ was cleared (holds ${hw.pasid ?? "none"})`);
      ctx.unbindSpace(hpasid);
      ctx.expect(h.ioasid.state(hpasid) === "IDLE", `reclaimed (state ${h.ioasid.state(hpasid)})`);
    });
    ctx.step("VMM: the late unbind is refused; nothing changes", () => {
      let failed = false;
      try {
        c.ioctl(VfioIoctl.IOMMU_NESTING_OP, unbindOp(hpasid));
      } catch {
        failed = true;
      }
      ctx.require(failed && hw.pasid === null, "refused, the WQ still clear");
    });
  },
});
