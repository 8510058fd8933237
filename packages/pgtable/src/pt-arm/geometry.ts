/**
 * VMSAv8-64 walk geometry for the 4 KiB granule (Arm ARM VMSAv8-64; QEMU hw/arm/smmu-internal.h): 9 bits
 * per level, level 3 maps 4 KiB, level 2 2 MiB, level 1 1 GiB, level 0
 * 512 GiB.
 */

export const GRANULE_SHIFT = 12;
export const STRIDE = 9;
/** With the 4 KiB granule and no LPA2, output addresses stop at 48 bits. */
export const MAX_OA_BITS_4K = 48;

/** log2 of the bytes one descriptor at Arm level `level` maps. */
export function armLevelShift(level: number): number {
  return GRANULE_SHIFT + STRIDE * (3 - level);
}

export function armLevelSize(level: number): number {
  return 2 ** armLevelShift(level);
}

/**
 * Stage-1 start level: 4 − ⌈(IS − 12) / 9⌉ (T0SZ 16 → 0, 25 → 1, 34 → 2,
 * 39 → 2). A table of start levels we were given lists T0SZ 33 (IS 31) → level 2, but two levels
 * of 9 bits over a 12-bit page cover only 30 bits; its own formula and
 * QEMU's (4 − (IS − 4) / 9 = 1) both give level 1, which we follow.
 */
export function s1StartLevel(inputBits: number): number {
  return 4 - Math.ceil((inputBits - GRANULE_SHIFT) / STRIDE);
}

/** The IDR5.OAS / CD.IPS / STE.S2PS encoding: 0..6 → 32, 36, 40, 42, 44, 48, 52 bits. */
export const OAS_BITS = [32, 36, 40, 42, 44, 48, 52] as const;

/** Bits of an OAS/IPS/PS code, or undefined for a reserved code (7). */
export function oasBits(code: number): number | undefined {
  return OAS_BITS[code];
}

/** The code for a width (exact match), or undefined. */
export function oasCode(bits: number): number | undefined {
  const i = (OAS_BITS as readonly number[]).indexOf(bits);
  return i < 0 ? undefined : i;
}

/**
 * Stage-2 start level and the number of concatenated tables there, or a
 * reason the combination is illegal (→ C_BAD_STE). 4 KiB: start = 2 − SL0,
 * SL0 = 3 is reserved; the start level must leave 1..13 index bits (at most
 * 16 concatenated tables, QEMU's limit and the architecture's); T0SZ in
 * 16..39 and not below 64 − IAS (QEMU hw/arm/smmuv3.c: decode_ste()).
 */
export function s2Geometry(t0sz: number, sl0: number, ias: number): { startLevel: number; tables: number; inputBits: number } | string {
  if (sl0 === 3) return "S2SL0 = 3 is reserved with the 4 KiB granule";
  const inputBits = 64 - t0sz;
  if (t0sz > 39 || t0sz < Math.max(16, 64 - ias)) return `S2T0SZ ${t0sz} is outside ${Math.max(16, 64 - ias)}..39`;
  const startLevel = 2 - sl0;
  const bits = inputBits - armLevelShift(startLevel);
  if (bits < 1) return `S2SL0 ${sl0} starts above a ${inputBits}-bit input`;
  if (bits > STRIDE + 4) return `S2SL0 ${sl0} would need ${2 ** (bits - STRIDE)} concatenated tables (at most 16)`;
  return { startLevel, tables: bits > STRIDE ? 2 ** (bits - STRIDE) : 1, inputBits };
}

/** Index of the descriptor at a non-start `level` that `addr` (split into its low/high dwords) selects. */
export function armIndex(lo: number, hi: number, level: number): number {
  switch (level) {
    case 3:
      return (lo >>> 12) & 511;
    case 2:
      return (lo >>> 21) & 511;
    case 1:
      return ((lo >>> 30) | (hi << 2)) & 511;
    default:
      return (hi >>> 7) & 511;
  }
}

/**
 * Index at the start level: every input bit from the level's shift up to
 * IS − 1 (more than 9 with stage-2 concatenation, fewer for a partial top
 * table). Correct for negative (TTB1) addresses.
 */
export function armStartIndex(addr: number, level: number, inputBits: number): number {
  const shift = armLevelShift(level);
  const span = 2 ** (inputBits - shift);
  const q = Math.floor(addr / 2 ** shift);
  return q - Math.floor(q / span) * span;
}
