import type { PhysMem } from "@vsva/pgtable";
import type { PageBacking } from "../page-alloc.js";

const ZERO_CHUNK = 64 * 1024;

/**
 * Zeroes pages the allocator hands out in real physical memory, so the mm's
 * page tables and user pages start empty in the memory the IOMMU walks.
 */
export class PhysMemBacking implements PageBacking {
  readonly #mem: PhysMem;
  readonly #zeros = new Uint8Array(ZERO_CHUNK);

  constructor(mem: PhysMem) {
    this.#mem = mem;
  }

  zero(pa: number, len: number): boolean {
    for (let off = 0; off < len; off += ZERO_CHUNK) {
      const n = Math.min(ZERO_CHUNK, len - off);
      if (!this.#mem.writeBytes(pa + off, n === ZERO_CHUNK ? this.#zeros : this.#zeros.subarray(0, n))) return false;
    }
    return true;
  }
}
