import { TaggedLru } from "../cache/tagged-lru.js";
import { levelPrefix, levelSize } from "./geometry.js";
import type { PagingStructureCache, PscEntry } from "./types.js";

/** Beyond this many keys per level a range invalidation filters the tag instead of probing key by key. */
const RANGE_PROBE_LIMIT = 64;

function key(level: number, addr: number): number {
  // The prefix may be negative (upper-half VAs); 8 slots leave room for levels 1..7.
  return levelPrefix(addr, level) * 8 + level;
}

function keyLevel(k: number): number {
  return ((k % 8) + 8) % 8;
}

/**
 * A paging-structure cache (VT-d "PML5/PML4/PDPE/PDE caches", SDM §4.10.3)
 * on {@link TaggedLru}: non-leaf entries keyed by (tag, level, address
 * prefix). One instance serves one stage; the walkers probe it deepest
 * level first, so a hit on the PDE entry leaves one entry read to reach a
 * 4 KiB leaf.
 *
 * The owner (the VT-d unit) chooses the tag and the group:
 * - first level: tag = DID and PASID folded, group = DID;
 * - second level: tag = group = DID (second-level tables are per domain).
 *
 * How invalidation must use it (VT-d 6.5.2; a stale entry is served until
 * then, DESIGN.md rule 2):
 * - PASID-based IOTLB invalidation, page-selective with IH=0:
 *   `invalidateRange(tag, addr, size)`; with IH=1 (only leaves changed) the
 *   paging-structure caches are left alone.
 * - PASID-selective: `invalidateTag(tag)`; domain-selective: `invalidateGroup(did)`;
 *   global: `invalidateAll()`.
 * - A nested first-level entry caches the host-physical address of the next
 *   table, i.e. it depends on the second level. So any second-level
 *   invalidation of a domain must also drop the first-level entries of every
 *   nested PASID of that domain (`invalidateGroup(did)` on the first-level cache).
 */
export class WalkCache implements PagingStructureCache {
  readonly lru: TaggedLru<PscEntry>;

  constructor(name: string, capacity: number, groupOf?: (tag: number) => number) {
    this.lru = new TaggedLru<PscEntry>(name, capacity, groupOf);
  }

  lookup(tag: number, level: number, addr: number): PscEntry | undefined {
    return this.lru.lookup(tag, key(level, addr))?.value;
  }

  insert(tag: number, level: number, addr: number, entry: PscEntry): void {
    this.lru.insert(tag, key(level, addr), entry);
  }

  get size(): number {
    return this.lru.size;
  }

  /** Drops the entries of `tag` that translate any address in [addr, addr + size). Returns how many. */
  invalidateRange(tag: number, addr: number, size: number, maxLevel = 5): number {
    if (!(size > 0)) return 0;
    const last = addr + size - 1;
    let n = 0;
    let wide = false;
    for (let level = 2; level <= maxLevel; level++) {
      const first = levelPrefix(addr, level);
      const end = levelPrefix(last, level);
      if (end - first >= RANGE_PROBE_LIMIT) {
        wide = true;
        continue;
      }
      for (let p = first; p <= end; p++) if (this.lru.invalidate(tag, p * 8 + level)) n++;
    }
    if (wide) {
      n += this.lru.invalidateTag(tag, (k) => {
        const level = keyLevel(k);
        const base = ((k - level) / 8) * levelSize(level);
        return base <= last && base + levelSize(level) > addr;
      });
    }
    return n;
  }

  invalidateTag(tag: number): number {
    return this.lru.invalidateTag(tag);
  }

  invalidateGroup(group: number): number {
    return this.lru.invalidateGroup(group);
  }

  invalidateAll(): number {
    return this.lru.invalidateAll();
  }
}
