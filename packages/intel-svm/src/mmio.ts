import type { Layout, U64 } from "@vsva/iommu-hw";

/**
 * The register window of a VT-d unit as a driver sees it: 32- and 64-bit
 * MMIO. The emulated `VtdUnit` satisfies it, and so does a guest's view of a
 * virtual IOMMU: the driver never reaches past its registers and memory.
 */
export interface VtdMmio {
  mmioRead32(offset: number): number;
  mmioRead64(offset: number): U64;
  mmioWrite32(offset: number, value: number): void;
  mmioWrite64(offset: number, value: U64 | number): void;
}

/** Reads a 64-bit register into a value of its layout. */
export function readReg64<F extends string>(mmio: VtdMmio, offset: number, layout: Layout<F>): Uint32Array {
  const v = layout.alloc();
  const r = mmio.mmioRead64(offset);
  v[0] = r.lo;
  v[1] = r.hi;
  return v;
}

/** Writes a 64-bit register from a value of its layout. */
export function writeReg64(mmio: VtdMmio, offset: number, v: Uint32Array): void {
  mmio.mmioWrite64(offset, { lo: v[0] ?? 0, hi: v[1] ?? 0 });
}

/** Reads a 32-bit register into a value of its layout. */
export function readReg32<F extends string>(mmio: VtdMmio, offset: number, layout: Layout<F>): Uint32Array {
  const v = layout.alloc();
  v[0] = mmio.mmioRead32(offset);
  return v;
}
