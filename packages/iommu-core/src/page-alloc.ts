import { Errno, type FaultInjector, KernelBug, KernelError } from "@vsva/kernel";

/**
 * The little of physical memory the page allocator needs: zeroing a freshly
 * allocated range. Defined here so iommu-core needs no hardware import; the
 * host wires it to pgtable's SparseMemory (a guest, to its RAM view).
 * Returns false when the range is not backed (an abort), as PhysMem does.
 */
export interface PageBacking {
  zero(pa: number, len: number): boolean;
}

export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 1 << PAGE_SHIFT;
/** The largest contiguous allocation, as MAX_ORDER-1 of a 4 KiB-page kernel (4 MiB). */
export const MAX_PAGE_ORDER = 10;

export interface PageAllocatorOptions {
  /** First byte of the pool; page aligned. */
  readonly base: number;
  /** Pool size in bytes; a whole number of pages. */
  readonly size: number;
  readonly backing: PageBacking;
  readonly faults: FaultInjector;
  /** The fault-injection point every allocation passes (default `iommu.page-alloc`). */
  readonly faultPoint?: string;
}

export interface LivePage {
  readonly pa: number;
  readonly order: number;
  /** Who allocated it ("vtd.pasid-table", "mock.pt"...), for leak reports. */
  readonly tag: string;
}

export interface PageAllocatorStats {
  readonly livePages: number;
  readonly peakPages: number;
  readonly allocs: number;
  readonly frees: number;
  readonly failed: number;
}

/**
 * `alloc_pages()`/`__free_pages()` for what the IOMMU layers put in memory:
 * page tables, PASID tables, queues. Blocks of 2^order pages, naturally
 * aligned, zeroed. Every allocation first passes a fault-injection point, so a
 * fail-nth sweep reaches every page allocation; live pages are counted and
 * listed so a teardown can assert that everything allocated was freed.
 *
 * First fit over a page bitmap, deterministic. The scan starts at the lowest
 * page that may be free (every page below it is in use), which gives the same
 * block as a scan from the start, so building a host with many devices and
 * processes costs linear, not quadratic, time.
 */
export class PageAllocator {
  readonly base: number;
  readonly pages: number;
  readonly #used: Uint8Array;
  readonly #live = new Map<number, LivePage>();
  readonly #backing: PageBacking;
  readonly #faults: FaultInjector;
  readonly #point: string;
  /** Every page below this index is in use. */
  #lowestFree = 0;
  #livePages = 0;
  #peak = 0;
  #allocs = 0;
  #frees = 0;
  #failed = 0;

  constructor(opts: PageAllocatorOptions) {
    if (!Number.isSafeInteger(opts.base) || opts.base < 0 || opts.base % PAGE_SIZE !== 0) {
      throw new KernelError(Errno.EINVAL, `page pool base ${opts.base} is not a page-aligned address`);
    }
    if (!Number.isSafeInteger(opts.size) || opts.size <= 0 || opts.size % PAGE_SIZE !== 0) {
      throw new KernelError(Errno.EINVAL, `page pool size ${opts.size} is not a positive whole number of pages`);
    }
    this.base = opts.base;
    this.pages = opts.size / PAGE_SIZE;
    this.#used = new Uint8Array(this.pages);
    this.#backing = opts.backing;
    this.#faults = opts.faults;
    this.#point = opts.faultPoint ?? "iommu.page-alloc";
  }

  /**
   * Allocates 2^order zeroed pages aligned to their size; returns the physical
   * address. ENOMEM when injected, when the pool has no such block, or when
   * the backing cannot be written (the pages are given back first).
   */
  allocPages(order: number, tag: string): number {
    if (!Number.isInteger(order) || order < 0 || order > MAX_PAGE_ORDER) {
      throw new KernelError(Errno.EINVAL, `page order ${order} outside 0..${MAX_PAGE_ORDER}`);
    }
    try {
      this.#faults.inject(this.#point);
    } catch (e) {
      this.#failed++;
      throw e;
    }
    const n = 1 << order;
    const first = this.#findFree(n);
    if (first < 0) {
      this.#failed++;
      throw new KernelError(Errno.ENOMEM, `no free block of ${n} pages for ${tag}`);
    }
    const pa = this.base + first * PAGE_SIZE;
    if (!this.#backing.zero(pa, n * PAGE_SIZE)) {
      this.#failed++;
      throw new KernelError(Errno.ENOMEM, `pages at 0x${pa.toString(16)} are not backed`);
    }
    this.#used.fill(1, first, first + n);
    while (this.#lowestFree < this.pages && this.#used[this.#lowestFree] !== 0) this.#lowestFree++;
    this.#live.set(pa, { pa, order, tag });
    this.#livePages += n;
    this.#peak = Math.max(this.#peak, this.#livePages);
    this.#allocs++;
    return pa;
  }

  allocPage(tag: string): number {
    return this.allocPages(0, tag);
  }

  /** Frees a block by the address allocPages returned. A double or foreign free is a kernel bug (bad_page). */
  freePages(pa: number): void {
    const live = this.#live.get(pa);
    if (live === undefined) throw new KernelBug(`freeing 0x${pa.toString(16)}, which is not an allocated block`);
    const n = 1 << live.order;
    const first = (pa - this.base) / PAGE_SIZE;
    this.#used.fill(0, first, first + n);
    this.#lowestFree = Math.min(this.#lowestFree, first);
    this.#live.delete(pa);
    this.#livePages -= n;
    this.#frees++;
  }

  get stats(): PageAllocatorStats {
    return { livePages: this.#livePages, peakPages: this.#peak, allocs: this.#allocs, frees: this.#frees, failed: this.#failed };
  }

  /** Blocks still allocated, in address order. */
  live(): LivePage[] {
    return [...this.#live.values()].sort((a, b) => a.pa - b.pa);
  }

  owns(pa: number): boolean {
    return this.#live.has(pa);
  }

  #findFree(n: number): number {
    // A naturally aligned block starting below the aligned-down hint ends at or below the hint: all used.
    for (let i = this.#lowestFree - (this.#lowestFree % n); i + n <= this.pages; i += n) {
      let free = true;
      for (let j = i; j < i + n; j++) {
        if (this.#used[j] !== 0) {
          free = false;
          break;
        }
      }
      if (free) return i;
    }
    return -1;
  }
}
