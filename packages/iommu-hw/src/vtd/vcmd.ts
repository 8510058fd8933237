import type { RegisterFile } from "../mmio/register-file.js";
import type { VcmdReply } from "../trap.js";
import { RegOffset, VccapReg, VcmdReg, VcrspReg } from "./regs.js";

export const VcmdCommand = { ALLOC_PASID: 1, FREE_PASID: 2 } as const;

/**
 * VCRSP status codes, VT-d 3.0–3.2 layout (§10.4.44). "No PASID available"
 * (allocate) and "invalid PASID" (free) are 2, as Linux's
 * `intel_vcmd_ioasid_alloc()` reads them after Zenghui Yu's status-code fix
 * and as the 2020 QEMU vSVA series reports them.
 */
export const VcmdStatus = { SUCCESS: 0, UNDEFINED_COMMAND: 1, NO_PASID_OR_INVALID: 2 } as const;

export interface VcmdOutcome {
  readonly cmd: number;
  readonly operand: number;
  readonly status: number;
  readonly result: number;
}

/**
 * The virtual command registers (VT-d §10.4.42–44: VCCAP, VCMD, VCRSP).
 * Only defined when the unit reports ECAP.VCS; on a unit without it they
 * are holes that read 0 and ignore writes. A command is answered inside the
 * VCMD write, so VCRSP.IP never reads 1: by the unit's trap (a VMM that
 * allocates PASIDs from the host) or, without one, by the model, which has
 * no PASIDs to give (allocate and free both report status 2; any other
 * command is undefined).
 */
export class VirtualCommand {
  readonly #cmd: Uint32Array;
  readonly #rsp: Uint32Array;

  constructor(
    regs: RegisterFile,
    private readonly pasidBits: number,
  ) {
    const cap = regs.define(RegOffset.VCCAP, VccapReg);
    VccapReg.set(cap, "PAS", 1);
    this.#cmd = regs.define(RegOffset.VCMD, VcmdReg);
    this.#rsp = regs.define(RegOffset.VCRSP, VcrspReg);
  }

  /** The command just written to VCMD. */
  get written(): { readonly cmd: number; readonly operand: number } {
    return { cmd: VcmdReg.get(this.#cmd, "CMD"), operand: VcmdReg.get(this.#cmd, "OPERAND") };
  }

  /** Completes the command just written with `reply` (the trap's answer), or the model's own when null. */
  respond(reply: VcmdReply | null): VcmdOutcome {
    const { cmd, operand } = this.written;
    let status: number;
    let result = 0;
    if (reply === null) {
      status = cmd === VcmdCommand.ALLOC_PASID || cmd === VcmdCommand.FREE_PASID ? VcmdStatus.NO_PASID_OR_INVALID : VcmdStatus.UNDEFINED_COMMAND;
    } else {
      status = reply.status;
      const r = reply.result ?? 0;
      if (status === VcmdStatus.SUCCESS && cmd === VcmdCommand.ALLOC_PASID) {
        // A PASID that does not fit the unit's PASID width is no PASID at all.
        if (r >= 0 && r < 2 ** this.pasidBits) result = r;
        else status = VcmdStatus.NO_PASID_OR_INVALID;
      }
    }
    VcrspReg.set(this.#rsp, "IP", 0);
    VcrspReg.set(this.#rsp, "SC", status);
    VcrspReg.set(this.#rsp, "RSLT", result);
    return { cmd, operand, status, result };
  }
}
