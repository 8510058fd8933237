import { KernelBug } from "@vsva/kernel";

/**
 * The container's DMA mappings (`struct vfio_dma` in a tree keyed by IOVA,
 * drivers/vfio/vfio_iommu_type1.c: vfio_find_dma / vfio_link_dma). Mappings
 * never overlap, so ordering by start is a total order: a sorted array with
 * binary search answers "which mapping covers or first meets this range".
 *
 * Addresses are numbers: the container checks every user value against its
 * IOVA ranges (all below 2^53) before it gets here.
 */
export interface VfioDma {
  readonly iova: number;
  readonly size: number;
  /** The user (VMM) address the range was pinned from. */
  readonly vaddr: number;
  readonly read: boolean;
  readonly write: boolean;
}

export class DmaTree<T extends VfioDma = VfioDma> {
  readonly #byIova: T[] = [];

  get count(): number {
    return this.#byIova.length;
  }

  /** Mappings in IOVA order (a copy). */
  entries(): readonly T[] {
    return [...this.#byIova];
  }

  /** First index whose mapping ends after `addr`. */
  #firstEndingAfter(addr: number): number {
    let lo = 0;
    let hi = this.#byIova.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const d = this.#byIova[mid];
      if (d !== undefined && d.iova + d.size <= addr) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /**
   * `vfio_find_dma(iova, size)`: the lowest mapping that intersects
   * [iova, iova + size), or undefined. With size 0 it is the mapping that
   * contains `iova` itself (the v2 unmap's "does the range start inside one").
   */
  find(iova: number, size: number): T | undefined {
    const d = this.#byIova[this.#firstEndingAfter(iova)];
    if (d === undefined) return undefined;
    const end = size === 0 ? iova + 1 : iova + size;
    return d.iova < end ? d : undefined;
  }

  /** Links a mapping; the caller has checked with `find` that nothing overlaps. */
  insert(dma: T): void {
    const at = this.#firstEndingAfter(dma.iova);
    const next = this.#byIova[at];
    if (next !== undefined && next.iova < dma.iova + dma.size) {
      throw new KernelBug(`vfio_dma [${dma.iova}, +${dma.size}) overlaps [${next.iova}, +${next.size})`);
    }
    this.#byIova.splice(at, 0, dma);
  }

  remove(dma: T): void {
    const at = this.#firstEndingAfter(dma.iova);
    if (this.#byIova[at] !== dma) throw new KernelBug(`vfio_dma at ${dma.iova} is not linked`);
    this.#byIova.splice(at, 1);
  }

  /** Mappings wholly inside [iova, iova + size), in IOVA order. */
  within(iova: number, size: number): T[] {
    const out: T[] = [];
    for (let i = this.#firstEndingAfter(iova); i < this.#byIova.length; i++) {
      const d = this.#byIova[i];
      if (d === undefined || d.iova >= iova + size) break;
      if (d.iova >= iova && d.iova + d.size <= iova + size) out.push(d);
    }
    return out;
  }
}
