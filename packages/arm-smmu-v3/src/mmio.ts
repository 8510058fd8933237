import { QueueBaseReg, type U64 } from "@vsva/iommu-hw";

/**
 * The register window of an SMMUv3 as a driver sees it (two 64 KiB pages of
 * 32- and 64-bit registers). The emulated `SmmuUnit` satisfies it, and so
 * would a guest's view of a virtual SMMU: the driver never reaches past its
 * registers and the structures it writes in memory.
 */
export interface SmmuMmio {
  mmioRead32(offset: number): number;
  mmioRead64(offset: number): U64;
  mmioWrite32(offset: number, value: number): void;
  mmioWrite64(offset: number, value: U64 | number): void;
}

/** Reads a register into a value of its layout (32- or 64-bit by the layout's size). */
export function readReg(mmio: SmmuMmio, offset: number, layout: { alloc(): Uint32Array; readonly dwords: number }): Uint32Array {
  const v = layout.alloc();
  if (layout.dwords === 1) v[0] = mmio.mmioRead32(offset);
  else {
    const r = mmio.mmioRead64(offset);
    v[0] = r.lo;
    v[1] = r.hi;
  }
  return v;
}

/** Writes a register from a value of its layout. */
export function writeReg(mmio: SmmuMmio, offset: number, v: Uint32Array): void {
  if (v.length === 1) mmio.mmioWrite32(offset, v[0] ?? 0);
  else mmio.mmioWrite64(offset, { lo: v[0] ?? 0, hi: v[1] ?? 0 });
}

/** Register offsets of one queue: its *_BASE, and its PROD and CONS (on page 1 for the queues the SMMU produces into). */
export interface QueueRegs {
  readonly base: number;
  readonly prod: number;
  readonly cons: number;
}

/**
 * Points a queue (command, event or PRI) at `addr` with 2^log2 entries,
 * write-allocate hinted as Linux does, and zeroes PROD and CONS. The queue's
 * enable bit in CR0 must be clear.
 */
export function programQueue(mmio: SmmuMmio, regs: QueueRegs, addr: number, log2: number): void {
  const v = QueueBaseReg.alloc();
  QueueBaseReg.setAddr(v, "ADDR", addr);
  QueueBaseReg.set(v, "LOG2SIZE", log2);
  QueueBaseReg.set(v, "RWA", 1);
  writeReg(mmio, regs.base, v);
  mmio.mmioWrite32(regs.prod, 0);
  mmio.mmioWrite32(regs.cons, 0);
}
