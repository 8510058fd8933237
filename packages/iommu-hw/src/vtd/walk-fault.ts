import type { Denied, WalkResult } from "@vsva/pgtable";
import { FaultReason } from "./fault-reason.js";

const DENIED_REASON: Readonly<Record<Denied, number>> = {
  read: FaultReason.READ_DENIED,
  write: FaultReason.WRITE_DENIED,
  execute: FaultReason.NO_EXECUTE,
  user: FaultReason.FL_USER_SUPERVISOR,
  "supervisor-request": FaultReason.SRE_CLEAR,
  "execute-request": FaultReason.ERE_CLEAR,
};

/**
 * Scalable-mode fault reason (VT-d spec appendix A) of a failed walk.
 *
 * `flLevels`/`slLevels` say which level is the top one, whose table is the
 * PASID entry's pointer: an abort fetching from it is "invalid pointer"
 * (0x73 / 0x7B) rather than "error fetching an entry" (0x70 / 0x78).
 * A second-level entry with R=W=0 is "not present" to the walker; in scalable
 * mode that is the second-level read/write permission error, 0x79 (dmar.c's
 * table has no separate not-present code for the second level).
 * In a nested walk, a second-stage failure while reaching a first-level
 * table is reported in the nested group: 0x74 (GPA beyond the second level),
 * 0x75 (FL root table), 0x76 (lower FL table), 0x77 (A/D write denied).
 */
export function walkFaultReason(r: WalkResult, flLevels: number, slLevels: number): number {
  const kind = r.kind ?? "not-present";
  if (r.stage === "first") {
    switch (kind) {
      case "table-abort":
        return r.level === flLevels ? FaultReason.FL_ROOT_FETCH : FaultReason.FL_ENTRY_FETCH;
      case "not-present":
        return FaultReason.FL_NOT_PRESENT;
      case "reserved":
        return FaultReason.FL_RSVD;
      case "non-canonical":
        return FaultReason.NON_CANONICAL;
      case "address-width":
        return FaultReason.ADDR_BEYOND_HAW;
      case "permission":
        return DENIED_REASON[r.denied ?? "read"];
    }
  }
  const phase = r.nested;
  if (phase === "root" || phase === "table") {
    if (kind === "address-width") return FaultReason.NESTED_FL_ADDR_BEYOND_SL;
    if (kind === "not-present" || kind === "permission") {
      return phase === "root" ? FaultReason.NESTED_FL_ROOT_SL_READ : FaultReason.NESTED_FL_ENTRY_SL_READ;
    }
  }
  if (phase === "ad-update" && (kind === "not-present" || kind === "permission")) return FaultReason.NESTED_FL_ENTRY_SL_WRITE;
  switch (kind) {
    case "table-abort":
      return r.level === slLevels ? FaultReason.SL_ROOT_INVALID : FaultReason.SL_ENTRY_FETCH;
    case "not-present":
      return FaultReason.SL_PERMISSION;
    case "reserved":
      return FaultReason.SL_RSVD;
    case "address-width":
    case "non-canonical":
      return FaultReason.ADDR_BEYOND_HAW;
    case "permission":
      return DENIED_REASON[r.denied ?? "read"];
  }
}

/** Faults a page request could resolve: first-level not-present or access-right faults (not PASID-entry refusals). */
export function isPageLevelFault(r: WalkResult): boolean {
  if (r.kind === "not-present") return true;
  return r.kind === "permission" && r.denied !== "supervisor-request" && r.denied !== "execute-request";
}
