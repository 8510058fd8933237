import { LevelPrefixCache, type LevelGeometry } from "../cache/level-prefix-cache.js";
import { levelSize, type PagingStructureCache, type PscEntry } from "@vsva/pgtable";

/** x86-64 and VT-d second-level tables: levels 1 (4 KiB leaves) to 5; non-leaf entries live at 2..5. */
const TABLE_LEVELS = [2, 3, 4, 5] as const;
const X86_WALK_GEOMETRY: LevelGeometry = { levelSize, tableLevels: TABLE_LEVELS };

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
 * then, as hardware does):
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
export class WalkCache extends LevelPrefixCache<PscEntry> implements PagingStructureCache {
  constructor(name: string, capacity: number, groupOf?: (tag: number) => number) {
    super(name, capacity, X86_WALK_GEOMETRY, groupOf);
  }

  /** Drops the entries of `tag` that translate any address in [addr, addr + size), at levels 2..`maxLevel`. */
  override invalidateRange(tag: number, addr: number, size: number, maxLevel: number | readonly number[] = 5): number {
    const levels = typeof maxLevel === "number" ? TABLE_LEVELS.filter((l) => l <= maxLevel) : maxLevel;
    return super.invalidateRange(tag, addr, size, levels);
  }
}
