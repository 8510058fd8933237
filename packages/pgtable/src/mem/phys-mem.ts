/**
 * Physical memory as the IOMMU and the CPU see it: an
 * interface, so that host RAM implements it and so does a guest's view of its
 * RAM, which the VMM backs with host pages.
 *
 * An access outside populated memory is an abort the caller sees as a value
 * (`MEM_ABORT` from the scalar reads, `false` from the others), never an
 * exception: the IOMMU turns it into the right fault reason.
 *
 * 64-bit entries are read as two 32-bit halves into a caller-owned {@link U64}
 * so hot paths allocate nothing and never touch BigInt.
 */
export const MEM_ABORT = -1;

/** A 64-bit value as two unsigned 32-bit halves. */
export interface U64 {
  lo: number;
  hi: number;
}

export function u64(lo = 0, hi = 0): U64 {
  return { lo: lo >>> 0, hi: hi >>> 0 };
}

export interface MemStats {
  /** Read accesses (one per call, whatever the width: an 8-byte entry fetch is one reference). */
  reads: number;
  writes: number;
  bytesRead: number;
  bytesWritten: number;
  aborts: number;
}

export interface PhysMem {
  /** Physical address width in bits (at most 52). */
  readonly addrBits: number;
  readonly stats: MemStats;
  /** Whether `pa` is backed: reads and writes there succeed. */
  isPopulated(pa: number): boolean;
  /** Unsigned value, or {@link MEM_ABORT}. */
  read8(pa: number): number;
  read16(pa: number): number;
  read32(pa: number): number;
  /** Fills `out`; false on abort (then `out` is unspecified). */
  read64(pa: number, out: U64): boolean;
  write8(pa: number, v: number): boolean;
  write16(pa: number, v: number): boolean;
  write32(pa: number, v: number): boolean;
  write64(pa: number, lo: number, hi: number): boolean;
  /** Copies `dst.length` bytes from `pa`; false (and nothing promised of `dst`) if any byte aborts. */
  readBytes(pa: number, dst: Uint8Array): boolean;
  /** Writes all bytes or none. */
  writeBytes(pa: number, src: Uint8Array): boolean;
  /**
   * Optional: copies `len` bytes from `src` to `dst` inside this memory, as
   * `readBytes` into a buffer then `writeBytes` of it would (overlap
   * included), without the intermediate buffer: a DMA engine's block move.
   * All or nothing: false, with nothing written, if either range aborts.
   */
  copyBytes?(dst: number, src: number, len: number): boolean;
  /**
   * Optional: writes `words` at `pa` as `writeBytes` of their little-endian
   * bytes would (same result, same counters, all or nothing), for a device
   * writing a small dword-aligned structure such as a completion record,
   * without a block copy's call.
   */
  writeWords?(pa: number, words: Uint32Array): boolean;
}

export function resetStats(s: MemStats): void {
  s.reads = 0;
  s.writes = 0;
  s.bytesRead = 0;
  s.bytesWritten = 0;
  s.aborts = 0;
}

export function newStats(): MemStats {
  return { reads: 0, writes: 0, bytesRead: 0, bytesWritten: 0, aborts: 0 };
}

// --- BigInt helpers, for tests and tools only (too slow for hot paths) ------

export function u64ToBigInt(v: U64): bigint {
  return (BigInt(v.hi >>> 0) << 32n) | BigInt(v.lo >>> 0);
}

export function bigIntToU64(v: bigint): U64 {
  const m = BigInt.asUintN(64, v);
  return { lo: Number(m & 0xffff_ffffn), hi: Number(m >> 32n) };
}

/** A 64-bit value as a JS number; exact only below 2^53 (addresses up to 2^52 fit). */
export function u64ToNumber(v: U64): number {
  return v.hi * 0x1_0000_0000 + v.lo;
}

export function numberToU64(n: number, out: U64 = { lo: 0, hi: 0 }): U64 {
  out.lo = n >>> 0;
  out.hi = Math.floor(n / 0x1_0000_0000) >>> 0;
  return out;
}
