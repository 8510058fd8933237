import { defineLayout } from "../layout.js";
import type { U64 } from "../mem/phys-mem.js";
import { hawReservedHi, hawReservedLo } from "./geometry.js";

/**
 * The x86-64 paging entry (VT-d spec §9.7; Intel SDM vol. 3 §4.5), used by
 * VT-d first-level translation and by the simulated CPU MMU of a process.
 *
 * Three views of the same 64 bits, one per role:
 * - {@link X86_PTE}: a non-leaf entry at any level (PML5E, PML4E, PDPTE, PDE
 *   pointing at a table) and a 4 KiB PTE. In a PTE bit 7 is the PAT bit; in a
 *   non-leaf PDPTE/PDE it is PS=0; in a PML5E/PML4E it must be 0.
 * - {@link X86_PDE_2M}: a PDE with PS=1 mapping 2 MiB (bits 20:13 reserved).
 * - {@link X86_PDPTE_1G}: a PDPTE with PS=1 mapping 1 GiB (bits 29:13 reserved).
 *
 * Decision: XD is modelled. When the PASID entry's NXE is
 * clear, XD is ignored rather than reserved: Linux never sets NXE in a
 * first-level PASID entry yet binds CPU page tables whose data pages carry XD,
 * so treating it as reserved would fault every native SVA access. A CPU model
 * that wants EFER.NXE=0 semantics can check XD itself.
 */
export const X86_PTE = defineLayout("x86.pte", 64, {
  P: [0, 0],
  RW: [1, 1],
  US: [2, 2],
  PWT: [3, 3],
  PCD: [4, 4],
  A: [5, 5],
  D: [6, 6],
  /** PS in a PDPTE/PDE, PAT in a 4 KiB PTE, reserved in PML5E/PML4E. */
  PS: [7, 7],
  G: [8, 8],
  AVL9: [9, 9],
  /** Extended accessed: set by VT-d with A when EAFE=1; ignored otherwise. */
  EA: [10, 10],
  AVL11: [11, 11],
  ADDR: [51, 12],
  AVL_HI: [62, 52],
  XD: [63, 63],
});

const leafLargeFields = {
  P: [0, 0],
  RW: [1, 1],
  US: [2, 2],
  PWT: [3, 3],
  PCD: [4, 4],
  A: [5, 5],
  D: [6, 6],
  PS: [7, 7],
  G: [8, 8],
  AVL9: [9, 9],
  EA: [10, 10],
  AVL11: [11, 11],
  PAT: [12, 12],
  AVL_HI: [62, 52],
  XD: [63, 63],
} as const;

export const X86_PDE_2M = defineLayout("x86.pde-2m", 64, {
  ...leafLargeFields,
  RSVD: { msb: 20, lsb: 13, access: "RsvdZ" },
  ADDR: [51, 21],
});

export const X86_PDPTE_1G = defineLayout("x86.pdpte-1g", 64, {
  ...leafLargeFields,
  RSVD: { msb: 29, lsb: 13, access: "RsvdZ" },
  ADDR: [51, 30],
});

export type X86Level = 1 | 2 | 3 | 4 | 5;

/** The SDM name of the entry at each level. */
export function x86EntryName(level: number): string {
  return ["?", "PTE", "PDE", "PDPTE", "PML4E", "PML5E"][level] ?? "?";
}

function lowBit(f: "P" | "RW" | "US" | "PWT" | "PCD" | "A" | "D" | "PS" | "G" | "EA"): number {
  const b = X86_PTE.bit(f);
  if (b.word !== 0) throw new Error(`x86.pte.${f} is expected in the low dword`);
  return b.mask;
}

/** Constant single-bit masks derived from the layout, for hot paths. `XD_HI` is in the high dword. */
export const X86 = {
  P: lowBit("P"),
  RW: lowBit("RW"),
  US: lowBit("US"),
  PWT: lowBit("PWT"),
  PCD: lowBit("PCD"),
  A: lowBit("A"),
  D: lowBit("D"),
  PS: lowBit("PS"),
  G: lowBit("G"),
  EA: lowBit("EA"),
  XD_HI: X86_PTE.bit("XD").mask,
} as const;

export interface X86ReservedOptions {
  /** Host address width: entry address bits at or above it are reserved. */
  readonly addrBits: number;
  /** 1 GiB pages supported (CAP.FL1GP); without it PS=1 in a PDPTE is reserved. */
  readonly pages1g: boolean;
}

/**
 * Reserved-bit mask of an entry at `level` (`large`: a PDE/PDPTE with PS=1),
 * written into `out`. Depends on the level (PS must be 0 in PML5E/PML4E, and
 * in a PDPTE without 1 GiB support), on the page size (the address bits below
 * a large page's frame) and on the host address width.
 */
export function x86ReservedMask(level: number, large: boolean, opts: X86ReservedOptions, out: U64): U64 {
  out.lo = x86ReservedLo(level, large, opts);
  out.hi = x86ReservedHi(level, large, opts);
  return out;
}

/** Low dword of {@link x86ReservedMask}, for walkers that keep the halves in locals. */
export function x86ReservedLo(level: number, large: boolean, opts: X86ReservedOptions): number {
  let lo = hawReservedLo(opts.addrBits);
  if (large) lo |= (level === 3 ? X86_PDPTE_1G : X86_PDE_2M).reservedMask[0] ?? 0;
  if (level >= 4 || (level === 3 && !opts.pages1g)) lo |= X86.PS;
  return lo >>> 0;
}

/** High dword of {@link x86ReservedMask}. */
export function x86ReservedHi(level: number, large: boolean, opts: X86ReservedOptions): number {
  let hi = hawReservedHi(opts.addrBits);
  if (large) hi |= (level === 3 ? X86_PDPTE_1G : X86_PDE_2M).reservedMask[1] ?? 0;
  return hi >>> 0;
}
