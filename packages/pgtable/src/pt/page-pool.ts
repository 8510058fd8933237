import { Errno, KernelError } from "@vsva/kernel";
import type { PhysMem } from "../mem/phys-mem.js";

/**
 * A simple table-page pool over a range of physical memory: hands out
 * zeroed 4 KiB pages, takes them back, and runs dry at the end of the range.
 * For tests, benchmarks and any owner of tables that has no allocator of its
 * own. Pages come out in ascending order, so layouts are deterministic.
 */
export class PagePool {
  readonly #mem: PhysMem;
  readonly #end: number;
  #next: number;
  readonly #freed: number[] = [];
  #inUse = 0;

  constructor(mem: PhysMem, base: number, size: number) {
    if (!Number.isInteger(base) || !Number.isInteger(size) || base % 4096 !== 0 || size % 4096 !== 0 || size <= 0) {
      throw new KernelError(Errno.EINVAL, `page pool [0x${base.toString(16)}, +0x${size.toString(16)}) must be non-empty and 4 KiB aligned`);
    }
    this.#mem = mem;
    this.#next = base;
    this.#end = base + size;
  }

  /** Pages handed out and not yet returned. */
  get inUse(): number {
    return this.#inUse;
  }

  /** A zeroed page, or null when the pool is exhausted. Usable as a `PageAllocator`. */
  readonly alloc = (): number | null => {
    let p = this.#freed.pop();
    if (p === undefined) {
      if (this.#next >= this.#end) return null;
      p = this.#next;
      this.#next += 4096;
    }
    // Zero it: a recycled page holds old entries, and "zeroed" is the allocator contract.
    if (!this.#mem.writeBytes(p, new Uint8Array(4096))) return null;
    this.#inUse++;
    return p;
  };

  readonly free = (pa: number): void => {
    this.#freed.push(pa);
    this.#inUse--;
  };
}
