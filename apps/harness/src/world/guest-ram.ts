import { MEM_ABORT, type MemStats, type PhysMem, type U64, newStats } from "@vsva/iommu-hw";

/**
 * A guest's view of its RAM: guest-physical addresses
 * [0, size) backed by one linear run of host memory at `hpaBase`. What a guest
 * kernel writes through it lands in host pages; anything outside guest RAM
 * aborts, as it would on the guest's bus. (The VMM will back guest RAM with
 * scattered host pages; a linear run is enough for the host-only scenarios.)
 */
export class GuestRamView implements PhysMem {
  readonly stats: MemStats = newStats();
  readonly addrBits: number;

  constructor(
    private readonly host: PhysMem,
    readonly hpaBase: number,
    readonly size: number,
  ) {
    this.addrBits = Math.ceil(Math.log2(size));
  }

  /** The host-physical address of a guest-physical one, or null outside guest RAM. */
  gpaToHpa(gpa: number): number | null {
    return gpa >= 0 && gpa < this.size ? this.hpaBase + gpa : null;
  }

  #inside(gpa: number, len: number): boolean {
    const ok = gpa >= 0 && gpa + len <= this.size;
    if (!ok) this.stats.aborts++;
    return ok;
  }

  isPopulated(gpa: number): boolean {
    return gpa >= 0 && gpa < this.size && this.host.isPopulated(this.hpaBase + gpa);
  }

  read8(gpa: number): number {
    this.stats.reads++;
    return this.#inside(gpa, 1) ? this.host.read8(this.hpaBase + gpa) : MEM_ABORT;
  }

  read16(gpa: number): number {
    this.stats.reads++;
    return this.#inside(gpa, 2) ? this.host.read16(this.hpaBase + gpa) : MEM_ABORT;
  }

  read32(gpa: number): number {
    this.stats.reads++;
    return this.#inside(gpa, 4) ? this.host.read32(this.hpaBase + gpa) : MEM_ABORT;
  }

  read64(gpa: number, out: U64): boolean {
    this.stats.reads++;
    return this.#inside(gpa, 8) && this.host.read64(this.hpaBase + gpa, out);
  }

  write8(gpa: number, v: number): boolean {
    this.stats.writes++;
    return this.#inside(gpa, 1) && this.host.write8(this.hpaBase + gpa, v);
  }

  write16(gpa: number, v: number): boolean {
    this.stats.writes++;
    return this.#inside(gpa, 2) && this.host.write16(this.hpaBase + gpa, v);
  }

  write32(gpa: number, v: number): boolean {
    this.stats.writes++;
    return this.#inside(gpa, 4) && this.host.write32(this.hpaBase + gpa, v);
  }

  write64(gpa: number, lo: number, hi: number): boolean {
    this.stats.writes++;
    return this.#inside(gpa, 8) && this.host.write64(this.hpaBase + gpa, lo, hi);
  }

  readBytes(gpa: number, dst: Uint8Array): boolean {
    this.stats.reads++;
    return this.#inside(gpa, dst.length) && this.host.readBytes(this.hpaBase + gpa, dst);
  }

  writeBytes(gpa: number, src: Uint8Array): boolean {
    this.stats.writes++;
    return this.#inside(gpa, src.length) && this.host.writeBytes(this.hpaBase + gpa, src);
  }
}
