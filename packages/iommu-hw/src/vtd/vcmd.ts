import type { RegisterFile } from "../mmio/register-file.js";
import { RegOffset, VccapReg, VcmdReg, VcrspReg } from "./regs.js";

/**
 * What a vIOMMU's virtual command interface asks of the VMM behind it (the
 * 2020 vSVA PASID allocation). Both calls complete synchronously.
 */
export interface VcmdBackend {
  /** A newly allocated PASID, or a negative errno (e.g. -ENOSPC) when none is available. */
  allocPasid(): number;
  /** 0, or a negative errno when the PASID cannot be freed (not allocated, not the caller's). */
  freePasid(pasid: number): number;
}

export const VcmdCommand = { ALLOC_PASID: 1, FREE_PASID: 2 } as const;

/**
 * VCRSP status codes, VT-d 3.0–3.2 layout (VT-d §10.4 VCMD/VCRSP). D1 #3: "no PASID
 * available" / "invalid PASID" is 2, as in fixed Linux and the QEMU RFC.
 */
export const VcmdStatus = { SUCCESS: 0, UNDEFINED_COMMAND: 1, NO_PASID_OR_INVALID: 2 } as const;

export interface VcmdOutcome {
  readonly cmd: number;
  readonly operand: number;
  readonly status: number;
  readonly result: number;
}

/**
 * The virtual command registers. Only defined when the unit has a backend
 * (ECAP.VCS=1); on a host unit they are holes that read 0 and ignore writes.
 * Commands complete inside the VCMD write, so VCRSP.IP never reads 1.
 */
export class VirtualCommand {
  readonly #cmd: Uint32Array;
  readonly #rsp: Uint32Array;

  constructor(
    regs: RegisterFile,
    private readonly backend: VcmdBackend,
    private readonly pasidBits: number,
  ) {
    const cap = regs.define(RegOffset.VCCAP, VccapReg);
    VccapReg.set(cap, "PAS", 1);
    this.#cmd = regs.define(RegOffset.VCMD, VcmdReg);
    this.#rsp = regs.define(RegOffset.VCRSP, VcrspReg);
  }

  /** Runs the command just written to VCMD. */
  onVcmdWrite(): VcmdOutcome {
    const cmd = VcmdReg.get(this.#cmd, "CMD");
    const operand = VcmdReg.get(this.#cmd, "OPERAND");
    let status: number = VcmdStatus.SUCCESS;
    let result = 0;
    if (cmd === VcmdCommand.ALLOC_PASID) {
      const pasid = this.backend.allocPasid();
      // A backend answer that does not fit the unit's PASID width is no PASID at all.
      if (Number.isInteger(pasid) && pasid >= 0 && pasid < 2 ** this.pasidBits) result = pasid;
      else status = VcmdStatus.NO_PASID_OR_INVALID;
    } else if (cmd === VcmdCommand.FREE_PASID) {
      if (this.backend.freePasid(operand) !== 0) status = VcmdStatus.NO_PASID_OR_INVALID;
    } else {
      status = VcmdStatus.UNDEFINED_COMMAND;
    }
    VcrspReg.set(this.#rsp, "IP", 0);
    VcrspReg.set(this.#rsp, "SC", status);
    VcrspReg.set(this.#rsp, "RSLT", result);
    return { cmd, operand, status, result };
  }
}
