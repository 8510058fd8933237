import { Errno, KernelError } from "@vsva/kernel";
import { GcmdReg, GstsReg, RegOffset } from "@vsva/iommu-hw";
import type { Mmio } from "./mmio.js";

/** How many times a status register is read before a command is declared timed out. */
export const STATUS_POLLS = 1000;

/** Latched command bits (VT-d §10.4 GCMD/GSTS): they stay as GSTS reports them when another command is written. */
const LATCHED = ["TE", "QIE", "IRE", "CFI", "EAFL"] as const;
const STATUS_OF = { TE: "TES", QIE: "QIES", IRE: "IRES", CFI: "CFIS", EAFL: "AFLS", SRTP: "RTPS", WBF: "WBFS" } as const;

type Command = keyof typeof STATUS_OF;

/**
 * Issues one global command (VT-d §10.4 GCMD/GSTS): GCMD is written as the currently latched
 * status bits with exactly one bit changed, then GSTS is polled until the
 * matching status bit reports it (one-shot SRTP: RTPS set; WBF: WBFS clear).
 * One command at a time, as the specification requires and as Linux's
 * `iommu_set_root_entry`/`iommu_enable_translation` do. EIO when the unit
 * never reports completion.
 */
export function globalCommand(mmio: Mmio, cmd: Command, on = true): void {
  const gsts = new Uint32Array(1);
  gsts[0] = mmio.mmioRead32(RegOffset.GSTS);
  const gcmd = GcmdReg.alloc();
  for (const f of LATCHED) GcmdReg.set(gcmd, f, GstsReg.get(gsts, STATUS_OF[f]));
  GcmdReg.set(gcmd, cmd, on ? 1 : 0);
  mmio.mmioWrite32(RegOffset.GCMD, gcmd[0] ?? 0);
  const status = STATUS_OF[cmd];
  const want = cmd === "WBF" ? 0 : on ? 1 : 0;
  for (let i = 0; i < STATUS_POLLS; i++) {
    gsts[0] = mmio.mmioRead32(RegOffset.GSTS);
    if (GstsReg.get(gsts, status) === want) return;
  }
  throw new KernelError(Errno.EIO, `GCMD.${cmd}=${on ? 1 : 0} not acknowledged in GSTS.${status}`);
}
