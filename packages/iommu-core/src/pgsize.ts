import { Errno, KernelError } from "@vsva/kernel";

/**
 * Page-size arithmetic of the core (`iommu_pgsize` in iommu.c). Addresses are
 * JS numbers (exact up to 2^53), so alignment is `%`, never 32-bit bitwise ops.
 */

/** The page sizes of a pgsize bitmap, ascending. Bits above 52 cannot be addresses here. */
export function pgsizesFromBitmap(bitmap: number): number[] {
  if (!Number.isSafeInteger(bitmap) || bitmap <= 0) throw new KernelError(Errno.EINVAL, `pgsize bitmap ${bitmap} has no page size`);
  const sizes: number[] = [];
  let rest = bitmap;
  for (let size = 1; rest > 0; size *= 2) {
    if (rest % 2 === 1) sizes.push(size);
    rest = Math.floor(rest / 2);
  }
  return sizes;
}

export interface PgsizeChoice {
  readonly pgsize: number;
  readonly count: number;
}

/**
 * Chooses the page size for the next chunk of a map or unmap: the largest
 * supported size that fits `size` and to which both `iova` and `paddr` are
 * aligned; and how many of them to do before a larger size becomes possible
 * (stop at the next larger page's boundary when iova and paddr are equally
 * offset within it and the rest of the range holds at least one such page).
 * `sizes` ascending; the caller has checked alignment to the smallest.
 */
export function iommuPgsize(sizes: readonly number[], iova: number, paddr: number, size: number): PgsizeChoice {
  let idx = -1;
  for (let i = sizes.length - 1; i >= 0; i--) {
    const s = sizes[i] ?? 0;
    if (s <= size && iova % s === 0 && paddr % s === 0) {
      idx = i;
      break;
    }
  }
  const pgsize = sizes[idx] ?? 0;
  // The caller validated alignment to the smallest page; reaching here is a core bug (BUG_ON(!pgsizes)).
  if (pgsize === 0) throw new KernelError(Errno.EINVAL, `no page size fits iova 0x${iova.toString(16)} size 0x${size.toString(16)}`);
  let span = size;
  const next = sizes[idx + 1];
  if (next !== undefined && (iova - paddr) % next === 0) {
    const offset = next - (iova % next);
    if (offset + next <= size) span = offset;
  }
  return { pgsize, count: Math.floor(span / pgsize) };
}
