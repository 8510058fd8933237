import type { VmId } from "@vsva/kernel";
import { type Idxd, plugIdxd } from "@vsva/idxd";
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
  const idxd = ctx.step("plug in dsa0; idxd probes it: a dedicated and a shared WQ for mdevs, device and WQs enabled", () => {
    const d = plugIdxd(h.board, { dev: devNo, name: "dsa0", config: { wqs: [{ mode: "dedicated", size, type: "mdev" }, { mode: "shared", size, type: "mdev" }] } });
    h.devices.push({ ep: d.hw.ep, dev: d.iommuDev });
    return d;
  });
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
