import { Errno, KernelError } from "@vsva/kernel";
import type { DmaTree, VfioDma } from "./dma-tree.js";

/**
 * Which mappings an UNMAP_DMA of [iova, iova + size) removes, for a type1v2
 * (or nesting) container (v5.10 vfio_dma_do_unmap). A v2 unmap never splits
 * a mapping: if the range starts inside one (not at its iova) or ends inside
 * one (not at its end), the call is EINVAL and nothing is unmapped. Mappings
 * wholly inside the range go; holes in it are fine.
 */
export function planUnmap<T extends VfioDma>(tree: DmaTree<T>, iova: number, size: number): T[] {
  const first = tree.find(iova, 0);
  if (first !== undefined && first.iova !== iova) {
    throw new KernelError(Errno.EINVAL, `UNMAP_DMA: 0x${iova.toString(16)} starts inside the mapping at 0x${first.iova.toString(16)}`);
  }
  const last = tree.find(iova + size - 1, 0);
  if (last !== undefined && last.iova + last.size !== iova + size) {
    throw new KernelError(Errno.EINVAL, `UNMAP_DMA: 0x${(iova + size).toString(16)} ends inside the mapping at 0x${last.iova.toString(16)}`);
  }
  return tree.within(iova, size);
}

/**
 * The same for a type1 (v1) container: every mapping the range touches goes
 * whole, even past the range's end, except that the walk stops at a mapping
 * starting before `iova` (v1 allowed partial unmaps and reported the bytes).
 */
export function planUnmapV1<T extends VfioDma>(tree: DmaTree<T>, iova: number, size: number): T[] {
  const out: T[] = [];
  for (const d of tree.entries()) {
    if (d.iova + d.size <= iova || d.iova >= iova + size) continue;
    if (d.iova < iova) break;
    out.push(d);
  }
  return out;
}
