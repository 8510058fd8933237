import { type Layout, defineLayout } from "../layout.js";

/**
 * AArch64 VMSAv8-64 translation-table descriptors, 4 KiB granule
 * (Arm ARM DDI 0487 VMSAv8-64 descriptor formats; Linux arch/arm64/include/asm/pgtable-hwdef.h), declared once as data. The walkers derive their
 * constant masks from these layouts; nothing else shifts bits by hand.
 *
 * Bits 49:48 are OA[49:48] only with LPA2, which neither Linux io-pgtable
 * nor QEMU supports with a 4 KiB granule (the Arm ARM's VMSAv8-64 descriptors): we declare them as
 * `OA_HI` and the walkers treat a non-zero value as an output address
 * beyond any supported size (F_ADDR_SIZE), which is what a 48-bit
 * implementation reports for it.
 */

/** Table descriptor, L0–L2, bits 1:0 = 0b11 (the Arm ARM's VMSAv8-64 descriptors). */
export const ArmTableDesc = defineLayout("arm.table", 64, {
  VALID: [0, 0],
  TYPE: [1, 1],
  IGN_LO: [11, 2],
  ADDR: [47, 12],
  OA_HI: [49, 48],
  RES0: { msb: 51, lsb: 50, access: "RsvdZ" },
  IGN_HI: [58, 52],
  PXNTABLE: [59, 59],
  /** UXNTable (XNTable in a single-EL regime). */
  UXNTABLE: [60, 60],
  /** APTable[0]: no EL0 access below. */
  APTABLE0: [61, 61],
  /** APTable[1]: no write access below. */
  APTABLE1: [62, 62],
  NSTABLE: [63, 63],
});

const s1LeafCommon = {
  VALID: [0, 0],
  TYPE: [1, 1],
  ATTRINDX: [4, 2],
  NS: [5, 5],
  /** AP[1]: EL0 access allowed. */
  AP1: [6, 6],
  /** AP[2]: read-only. */
  AP2: [7, 7],
  SH: [9, 8],
  AF: [10, 10],
  NG: [11, 11],
  OA_HI: [49, 48],
  GP: [50, 50],
  DBM: [51, 51],
  CONT: [52, 52],
  PXN: [53, 53],
  UXN: [54, 54],
  SW: [58, 55],
  PBHA: [62, 59],
  IGN63: [63, 63],
} as const;

/** Stage-1 page descriptor at L3 (bits 1:0 = 0b11) (the Arm ARM's VMSAv8-64 descriptors). */
export const ArmS1Page = defineLayout("arm.s1-page", 64, { ...s1LeafCommon, ADDR: [47, 12] });
/** Stage-1 2 MiB block at L2 (bits 1:0 = 0b01); bits 20:12 are RES0 (bit 16 is nT with FEAT_BBM, not modelled). */
export const ArmS1Block2M = defineLayout("arm.s1-block-2m", 64, { ...s1LeafCommon, RES0: { msb: 20, lsb: 12, access: "RsvdZ" }, ADDR: [47, 21] });
/** Stage-1 1 GiB block at L1. */
export const ArmS1Block1G = defineLayout("arm.s1-block-1g", 64, { ...s1LeafCommon, RES0: { msb: 29, lsb: 12, access: "RsvdZ" }, ADDR: [47, 30] });

const s2LeafCommon = {
  VALID: [0, 0],
  TYPE: [1, 1],
  /** Stage-2 memory attributes: 0xF normal WB, 0x5 normal NC, 0x1 Device-nGnRE (Linux values). */
  MEMATTR: [5, 2],
  /** S2AP[0]: readable. */
  S2AP_R: [6, 6],
  /** S2AP[1]: writable. */
  S2AP_W: [7, 7],
  SH: [9, 8],
  AF: [10, 10],
  RES0_11: { msb: 11, lsb: 11, access: "RsvdZ" },
  OA_HI: [49, 48],
  RES0_50: { msb: 50, lsb: 50, access: "RsvdZ" },
  DBM: [51, 51],
  CONT: [52, 52],
  /** XN[1:0]: XN[1] (bit 54) is execute-never; XN[0] distinguishes EL1/EL0 only with IDR3.XNX. */
  XN: [54, 53],
  SW: [58, 55],
  PBHA: [62, 59],
  IGN63: [63, 63],
} as const;

export const ArmS2Page = defineLayout("arm.s2-page", 64, { ...s2LeafCommon, ADDR: [47, 12] });
export const ArmS2Block2M = defineLayout("arm.s2-block-2m", 64, { ...s2LeafCommon, RES0: { msb: 20, lsb: 12, access: "RsvdZ" }, ADDR: [47, 21] });
export const ArmS2Block1G = defineLayout("arm.s2-block-1g", 64, { ...s2LeafCommon, RES0: { msb: 29, lsb: 12, access: "RsvdZ" }, ADDR: [47, 30] });

type S1Field = keyof typeof s1LeafCommon;
type S2Field = keyof typeof s2LeafCommon;

function lowMask<F extends string>(l: Layout<F>, f: F): number {
  const b = l.bit(f);
  if (b.word !== 0) throw new Error(`${l.name}.${f} is expected in the low dword`);
  return b.mask;
}

function highMask<F extends string>(l: Layout<F>, f: F): number {
  const s = l.spec(f);
  if (s.msb < 32) throw new Error(`${l.name}.${f} has no bits in the high dword`);
  // The part of the field in bits 63:32 (a field may straddle the dwords, like ADDR).
  const lsb = Math.max(s.lsb, 32);
  return ((2 ** (s.msb - lsb + 1) - 1) * 2 ** (lsb - 32)) >>> 0;
}

const s1 = (f: S1Field): number => lowMask(ArmS1Page, f);
const s2 = (f: S2Field): number => lowMask(ArmS2Page, f);

/** Constant masks for the walkers, derived from the layouts. `*_HI` masks apply to the high dword. */
export const ARM = {
  VALID: s1("VALID"),
  TYPE: s1("TYPE"),
  AP1: s1("AP1"),
  AP2: s1("AP2"),
  AF: s1("AF"),
  NG: s1("NG"),
  S2AP_R: s2("S2AP_R"),
  S2AP_W: s2("S2AP_W"),
  /** High dword: bits 47:32 of an output or table address (the low part is bits 31:12 of the low dword). */
  ADDR_HI: highMask(ArmS1Page, "ADDR"),
  OA_HI_HI: highMask(ArmS1Page, "OA_HI"),
  DBM_HI: highMask(ArmS1Page, "DBM"),
  PXN_HI: highMask(ArmS1Page, "PXN"),
  UXN_HI: highMask(ArmS1Page, "UXN"),
  XN0_HI: highMask(ArmS1Page, "PXN"), // bit 53: stage-2 XN[0]
  PXNTABLE_HI: highMask(ArmTableDesc, "PXNTABLE"),
  UXNTABLE_HI: highMask(ArmTableDesc, "UXNTABLE"),
  APTABLE0_HI: highMask(ArmTableDesc, "APTABLE0"),
  APTABLE1_HI: highMask(ArmTableDesc, "APTABLE1"),
  MEMATTR_LSB: ArmS2Page.spec("MEMATTR").lsb,
} as const;

/** Stage-2 MemAttr[3:2] = 0b00 is Device memory (S2PTW makes a stage-1 walk to it a permission fault). */
export function s2IsDevice(lo: number): boolean {
  return ((lo >>> ARM.MEMATTR_LSB) & 0xc) === 0;
}

const ADDR_LO = (2 ** 32 - 2 ** ArmS1Page.spec("ADDR").lsb) >>> 0;

/** Address bits 47:12 of a descriptor whose halves are `lo`/`hi`. */
export function descAddr(lo: number, hi: number): number {
  return (hi & ARM.ADDR_HI) * 0x1_0000_0000 + ((lo & ADDR_LO) >>> 0);
}
