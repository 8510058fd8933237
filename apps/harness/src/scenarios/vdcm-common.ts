import type { VmId } from "@vsva/kernel";
import { DSA_COMPLETION_SIZE, DescFlag, DsaOpcode, DsaStatus, decodeCompletion, encodeDescriptor } from "@vsva/dsa";
import type { MdevGuest } from "@vsva/vdcm/testing";
import type { Vm } from "./vfio-common.js";
import type { Idxd } from "@vsva/idxd";
import { Vdcm, type VdcmMdev } from "@vsva/vdcm";
import type { Vfio } from "@vsva/vfio-type1";
import type { StepContext } from "../world/host-scenario.js";

export interface Accelerator {
  readonly idxd: Idxd;
  readonly vdcm: Vdcm;
}

/**
 * The DSA-like accelerator at a seeded 00:dd.0 below the host's IOMMU, probed
 * by its host driver (idxd) with one dedicated and one shared WQ of type
 * "mdev" (lent to the VDCM, as accel-config's mdev WQ type does), and the
 * VDCM on it (aux domains on). The function joins the host's devices, so the
 * invariants watch its device TLB and the host's teardown releases it; idxd
 * is removed at teardown, after every mdev.
 */
export function plugAccelerator(ctx: StepContext, vfio: Vfio): Accelerator {
  const h = ctx.host;
  const devNo = ctx.choose.int("dsa0's slot", 1, 31, { show: (d) => `00:${d.toString(16).padStart(2, "0")}.0` });
  const size = ctx.choose.int("each WQ's size", 4, 16);
  const idxd = ctx.step("plug in dsa0; idxd probes it: a dedicated and a shared WQ for mdevs, device and WQs enabled", () =>
    h.addAccelerator("dsa0", devNo, { wqs: [{ mode: "dedicated", size, type: "mdev" }, { mode: "shared", size, type: "mdev" }] }));
  ctx.defer("idxd is removed: WQs and device disabled, device reset", () => idxd.remove());
  const vdcm = ctx.step("the VDCM takes dsa0 (aux domains enabled on it)", () => new Vdcm({ kernel: h.kernel, ioasid: h.ioasid, core: h.core, vfio, parent: idxd.iommuDev }));
  return { idxd, vdcm };
}

/**
 * An mdev on the accelerator's WQ `wq` for VM `vm` (whose VMM's mm is `mm`):
 * the VDCM's notifier registers by that token (before VFIO has the VM's set).
 * Removed at teardown; register it before the VM starts, so the VMM has
 * closed the mdev's files by then.
 */
export function createMdev(ctx: StepContext, a: Accelerator, name: string, wq: number, vm: VmId, mm: object): VdcmMdev {
  const m = ctx.step(`the VDCM creates ${name} on WQ ${wq} for VM ${vm} (its notifier registers by the VM's mm token, DEVICE priority)`, () =>
    a.vdcm.createMdev(name, a.idxd.wq(wq), { vm, mm }));
  ctx.watchVdcm(a.vdcm);
  ctx.defer(`the VDCM removes ${name}`, () => a.vdcm.removeMdev(m));
  return m;
}

const PAGE = 0x1000;

/**
 * The guest's DMA: its driver submits a MEMMOVE (source, destination and
 * completion record are GVAs in its buffer: two pages at `gva`, mapped by
 * its table to one 64 KiB chunk of guest RAM at `gpa`) through mdev0's portal; the
 * hardware WQ tags it with the host PASID, so the accelerator's DMA goes
 * through the nested PASID entry: the guest's table, then VFIO's second level.
 * The guest polls the completion record.
 */
export function guestMemmove(ctx: StepContext, vm: Vm, guest: MdevGuest, gva: number, gpa: number): void {
  const h = ctx.host;
  const len = ctx.choose.int("MEMMOVE length", 1, 0x800);
  const data = Uint8Array.from({ length: len }, (_, i) => (i * 7 + len) & 0xff);
  ctx.step(`guest: MEMMOVE of ${len} bytes through mdev0's portal, tagged by the hardware WQ with the host PASID; the guest polls its completion record`, () => {
    // The guest's buffer is one 64 KiB chunk of guest RAM: contiguous in host memory.
    h.mem.writeBytes(vm.hpa(gpa), data);
    const taken = guest.submit(encodeDescriptor({ opcode: DsaOpcode.MEMMOVE, flags: DescFlag.CRAV | DescFlag.RCR, completionAddr: gva + PAGE, src: gva, dst: gva + 0x800, size: len }));
    h.settle();
    const rec = new Uint8Array(DSA_COMPLETION_SIZE);
    h.mem.readBytes(vm.hpa(gpa) + PAGE, rec);
    const cr = decodeCompletion(rec);
    const moved = new Uint8Array(len);
    h.mem.readBytes(vm.hpa(gpa) + 0x800, moved);
    ctx.expect(taken === 64 && cr.status === DsaStatus.SUCCESS, `the move completes (portal took ${taken} bytes, status 0x${cr.status.toString(16)})`);
    ctx.expect(moved.every((b, i) => b === data[i]), "the guest's destination holds its source bytes");
  });
}
