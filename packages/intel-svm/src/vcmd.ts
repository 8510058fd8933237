import { Errno, KernelError } from "@vsva/kernel";
import { RegOffset, VcmdCommand, VcmdReg, VcmdStatus, VcrspReg } from "@vsva/iommu-hw";
import type { IoasidAllocatorOps } from "@vsva/ioasid";
import { readReg, writeReg } from "./mmio.js";
import type { VtdHardware } from "./unit.js";

/** VCRSP reads before a virtual command is declared lost (Linux's IOMMU_WAIT_OP gives up after a while too). */
export const VCMD_POLLS = 1000;

/**
 * A guest's PASID allocator behind the virtual command interface
 * (`drivers/iommu/intel/iommu.c: intel_vcmd_ioasid_alloc()` /
 * `intel_vcmd_ioasid_free()`, `pasid.c: vcmd_alloc_pasid()` /
 * `vcmd_free_pasid()`, Linux v5.10): in a guest, PASIDs are system-wide on
 * the host, so the guest's IOASID layer asks the host for each one through
 * VCMD (VT-d §10.4.43) and reads the answer from VCRSP (§10.4.44). The
 * driver registers it with `ioasid` as a custom allocator when the unit is a
 * vIOMMU that offers it (CAP.CM, scalable mode, ECAP.VCS and VCCAP.PAS;
 * `register_pasid_allocator()`).
 */
export class VcmdPasidAllocator implements IoasidAllocatorOps {
  readonly #hw: VtdHardware;

  constructor(hw: VtdHardware) {
    this.#hw = hw;
  }

  /**
   * A PASID from the host. The interface always hands out from the full
   * PASID range (the host partitions it, not the guest), so a range
   * reaching below 1 or beyond the unit's PASID width is refused (EINVAL);
   * one inside it is left to the IOASID core to check the answer against.
   * ENOSPC: the host has no PASID left (VCRSP.SC = 2); ENODEV: any other
   * status; ETIMEDOUT: VCRSP.IP never cleared.
   */
  alloc(min: number, max: number): number {
    const hw = this.#hw;
    const limit = 2 ** hw.caps.pasidBits - 1;
    if (!Number.isInteger(min) || !Number.isInteger(max) || min < 1 || max > limit) {
      throw new KernelError(Errno.EINVAL, `${hw.name}: virtual command PASIDs are 1..${limit}, not ${min}..${max}`);
    }
    const rsp = this.#run(VcmdCommand.ALLOC_PASID, 0);
    const sc = VcrspReg.get(rsp, "SC");
    if (sc === VcmdStatus.SUCCESS) return VcrspReg.get(rsp, "RSLT");
    if (sc === VcmdStatus.NO_PASID_OR_INVALID) throw new KernelError(Errno.ENOSPC, `${hw.name}: no PASID available from the host (VCRSP.SC ${sc})`);
    throw new KernelError(Errno.ENODEV, `${hw.name}: unexpected virtual command status ${sc}`);
  }

  /** Gives `id` back to the host. Cannot fail: a status other than success is logged, as Linux does. */
  free(id: number): void {
    const hw = this.#hw;
    try {
      const sc = VcrspReg.get(this.#run(VcmdCommand.FREE_PASID, id), "SC");
      if (sc === VcmdStatus.NO_PASID_OR_INVALID) hw.warn("vcmd-free", `the host does not know PASID ${id}`);
      else if (sc !== VcmdStatus.SUCCESS) hw.warn("vcmd-free", `freeing PASID ${id} failed with status ${sc}`);
    } catch (e) {
      hw.warn("vcmd-free", `freeing PASID ${id}: ${String(e)}`);
    }
  }

  /** Writes VCMD and polls VCRSP until IP clears; returns VCRSP. */
  #run(cmd: number, operand: number): Uint32Array {
    const mmio = this.#hw.mmio;
    writeReg(mmio, RegOffset.VCMD, VcmdReg.encode({ CMD: cmd, OPERAND: operand }));
    for (let i = 0; i < VCMD_POLLS; i++) {
      const rsp = readReg(mmio, RegOffset.VCRSP, VcrspReg);
      if (VcrspReg.get(rsp, "IP") === 0) return rsp;
    }
    throw new KernelError(Errno.ETIMEDOUT, `${this.#hw.name}: virtual command ${cmd} still in progress after ${VCMD_POLLS} reads`);
  }
}
