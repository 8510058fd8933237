import { type MemStats, type PhysMem, type U64, newStats } from "./phys-mem.js";

/**
 * A view of memory whose writes are discarded (reported as done): a walk for
 * a checker sees exactly what hardware would, without setting accessed or
 * dirty flags behind the software's back.
 */
export class ReadOnlyMem implements PhysMem {
  readonly stats: MemStats = newStats();

  constructor(private readonly inner: PhysMem) {}

  get addrBits(): number {
    return this.inner.addrBits;
  }

  isPopulated(pa: number): boolean {
    return this.inner.isPopulated(pa);
  }

  read8(pa: number): number {
    this.stats.reads++;
    return this.inner.read8(pa);
  }

  read16(pa: number): number {
    this.stats.reads++;
    return this.inner.read16(pa);
  }

  read32(pa: number): number {
    this.stats.reads++;
    return this.inner.read32(pa);
  }

  read64(pa: number, out: U64): boolean {
    this.stats.reads++;
    return this.inner.read64(pa, out);
  }

  readBytes(pa: number, dst: Uint8Array): boolean {
    this.stats.reads++;
    return this.inner.readBytes(pa, dst);
  }

  write8(pa: number): boolean {
    return this.inner.isPopulated(pa);
  }

  write16(pa: number): boolean {
    return this.inner.isPopulated(pa);
  }

  write32(pa: number): boolean {
    return this.inner.isPopulated(pa);
  }

  write64(pa: number): boolean {
    return this.inner.isPopulated(pa);
  }

  writeBytes(pa: number): boolean {
    return this.inner.isPopulated(pa);
  }
}
