/**
 * Index arithmetic shared by both formats (VT-d spec §9.7/§9.8): 4 KiB
 * tables of 512 eight-byte entries, 9 address bits per level, level 1 being
 * the last table (PT) and level 5 the PML5.
 *
 * Addresses are split once into a low and a high 32-bit half, so index
 * extraction is integer bit work. A negative (sign-extended) VA splits
 * correctly: `>>> 0` keeps its low 32 bits in two's complement and
 * `Math.floor(va / 2**32)` its high bits.
 */

export const ENTRY_SIZE = 8;
export const ENTRIES_PER_TABLE = 512;
export const TABLE_SIZE = 4096;

const TWO32 = 0x1_0000_0000;

/** log2 of the bytes one entry at `level` maps: 12 (4 KiB) at level 1, +9 per level. */
export function levelShift(level: number): number {
  return 3 + 9 * level;
}

/** Bytes one entry at `level` maps. */
export function levelSize(level: number): number {
  return 2 ** levelShift(level);
}

/** Low 32 bits of an address (two's complement for negative ones). */
export function addrLo(addr: number): number {
  return addr >>> 0;
}

/** High bits of an address above bit 31, as a signed 32-bit integer. */
export function addrHi(addr: number): number {
  return Math.floor(addr / TWO32) | 0;
}

/** Index of the entry at `level` that `addr` (split into `lo`/`hi`) selects. */
export function levelIndex(lo: number, hi: number, level: number): number {
  switch (level) {
    case 1:
      return (lo >>> 12) & 511;
    case 2:
      return (lo >>> 21) & 511;
    case 3:
      return ((lo >>> 30) | (hi << 2)) & 511;
    case 4:
      return (hi >>> 7) & 511;
    default:
      return (hi >>> 16) & 511;
  }
}

/** `addr` modulo 2**shift for shift ≤ 30, correct for negative addresses. */
export function offsetIn(lo: number, shift: number): number {
  return lo & ((1 << shift) - 1);
}

/**
 * The address bits that select the entries from the top down to `level`:
 * equal for two addresses exactly when they share those entries. Used as
 * the paging-structure-cache key and to name a table in a plan.
 */
export function levelPrefix(addr: number, level: number): number {
  return Math.floor(addr / levelSize(level));
}

/** Address of the 64-bit entry whose halves are in `lo`/`hi`, bits 51:12 (the "ADDR" field of both formats). */
export function entryAddr(lo: number, hi: number): number {
  return (hi & 0xf_ffff) * TWO32 + ((lo & 0xffff_f000) >>> 0);
}

/** Mask, in the high dword, of the address bits 51:addrBits (reserved above the host address width). */
export function hawReservedHi(addrBits: number): number {
  if (addrBits >= 52) return 0;
  if (addrBits <= 32) return 0xf_ffff;
  return (0xf_ffff & ~((1 << (addrBits - 32)) - 1)) >>> 0;
}

/** Mask, in the low dword, of the address bits 31:addrBits when addrBits < 32 (tests with tiny widths). */
export function hawReservedLo(addrBits: number): number {
  if (addrBits >= 32) return 0;
  return (0xffff_f000 & ~((2 ** addrBits - 1) >>> 0)) >>> 0;
}
