import { Errno, type FaultInjector, KernelBug, KernelError } from "@vsva/kernel";
import type { PhysMem } from "@vsva/pgtable";
import type { PageAllocator } from "@vsva/iommu-core";
import { GuestMemoryView } from "@vsva/machine";

export const PAGE = 0x1000;
/** Host pages come in 64 KiB blocks (an order-4 allocation), then are handed to guest pages one by one. */
const BLOCK_ORDER = 4;
const BLOCK = PAGE << BLOCK_ORDER;

export interface GuestRamOptions {
  /** Host RAM the pages live in. */
  readonly host: PhysMem;
  /** The host's page allocator: every byte of guest RAM is a host page it handed out. */
  readonly pages: PageAllocator;
  readonly faults: FaultInjector;
  /** Bytes of guest RAM, a positive multiple of 64 KiB, mapped at GPA 0. */
  readonly bytes: number;
  /** Guest-physical address width the guest's CPUs report (default 39). */
  readonly addrBits?: number;
  /** Seeds the order guest pages take host pages in (default 1). */
  readonly scatterSeed?: number;
  /** Tag of the host pages (who holds them). */
  readonly tag: string;
}

/**
 * A VM's RAM as a VMM gets it: anonymous memory, so host pages from anywhere
 * in host-physical space (a VMM's RAM block is virtually contiguous only),
 * here deliberately shuffled, guest page by guest page, so nothing can
 * assume GPA + offset = HPA + offset. The view is what the guest's kernel
 * reads and writes; VFIO pins it for MAP_DMA through the VMM's mapping.
 */
export class GuestRam {
  readonly view: GuestMemoryView;
  readonly bytes: number;
  readonly #pages: PageAllocator;
  readonly #blocks: number[] = [];
  #freed = false;

  /** ENOMEM (fault point `vmm.guest_ram` or the host's page allocator) with nothing kept; EINVAL for a size that is not whole 64 KiB blocks. */
  constructor(opts: GuestRamOptions) {
    if (!Number.isSafeInteger(opts.bytes) || opts.bytes <= 0 || opts.bytes % BLOCK !== 0) {
      throw new KernelError(Errno.EINVAL, `guest RAM of ${opts.bytes} bytes is not a positive multiple of ${BLOCK} bytes`);
    }
    this.bytes = opts.bytes;
    this.#pages = opts.pages;
    this.view = new GuestMemoryView({ host: opts.host, addrBits: opts.addrBits ?? 39 });
    if (opts.bytes > 2 ** this.view.addrBits) throw new KernelError(Errno.EINVAL, `${opts.bytes} bytes of RAM do not fit a ${this.view.addrBits}-bit guest-physical space`);
    try {
      // QEMU's mmap of the RAM block: the VMM's own allocation can fail before any page is taken.
      opts.faults.inject("vmm.guest_ram");
      for (let i = 0; i < opts.bytes / BLOCK; i++) this.#blocks.push(opts.pages.allocPages(BLOCK_ORDER, opts.tag));
    } catch (e) {
      this.#release();
      throw e;
    }
    const frames: number[] = [];
    for (const b of this.#blocks) for (let off = 0; off < BLOCK; off += PAGE) frames.push(b + off);
    shuffle(frames, opts.scatterSeed ?? 1);
    frames.forEach((hpa, i) => this.view.map(i * PAGE, hpa, PAGE));
  }

  /** The host page behind guest-physical `gpa` (its byte), or null for a hole. */
  hpa(gpa: number): number | null {
    return this.view.gpaToHpa(gpa);
  }

  /** Host pages held (4 KiB pages). */
  get hostPages(): number {
    return this.#freed ? 0 : this.#blocks.length << BLOCK_ORDER;
  }

  /**
   * Gives every host page back. A page still pinned (a device may still
   * reach it) is a bug of whoever pinned it: nothing is freed then.
   */
  free(): void {
    if (this.#freed) return;
    const pinned = this.view.pinStats.pinnedPages;
    if (pinned !== 0) throw new KernelBug(`guest RAM freed with ${pinned} pages still pinned`);
    this.view.unmap(0, this.bytes);
    this.#release();
  }

  #release(): void {
    for (const b of this.#blocks) this.#pages.freePages(b);
    this.#blocks.length = 0;
    this.#freed = true;
  }
}

/** Fisher–Yates with a xorshift32 stream: the same seed, the same scatter. */
function shuffle(a: number[], seed: number): void {
  let s = (seed >>> 0) || 1;
  const next = (): number => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s;
  };
  for (let i = a.length - 1; i > 0; i--) {
    const j = next() % (i + 1);
    const t = a[i] ?? 0;
    a[i] = a[j] ?? 0;
    a[j] = t;
  }
}
