import { defineLayout } from "../layout.js";
import type { U64 } from "../mem/phys-mem.js";
import { hawReservedHi, hawReservedLo } from "./geometry.js";

/**
 * The VT-d second-level paging entry (VT-d spec §9.8), for PGTT=2, the
 * lower stage of PGTT=3 and legacy mode. Three views, as for x86:
 * - {@link SL_PTE}: a non-leaf entry and a 4 KiB leaf (level 1);
 * - {@link SL_PDE_2M}: a level-2 leaf with PS=1 (bits 20:12 reserved);
 * - {@link SL_PDPTE_1G}: a level-3 leaf with PS=1 (bits 29:12 reserved).
 *
 * An entry is present when R or W is set (QEMU and Linux agree). EMT and IPAT
 * have no public model to check against (neither Linux nor QEMU reads them); they are carried and never interpreted here.
 */
export const SL_PTE = defineLayout("vtd.sl-pte", 64, {
  R: [0, 0],
  W: [1, 1],
  /** Execute, honoured only when the PASID entry's SLEE is set. */
  X: [2, 2],
  EMT: [5, 3],
  IPAT: [6, 6],
  /** Page size: a leaf in a level-2 or level-3 entry; reserved at levels 4 and 5. Ignored at level 1. */
  PS: [7, 7],
  A: [8, 8],
  D: [9, 9],
  AVL10: [10, 10],
  /** Snoop (leaf, ECAP.SC); reserved without snoop control. */
  SNP: [11, 11],
  ADDR: [51, 12],
  AVL_HI: [61, 52],
  /** Transient mapping (leaf, ECAP.DT); reserved without device-TLB support. */
  TM: [62, 62],
  AVL63: [63, 63],
});

const leafLargeFields = {
  R: [0, 0],
  W: [1, 1],
  X: [2, 2],
  EMT: [5, 3],
  IPAT: [6, 6],
  PS: [7, 7],
  A: [8, 8],
  D: [9, 9],
  AVL10: [10, 10],
  SNP: [11, 11],
  AVL_HI: [61, 52],
  TM: [62, 62],
  AVL63: [63, 63],
} as const;

export const SL_PDE_2M = defineLayout("vtd.sl-pde-2m", 64, {
  ...leafLargeFields,
  RSVD: { msb: 20, lsb: 12, access: "RsvdZ" },
  ADDR: [51, 21],
});

export const SL_PDPTE_1G = defineLayout("vtd.sl-pdpte-1g", 64, {
  ...leafLargeFields,
  RSVD: { msb: 29, lsb: 12, access: "RsvdZ" },
  ADDR: [51, 30],
});

function lowBit(f: "R" | "W" | "X" | "PS" | "A" | "D" | "SNP"): number {
  const b = SL_PTE.bit(f);
  if (b.word !== 0) throw new Error(`vtd.sl-pte.${f} is expected in the low dword`);
  return b.mask;
}

/** Constant single-bit masks derived from the layout, for hot paths. `TM_HI` is in the high dword. */
export const SL = {
  R: lowBit("R"),
  W: lowBit("W"),
  X: lowBit("X"),
  PS: lowBit("PS"),
  A: lowBit("A"),
  D: lowBit("D"),
  SNP: lowBit("SNP"),
  TM_HI: SL_PTE.bit("TM").mask,
} as const;

export interface SlReservedOptions {
  readonly addrBits: number;
  /** SLLPS 2 MiB: without it PS=1 in a level-2 entry is reserved. */
  readonly pages2m: boolean;
  /** SLLPS 1 GiB: without it PS=1 in a level-3 entry is reserved. */
  readonly pages1g: boolean;
  /** ECAP.SC. */
  readonly snoopControl: boolean;
  /** ECAP.DT. */
  readonly deviceTlb: boolean;
}

/**
 * Reserved-bit mask of a second-level entry at `level` (`large`: PS=1 at
 * level 2 or 3), written into `out`.
 *
 * Decisions: PS is reserved at levels 4 and 5 and where SLLPS lacks the size
 * (QEMU adds 0x80 to its PML4E mask; a level-1 bit 7 is ignored, as in QEMU's
 * level-1 mask). SNP (bit 11) and TM (bit 62) are reserved at every level
 * when their capability is absent, following QEMU's masks
 * (hw/i386/intel_iommu_internal.h; they follow ECAP.SC); with the capability they are leaf attributes and ignored
 * in non-leaf entries.
 */
export function slReservedMask(level: number, large: boolean, opts: SlReservedOptions, out: U64): U64 {
  out.lo = slReservedLo(level, large, opts);
  out.hi = slReservedHi(level, large, opts);
  return out;
}

/** Low dword of {@link slReservedMask}, for walkers that keep the halves in locals. */
export function slReservedLo(level: number, large: boolean, opts: SlReservedOptions): number {
  let lo = hawReservedLo(opts.addrBits);
  if (large) lo |= (level === 3 ? SL_PDPTE_1G : SL_PDE_2M).reservedMask[0] ?? 0;
  if (level >= 4 || (level === 3 && !opts.pages1g) || (level === 2 && !opts.pages2m)) lo |= SL.PS;
  if (!opts.snoopControl) lo |= SL.SNP;
  return lo >>> 0;
}

/** High dword of {@link slReservedMask}. */
export function slReservedHi(level: number, large: boolean, opts: SlReservedOptions): number {
  let hi = hawReservedHi(opts.addrBits);
  if (large) hi |= (level === 3 ? SL_PDPTE_1G : SL_PDE_2M).reservedMask[1] ?? 0;
  if (!opts.deviceTlb) hi |= SL.TM_HI;
  return hi >>> 0;
}
