import type { PhysMem } from "@vsva/pgtable";
import type { CtxInfo } from "./caches.js";
import { FaultReason } from "./fault-reason.js";
import { CONTEXT_ENTRY_BYTES, ContextEntry, ROOT_ENTRY_BYTES, RootEntry } from "./structures.js";

/** What the context walk needs to know about the unit. */
export interface ContextWalkCaps {
  readonly hostAddrBits: number;
  readonly pasidBits: number;
  readonly deviceTlb: boolean;
  readonly pageRequests: boolean;
  /** ECAP.RPS: without it RID_PASID is reserved (VT-d spec §9.4). */
  readonly ridPasid: boolean;
}

const NO_CONTEXT = {
  fpd: false,
  dte: false,
  paside: false,
  pre: false,
  dirEntries: 0,
  dirPtr: 0,
  ridPasid: 0,
} as const;

export function contextFault(fault: number, fpd = false): CtxInfo {
  return { ...NO_CONTEXT, fault, fpd };
}

/**
 * Scratch for the root and context entries, owned by the caller so that a
 * fetch allocates nothing but its result.
 */
export class ContextScratch {
  readonly root = RootEntry.alloc();
  readonly ctx = ContextEntry.alloc();
}

/**
 * Root table -> scalable-mode context entry for `sid` (VT-d spec §9.2, §9.4), checked
 * the way the scalable-mode fault reasons of VT-d spec appendix A describe: fetch error, not present,
 * reserved bits (including pointer bits at or above the host address width),
 * invalid programming. FPD of the context entry is honoured even when P=0
 * (software tears entries down leaving FPD set to silence late DMA).
 */
export function fetchContext(mem: PhysMem, rootTable: number, sid: number, caps: ContextWalkCaps, s: ContextScratch): CtxInfo {
  const bus = (sid >>> 8) & 0xff;
  const devfn = sid & 0xff;
  if (!RootEntry.read(mem, rootTable + bus * ROOT_ENTRY_BYTES, s.root)) return contextFault(FaultReason.ROOT_ENTRY_FETCH);
  const upper = devfn >= 0x80;
  const present = RootEntry.get(s.root, upper ? "UP" : "LP") === 1;
  if (!present) return contextFault(FaultReason.ROOT_ENTRY_NOT_PRESENT);
  const ctp = RootEntry.getAddr(s.root, upper ? "UCTP" : "LCTP");
  if (RootEntry.hasReservedBits(s.root) || ctp >= 2 ** caps.hostAddrBits) return contextFault(FaultReason.ROOT_ENTRY_RSVD);

  if (!ContextEntry.read(mem, ctp + (devfn & 0x7f) * CONTEXT_ENTRY_BYTES, s.ctx)) return contextFault(FaultReason.CONTEXT_ENTRY_FETCH);
  const fpd = ContextEntry.get(s.ctx, "FPD") === 1;
  if (ContextEntry.get(s.ctx, "P") === 0) return contextFault(FaultReason.CONTEXT_ENTRY_NOT_PRESENT, fpd);
  const dirPtr = ContextEntry.getAddr(s.ctx, "PASIDDIRPTR");
  const dte = ContextEntry.get(s.ctx, "DTE") === 1;
  const pre = ContextEntry.get(s.ctx, "PRE") === 1;
  // DTE and PRE name features the unit may not have: then they are reserved.
  if (ContextEntry.hasReservedBits(s.ctx) || dirPtr >= 2 ** caps.hostAddrBits || (dte && !caps.deviceTlb) || (pre && !caps.pageRequests)) {
    return contextFault(FaultReason.CONTEXT_ENTRY_RSVD, fpd);
  }
  const ridPasid = ContextEntry.get(s.ctx, "RID_PASID");
  if (ridPasid !== 0 && !caps.ridPasid) return contextFault(FaultReason.CONTEXT_ENTRY_RSVD, fpd);
  if (ridPasid >= 2 ** caps.pasidBits) return contextFault(FaultReason.RID_PASID_ERROR, fpd);
  return {
    fault: 0,
    fpd,
    dte,
    paside: ContextEntry.get(s.ctx, "PASIDE") === 1,
    pre,
    dirEntries: 2 ** (ContextEntry.get(s.ctx, "PDTS") + 7),
    dirPtr,
    ridPasid,
  };
}
