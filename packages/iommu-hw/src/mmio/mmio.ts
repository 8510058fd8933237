import { Errno, KernelError } from "@vsva/kernel";

/**
 * A register window as software sees it: 32- and 64-bit MMIO at byte
 * offsets. Both emulated units (`VtdUnit`, `SmmuUnit`) implement it, and so
 * can anything a driver should drive instead (a VMM's view of a virtual
 * IOMMU): drivers reach hardware through nothing else besides memory.
 *
 * A 64-bit value crosses as a `bigint` in 0 .. 2^64 − 1, so bits 63:53 are
 * exact. A 32-bit value is a number holding 32 bits, unsigned or as the
 * signed result of a bitwise operator (−2^31 .. 2^32 − 1). Anything else
 * (a number for a 64-bit write, a negative bigint, a fraction, NaN) is
 * refused with EINVAL and writes nothing: a value is never silently
 * truncated. Offsets that name no register are holes (reads give 0, writes
 * are ignored), as on the silicon.
 */
export interface Mmio {
  /** The dword at `offset`. */
  mmioRead32(offset: number): number;
  /** The qword at `offset` (two dwords, low first). */
  mmioRead64(offset: number): bigint;
  /** EINVAL if `value` does not hold 32 bits. */
  mmioWrite32(offset: number, value: number): void;
  /** One 64-bit write: its side effect runs once, after both halves are in. EINVAL if `value` is not a bigint in 0 .. 2^64 − 1. */
  mmioWrite64(offset: number, value: bigint): void;
}

const U64_LIMIT = 1n << 64n;

/** `value` as an unsigned dword; EINVAL for anything that does not hold 32 bits. */
export function checkMmio32(value: number, offset: number): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < -0x8000_0000 || value > 0xffff_ffff) {
    throw new KernelError(Errno.EINVAL, `MMIO write of ${String(value)} at 0x${offsetHex(offset)}: not a 32-bit value`);
  }
  return value >>> 0;
}

/** `value` split into dwords; EINVAL unless it is a bigint in 0 .. 2^64 − 1. */
export function checkMmio64(value: bigint, offset: number): { readonly lo: number; readonly hi: number } {
  if (typeof value !== "bigint" || value < 0n || value >= U64_LIMIT) {
    throw new KernelError(Errno.EINVAL, `MMIO write of ${String(value)} at 0x${offsetHex(offset)}: not a 64-bit value (pass a bigint in 0 .. 2^64 - 1)`);
  }
  return { lo: Number(value & 0xffff_ffffn), hi: Number(value >> 32n) };
}

/** Two dwords (low first) as one 64-bit value. */
export function joinDwords(lo: number, hi: number): bigint {
  return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
}

function offsetHex(offset: number): string {
  return Number.isInteger(offset) ? offset.toString(16) : String(offset);
}

/** Reads a register into a value of its layout (32- or 64-bit by the layout's size). */
export function readReg(mmio: Mmio, offset: number, layout: { alloc(): Uint32Array; readonly dwords: number }): Uint32Array {
  const v = layout.alloc();
  if (layout.dwords === 1) v[0] = mmio.mmioRead32(offset);
  else {
    const r = mmio.mmioRead64(offset);
    v[0] = Number(r & 0xffff_ffffn);
    v[1] = Number(r >> 32n);
  }
  return v;
}

/** Writes a register from a value of its layout (one dword: a 32-bit write; two: one 64-bit write). */
export function writeReg(mmio: Mmio, offset: number, v: Uint32Array): void {
  if (v.length === 1) mmio.mmioWrite32(offset, v[0] ?? 0);
  else mmio.mmioWrite64(offset, joinDwords(v[0] ?? 0, v[1] ?? 0));
}
