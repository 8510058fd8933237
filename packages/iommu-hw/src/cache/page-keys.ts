/**
 * Keys of a translation cache that holds 4 KiB, 2 MiB and 1 GiB entries in
 * one {@link TaggedLru} per tag (the VT-d IOTLB and the SMMUv3 TLB alike).
 *
 * An entry's key is its page number in units of its own size, times 4, plus
 * a size code (0: 4 KiB, 1: 2 MiB, 2: 1 GiB). A lookup for a 4 KiB page
 * probes the three keys that could cover it, smallest first; nothing scans.
 * Both units use these, so their lookup order and range invalidations are
 * one piece of code.
 */
import type { ReadonlyNodeIndex } from "./node-index.js";
import type { TaggedLru } from "./tagged-lru.js";

const PAGE = 4096;
/** The entry sizes, as shifts in 4 KiB pages: 4 KiB, 2 MiB, 1 GiB. */
const SIZE_SHIFTS = [0, 9, 18] as const;
const PAGES_2M = 2 ** 9;
const PAGES_1G = 2 ** 18;
/** Above this many keys, a range invalidation filters its tag instead of probing key by key. */
const PROBE_LIMIT = 64;

/** The key of the entry of size code `sizeCode` that covers 4 KiB page `pfn`. */
export const pageKey = (pfn: number, sizeCode: number): number => Math.floor(pfn / 2 ** (SIZE_SHIFTS[sizeCode] ?? 0)) * 4 + sizeCode;

/** The size code an entry of `size` bytes is kept under: 2 from 1 GiB up, 1 from 2 MiB up, else 0. */
export const sizeCodeOf = (size: number): number => (size >= 2 ** 30 ? 2 : size >= 2 ** 21 ? 1 : 0);

/** The entry covering 4 KiB page `pfn` in one tag's entries (a `TaggedLru.keysOf` handle), smallest size first, counting nothing. */
export function probePageKeys<N extends object>(keys: ReadonlyNodeIndex<N>, pfn: number): N | undefined {
  return keys.get(pfn * 4) ?? keys.get(Math.floor(pfn / PAGES_2M) * 4 + 1) ?? keys.get(Math.floor(pfn / PAGES_1G) * 4 + 2);
}

/** An entry's input range, for a range invalidation that filters a whole tag. */
interface Ranged {
  readonly inputBase: number;
  readonly size: number;
}

/**
 * Removes `tag`'s entries that overlap 4 KiB pages [pfn, pfn + count): key by
 * key while that is at most {@link PROBE_LIMIT} probes, else by filtering the
 * tag's entries (which touches that tag alone). Returns how many went.
 */
export function invalidatePageRange<V extends Ranged, M>(lru: TaggedLru<V, M>, tag: number, pfn: number, count: number): number {
  let probes = 0;
  for (const sh of SIZE_SHIFTS) probes += Math.floor((pfn + count - 1) / 2 ** sh) - Math.floor(pfn / 2 ** sh) + 1;
  if (probes > PROBE_LIMIT) {
    return lru.invalidateTag(tag, (_k, e) => {
      const first = Math.floor(e.inputBase / PAGE);
      return first < pfn + count && first + e.size / PAGE > pfn;
    });
  }
  let n = 0;
  for (let c = 0; c < SIZE_SHIFTS.length; c++) {
    const span = 2 ** (SIZE_SHIFTS[c] ?? 0);
    for (let i = Math.floor(pfn / span); i <= Math.floor((pfn + count - 1) / span); i++) if (lru.invalidate(tag, i * 4 + c)) n++;
  }
  return n;
}
