import { Errno, KernelError } from "@vsva/kernel";

/**
 * The argument checks of VFIO_IOMMU_MAP_DMA and VFIO_IOMMU_UNMAP_DMA that do
 * not need the container's mappings, in the order v5.10's
 * drivers/vfio/vfio_iommu_type1.c applies them (vfio_dma_do_map,
 * vfio_dma_do_unmap). Values arrive as the user's u64s (bigint) and leave as
 * numbers only once they are known to lie in one of the container's IOVA
 * ranges, all of which end below 2^53.
 */

/** An inclusive IOVA range, as VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE reports it. */
export interface IovaRange {
  readonly start: number;
  readonly end: number;
}

const U64_MAX = (1n << 64n) - 1n;

/** The mask of the smallest page size in the bitmap (`1 << __ffs(pgsize_bitmap)` − 1). */
export function minPageMask(pgsizeBitmap: bigint): bigint {
  if (pgsizeBitmap === 0n) return 0n;
  return (pgsizeBitmap & -pgsizeBitmap) - 1n;
}

function inRanges(ranges: readonly IovaRange[], start: bigint, last: bigint): boolean {
  // vfio_iommu_iova_dma_valid: the whole range must sit inside one valid node.
  return ranges.some((r) => BigInt(r.start) <= start && last <= BigInt(r.end));
}

export interface MapArgs {
  readonly vaddr: bigint;
  readonly iova: bigint;
  readonly size: bigint;
  readonly read: boolean;
  readonly write: boolean;
}

/**
 * vfio_dma_do_map's checks before it looks at existing mappings: a
 * permission, a non-zero size, every address and the size aligned to the
 * smallest IOMMU page, no wrap of the IOVA or the user range. EINVAL each.
 */
export function checkMapArgs(a: MapArgs, pgsizeBitmap: bigint): void {
  const mask = minPageMask(pgsizeBitmap);
  if (!a.read && !a.write) throw new KernelError(Errno.EINVAL, "MAP_DMA: neither READ nor WRITE requested");
  if (a.size === 0n) throw new KernelError(Errno.EINVAL, "MAP_DMA: size is 0");
  if (((a.size | a.iova | a.vaddr) & mask) !== 0n) {
    throw new KernelError(Errno.EINVAL, `MAP_DMA: iova 0x${a.iova.toString(16)}, vaddr 0x${a.vaddr.toString(16)} or size 0x${a.size.toString(16)} not aligned to 0x${(mask + 1n).toString(16)}`);
  }
  if (a.iova + a.size - 1n > U64_MAX || a.vaddr + a.size - 1n > U64_MAX) {
    throw new KernelError(Errno.EINVAL, "MAP_DMA: iova or vaddr range wraps");
  }
}

/**
 * After the overlap and entry-limit checks: the range must lie inside one of
 * the container's valid IOVA ranges (reserved regions excluded). EINVAL.
 */
export function checkMapInRanges(a: MapArgs, ranges: readonly IovaRange[]): { iova: number; size: number; vaddr: number } {
  if (!inRanges(ranges, a.iova, a.iova + a.size - 1n)) {
    throw new KernelError(Errno.EINVAL, `MAP_DMA: [0x${a.iova.toString(16)}, +0x${a.size.toString(16)}) is outside the container's IOVA ranges`);
  }
  if (a.vaddr + a.size > BigInt(Number.MAX_SAFE_INTEGER)) {
    // No user mapping reaches that high in the VMM's address space: the pin faults.
    throw new KernelError(Errno.EFAULT, `MAP_DMA: vaddr 0x${a.vaddr.toString(16)} is not mapped`);
  }
  return { iova: Number(a.iova), size: Number(a.size), vaddr: Number(a.vaddr) };
}

/**
 * Clamps a user range to the number line for the overlap search: every
 * mapping lies below 2^53, so clamping both ends keeps the answer exact.
 */
export function clampRange(iova: bigint, size: bigint): { iova: number; size: number } {
  const top = BigInt(Number.MAX_SAFE_INTEGER);
  const start = iova < top ? iova : top;
  const end = iova + size < top ? iova + size : top;
  return { iova: Number(start), size: Number(end - start) };
}

export interface UnmapArgs {
  readonly iova: bigint;
  readonly size: bigint;
  readonly all: boolean;
}

/**
 * vfio_dma_do_unmap's checks (v5.12 for ALL): with ALL, iova and size must be
 * 0; otherwise both aligned to the smallest page, size non-zero, no wrap.
 */
export function checkUnmapArgs(a: UnmapArgs, pgsizeBitmap: bigint): void {
  if (a.all) {
    if (a.iova !== 0n || a.size !== 0n) throw new KernelError(Errno.EINVAL, "UNMAP_DMA: FLAG_ALL with a non-zero iova or size");
    return;
  }
  const mask = minPageMask(pgsizeBitmap);
  if ((a.iova & mask) !== 0n) throw new KernelError(Errno.EINVAL, `UNMAP_DMA: iova 0x${a.iova.toString(16)} not aligned to 0x${(mask + 1n).toString(16)}`);
  if (a.size === 0n || (a.size & mask) !== 0n) throw new KernelError(Errno.EINVAL, `UNMAP_DMA: size 0x${a.size.toString(16)} is 0 or not aligned`);
  if (a.iova + a.size - 1n > U64_MAX) throw new KernelError(Errno.EINVAL, "UNMAP_DMA: range wraps");
}
