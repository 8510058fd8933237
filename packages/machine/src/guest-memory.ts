import { Errno, KernelError } from "@vsva/kernel";
import { MEM_ABORT, type MemStats, PAGE_SIZE, type PhysMem, type U64, newStats } from "@vsva/pgtable";

const PAGE_MASK = PAGE_SIZE - 1;
/**
 * A page's pin count saturates here: Linux refuses a pin that would overflow
 * the page's reference count (`mm/gup.c: try_grab_folio()` fails once the
 * count would wrap), so a VFIO MAP_DMA of a page pinned this often fails.
 */
export const MAX_PIN_COUNT = 0x7fff_ffff;

export interface GuestMemoryOptions {
  /** The memory the guest's pages live in (host RAM, or another view). */
  readonly host: PhysMem;
  /**
   * The guest-physical address width the guest's CPUs and virtual IOMMU
   * report (12..52 bits). Its own setting, not derived from how much RAM is
   * mapped: a 4 MiB guest still has, say, a 39-bit physical address space.
   */
  readonly addrBits: number;
  /** Pin-count ceiling per page (default {@link MAX_PIN_COUNT}). */
  readonly maxPinCount?: number;
}

/** Counters of pinning, as VFIO's type1 backend accounts locked pages. */
export interface PinStats {
  /** Guest pages with a pin count above zero. */
  pinnedPages: number;
  /** Successful pin calls. */
  pins: number;
  /** Successful unpin calls. */
  unpins: number;
}

/**
 * A guest's view of its physical memory (the same PhysMem a host's RAM is): guest-physical
 * addresses in 4 KiB pages, each backed by any host page, as a VMM backs
 * guest RAM with whatever host pages it got (QEMU's RAM blocks are host
 * virtual memory, scattered in host-physical space). It implements the same
 * {@link PhysMem} interface as host RAM, so the same kernel layers run over it.
 *
 * - An access to a guest page with no backing aborts (`MEM_ABORT`, `false`),
 *   as an access to a hole in the guest's physical map does on its bus.
 * - An access that crosses a page boundary is split per page; writes are all
 *   or nothing.
 * - Pages carry pin counts, so VFIO's MAP_DMA can pin what it maps for the
 *   device (`drivers/vfio/vfio_iommu_type1.c: vfio_pin_pages_remote()`) and a
 *   pinned page cannot be taken away from the guest.
 */
export class GuestMemoryView implements PhysMem {
  readonly addrBits: number;
  readonly stats: MemStats = newStats();
  readonly pinStats: PinStats = { pinnedPages: 0, pins: 0, unpins: 0 };
  readonly host: PhysMem;
  readonly #limit: number;
  readonly #maxPins: number;
  /** Guest frame number -> host frame number. */
  readonly #frames = new Map<number, number>();
  /** Guest frame number -> pin count (absent: 0). */
  readonly #pins = new Map<number, number>();

  constructor(opts: GuestMemoryOptions) {
    const bits = opts.addrBits;
    if (!Number.isInteger(bits) || bits < 12 || bits > 52) {
      throw new KernelError(Errno.EINVAL, `guest physical address width ${bits} is outside 12..52 bits`);
    }
    this.addrBits = bits;
    this.#limit = 2 ** bits;
    this.host = opts.host;
    this.#maxPins = opts.maxPinCount ?? MAX_PIN_COUNT;
  }

  /** Guest pages with a backing. */
  get mappedPages(): number {
    return this.#frames.size;
  }

  /**
   * Backs guest pages [gpa, gpa + size) with host pages [hpa, hpa + size).
   * Call it once per host run to scatter guest RAM over host memory.
   * EINVAL: not 4 KiB aligned, empty, or outside either address width;
   * EFAULT: a host page is not populated; EEXIST: a guest page is already
   * backed. Nothing changes on error.
   */
  map(gpa: number, hpa: number, size: number): void {
    this.#checkRange(gpa, size, "map");
    if (!Number.isInteger(hpa) || hpa < 0 || hpa % PAGE_SIZE !== 0 || hpa + size > 2 ** this.host.addrBits) {
      throw new KernelError(Errno.EINVAL, `host range [${hex(hpa)}, +${hex(size)}) must be 4 KiB aligned and inside the host's ${this.host.addrBits}-bit space`);
    }
    const n = size / PAGE_SIZE;
    const gfn = gpa / PAGE_SIZE;
    for (let i = 0; i < n; i++) {
      if (this.#frames.has(gfn + i)) throw new KernelError(Errno.EEXIST, `guest page ${hex(gpa + i * PAGE_SIZE)} is already backed`);
      if (!this.host.isPopulated(hpa + i * PAGE_SIZE)) throw new KernelError(Errno.EFAULT, `host page ${hex(hpa + i * PAGE_SIZE)} is not RAM`);
    }
    const hfn = hpa / PAGE_SIZE;
    for (let i = 0; i < n; i++) this.#frames.set(gfn + i, hfn + i);
  }

  /**
   * Takes the backing away from guest pages [gpa, gpa + size) (the VMM
   * unplugging or ballooning RAM). EINVAL: bad range; ENOENT: a page has no
   * backing; EBUSY: a page is pinned. Nothing changes on error.
   */
  unmap(gpa: number, size: number): void {
    this.#checkRange(gpa, size, "unmap");
    const gfn = gpa / PAGE_SIZE;
    const n = size / PAGE_SIZE;
    for (let i = 0; i < n; i++) {
      if (!this.#frames.has(gfn + i)) throw new KernelError(Errno.ENOENT, `guest page ${hex(gpa + i * PAGE_SIZE)} has no backing`);
      if (this.#pins.has(gfn + i)) throw new KernelError(Errno.EBUSY, `guest page ${hex(gpa + i * PAGE_SIZE)} is pinned`);
    }
    for (let i = 0; i < n; i++) this.#frames.delete(gfn + i);
  }

  /** The host-physical address behind a guest-physical one, or null in a hole. */
  gpaToHpa(gpa: number): number | null {
    if (!(gpa >= 0 && gpa < this.#limit)) return null;
    const hfn = this.#frames.get(Math.floor(gpa / PAGE_SIZE));
    return hfn === undefined ? null : hfn * PAGE_SIZE + (gpa & PAGE_MASK);
  }

  /** The pin count of the guest page holding `gpa` (0 in a hole). */
  pinCount(gpa: number): number {
    return this.#pins.get(Math.floor(gpa / PAGE_SIZE)) ?? 0;
  }

  /**
   * Pins guest pages [gpa, gpa + size) and returns the host address of each,
   * in order, as `vfio_pin_pages_remote()` hands the pfns it pinned to the
   * IOMMU mapping. EINVAL: not 4 KiB aligned, empty, or beyond the guest's
   * address width; EFAULT: a page in the range has no backing (the hole
   * `vaddr_get_pfns()` cannot fault in); EOVERFLOW: a page's pin count is at
   * its ceiling ({@link MAX_PIN_COUNT} unless configured). All or nothing.
   */
  pin(gpa: number, size: number): number[] {
    this.#checkRange(gpa, size, "pin");
    const gfn = gpa / PAGE_SIZE;
    const n = size / PAGE_SIZE;
    const hpas: number[] = [];
    for (let i = 0; i < n; i++) {
      const hfn = this.#frames.get(gfn + i);
      if (hfn === undefined) throw new KernelError(Errno.EFAULT, `guest page ${hex(gpa + i * PAGE_SIZE)} has no backing to pin`);
      if ((this.#pins.get(gfn + i) ?? 0) >= this.#maxPins) {
        throw new KernelError(Errno.EOVERFLOW, `guest page ${hex(gpa + i * PAGE_SIZE)} is pinned ${this.#maxPins} times already`);
      }
      hpas.push(hfn * PAGE_SIZE);
    }
    for (let i = 0; i < n; i++) {
      const c = this.#pins.get(gfn + i) ?? 0;
      if (c === 0) this.pinStats.pinnedPages++;
      this.#pins.set(gfn + i, c + 1);
    }
    this.pinStats.pins++;
    return hpas;
  }

  /**
   * Drops one pin from each of guest pages [gpa, gpa + size). EINVAL: bad
   * range, or a page in it is not pinned (an unbalanced unpin is the
   * caller's bug, refused before anything changes).
   */
  unpin(gpa: number, size: number): void {
    this.#checkRange(gpa, size, "unpin");
    const gfn = gpa / PAGE_SIZE;
    const n = size / PAGE_SIZE;
    for (let i = 0; i < n; i++) {
      if (!this.#pins.has(gfn + i)) throw new KernelError(Errno.EINVAL, `guest page ${hex(gpa + i * PAGE_SIZE)} is not pinned`);
    }
    for (let i = 0; i < n; i++) {
      const c = this.#pins.get(gfn + i) ?? 0;
      if (c <= 1) {
        this.#pins.delete(gfn + i);
        this.pinStats.pinnedPages--;
      } else {
        this.#pins.set(gfn + i, c - 1);
      }
    }
    this.pinStats.unpins++;
  }

  #checkRange(gpa: number, size: number, op: string): void {
    if (
      !Number.isInteger(gpa) || !Number.isInteger(size) || size <= 0 || gpa < 0 ||
      gpa % PAGE_SIZE !== 0 || size % PAGE_SIZE !== 0 || gpa + size > this.#limit
    ) {
      throw new KernelError(Errno.EINVAL, `${op}: guest range [${hex(gpa)}, +${hex(size)}) must be 4 KiB aligned, non-empty and inside the ${this.addrBits}-bit guest space`);
    }
  }

  // --- PhysMem ---------------------------------------------------------------

  /** The host address of `gpa` when [gpa, gpa + len) lies in one backed page, else -1. */
  #inPage(gpa: number, len: number): number {
    if (!(gpa >= 0 && gpa < this.#limit)) return -1;
    const off = gpa & PAGE_MASK;
    if (off + len > PAGE_SIZE) return -1;
    const hfn = this.#frames.get(Math.floor(gpa / PAGE_SIZE));
    return hfn === undefined ? -1 : hfn * PAGE_SIZE + off;
  }

  /** Whether every byte of [gpa, gpa + len) is backed. */
  #backed(gpa: number, len: number): boolean {
    if (!(gpa >= 0 && gpa + len <= this.#limit)) return false;
    if (len === 0) return true;
    const last = Math.floor((gpa + len - 1) / PAGE_SIZE);
    for (let p = Math.floor(gpa / PAGE_SIZE); p <= last; p++) if (!this.#frames.has(p)) return false;
    return true;
  }

  isPopulated(gpa: number): boolean {
    const hpa = this.gpaToHpa(gpa);
    return hpa !== null && this.host.isPopulated(hpa);
  }

  #abort(): number {
    this.stats.aborts++;
    return MEM_ABORT;
  }

  /** Little-endian read of `n` (≤ 4) bytes, split at page boundaries. */
  #readN(gpa: number, n: number): number {
    this.stats.reads++;
    this.stats.bytesRead += n;
    const hpa = this.#inPage(gpa, n);
    if (hpa >= 0) {
      if (n === 1) return this.host.read8(hpa);
      if (n === 2) return this.host.read16(hpa);
      return this.host.read32(hpa);
    }
    if (!this.#backed(gpa, n)) return this.#abort();
    let v = 0;
    for (let k = 0; k < n; k++) {
      const b = this.host.read8(this.#inPage(gpa + k, 1));
      if (b === MEM_ABORT) return this.#abort();
      v += b * 2 ** (8 * k);
    }
    return v;
  }

  #writeN(gpa: number, n: number, v: number): boolean {
    this.stats.writes++;
    this.stats.bytesWritten += n;
    const hpa = this.#inPage(gpa, n);
    if (hpa >= 0) {
      if (n === 1) return this.host.write8(hpa, v);
      if (n === 2) return this.host.write16(hpa, v);
      return this.host.write32(hpa, v);
    }
    if (!this.#backed(gpa, n)) {
      this.stats.aborts++;
      return false;
    }
    for (let k = 0; k < n; k++) this.host.write8(this.#inPage(gpa + k, 1), Math.floor(v / 2 ** (8 * k)) & 0xff);
    return true;
  }

  read8(gpa: number): number {
    return this.#readN(gpa, 1);
  }

  read16(gpa: number): number {
    return this.#readN(gpa, 2);
  }

  read32(gpa: number): number {
    return this.#readN(gpa, 4);
  }

  read64(gpa: number, out: U64): boolean {
    this.stats.reads++;
    this.stats.bytesRead += 8;
    const hpa = this.#inPage(gpa, 8);
    if (hpa >= 0) return this.host.read64(hpa, out);
    if (!this.#backed(gpa, 8)) {
      this.stats.aborts++;
      return false;
    }
    const bytes = new Uint8Array(8);
    if (!this.#copy(gpa, bytes, "read")) return false;
    const dv = new DataView(bytes.buffer);
    out.lo = dv.getUint32(0, true);
    out.hi = dv.getUint32(4, true);
    return true;
  }

  write8(gpa: number, v: number): boolean {
    return this.#writeN(gpa, 1, v & 0xff);
  }

  write16(gpa: number, v: number): boolean {
    return this.#writeN(gpa, 2, v & 0xffff);
  }

  write32(gpa: number, v: number): boolean {
    return this.#writeN(gpa, 4, v >>> 0);
  }

  write64(gpa: number, lo: number, hi: number): boolean {
    this.stats.writes++;
    this.stats.bytesWritten += 8;
    const hpa = this.#inPage(gpa, 8);
    if (hpa >= 0) return this.host.write64(hpa, lo, hi);
    if (!this.#backed(gpa, 8)) {
      this.stats.aborts++;
      return false;
    }
    const bytes = new Uint8Array(8);
    const dv = new DataView(bytes.buffer);
    dv.setUint32(0, lo >>> 0, true);
    dv.setUint32(4, hi >>> 0, true);
    return this.#copy(gpa, bytes, "write");
  }

  readBytes(gpa: number, dst: Uint8Array): boolean {
    this.stats.reads++;
    this.stats.bytesRead += dst.length;
    if (!this.#backed(gpa, dst.length)) {
      this.stats.aborts++;
      return false;
    }
    return this.#copy(gpa, dst, "read");
  }

  writeBytes(gpa: number, src: Uint8Array): boolean {
    this.stats.writes++;
    this.stats.bytesWritten += src.length;
    if (!this.#backed(gpa, src.length)) {
      this.stats.aborts++;
      return false;
    }
    return this.#copy(gpa, src, "write");
  }

  /** Page-by-page copy of a range already checked to be backed. */
  #copy(gpa: number, buf: Uint8Array, dir: "read" | "write"): boolean {
    let done = 0;
    while (done < buf.length) {
      const a = gpa + done;
      const n = Math.min(PAGE_SIZE - (a & PAGE_MASK), buf.length - done);
      const hpa = this.#inPage(a, n);
      const part = buf.subarray(done, done + n);
      const ok = dir === "read" ? this.host.readBytes(hpa, part) : this.host.writeBytes(hpa, part);
      if (!ok) return false;
      done += n;
    }
    return true;
  }
}

function hex(n: number): string {
  return "0x" + n.toString(16);
}
