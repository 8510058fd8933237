import { defineLayout } from "@vsva/pgtable";

/**
 * Scalable-mode translation structures in memory (VT-d spec chapter 9). Bits not
 * named here are reserved (RsvdZ): a set bit is the matching "reserved field"
 * fault. Address bits above the host address width are checked separately,
 * since the width is a property of the unit, not of the format.
 */

/** VT-d spec §9.2: 128-bit root entry, indexed by bus. */
export const RootEntry = defineLayout("SM root entry", 128, {
  LP: [0, 0],
  LCTP: [63, 12],
  UP: [64, 64],
  UCTP: [127, 76],
});
export const ROOT_ENTRY_BYTES = 16;

/** VT-d spec §9.4: 256-bit scalable-mode context entry, indexed by devfn & 0x7F in the lower or upper table. */
export const ContextEntry = defineLayout("SM context entry", 256, {
  P: [0, 0],
  FPD: [1, 1],
  DTE: [2, 2],
  PASIDE: [3, 3],
  PRE: [4, 4],
  PDTS: [11, 9],
  PASIDDIRPTR: [63, 12],
  RID_PASID: [83, 64],
});
export const CONTEXT_ENTRY_BYTES = 32;

/** VT-d spec §9.5: 64-bit PASID-directory entry, indexed by PASID[19:6]. */
export const PasidDirEntry = defineLayout("PASID directory entry", 64, {
  P: [0, 0],
  FPD: [1, 1],
  SMPTBLPTR: [63, 12],
});
export const PASID_DIR_ENTRY_BYTES = 8;

/** VT-d spec §9.6: 512-bit PASID-table entry, indexed by PASID[5:0]. */
export const PasidEntry = defineLayout("PASID table entry", 512, {
  P: [0, 0],
  FPD: [1, 1],
  AW: [4, 2],
  SLEE: [5, 5],
  PGTT: [8, 6],
  SLADE: [9, 9],
  SLPTPTR: [63, 12],
  DID: [79, 64],
  PWSNP: [87, 87],
  PGSNP: [88, 88],
  CD: [89, 89],
  EMTE: [90, 90],
  EMT: [93, 91],
  PWT: [94, 94],
  PCD: [95, 95],
  PAT: [127, 96],
  SRE: [128, 128],
  ERE: [129, 129],
  FLPM: [131, 130],
  WPE: [132, 132],
  NXE: [133, 133],
  // Only VirtualBox's spec-derived header names bit 134 (D2); accepted and ignored.
  SMEP: [134, 134],
  EAFE: [135, 135],
  FLPTPTR: [191, 140],
});
export const PASID_ENTRY_BYTES = 64;

/** PASID-granular translation types (VT-d spec §9.6). */
export const Pgtt = {
  FIRST_LEVEL: 1,
  SECOND_LEVEL: 2,
  NESTED: 3,
  PASS_THROUGH: 4,
} as const;
export type PgttValue = (typeof Pgtt)[keyof typeof Pgtt];

/** PASID arithmetic (VT-d §9.5–9.6: directory index PASID[19:6], table index PASID[5:0]). */
export const pasidDirIndex = (pasid: number): number => (pasid >>> 6) & 0x3fff;
export const pasidTableIndex = (pasid: number): number => pasid & 0x3f;

