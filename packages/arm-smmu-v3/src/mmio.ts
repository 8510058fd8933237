import { type Mmio, QueueBaseReg, writeReg } from "@vsva/iommu-hw";

// The SMMU's registers are iommu-hw's one MMIO interface (64-bit values as bigint).
export { type Mmio, readReg, writeReg } from "@vsva/iommu-hw";

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
export function programQueue(mmio: Mmio, regs: QueueRegs, addr: number, log2: number): void {
  const v = QueueBaseReg.alloc();
  QueueBaseReg.setAddr(v, "ADDR", addr);
  QueueBaseReg.set(v, "LOG2SIZE", log2);
  QueueBaseReg.set(v, "RWA", 1);
  writeReg(mmio, regs.base, v);
  mmio.mmioWrite32(regs.prod, 0);
  mmio.mmioWrite32(regs.cons, 0);
}
