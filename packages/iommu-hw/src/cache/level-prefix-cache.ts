import { TaggedLru } from "./tagged-lru.js";

/**
 * A walk cache for any radix page-table format: entries keyed by (tag,
 * level, input-address prefix at that level) on {@link TaggedLru}. The
 * format supplies its geometry; the owner chooses tags and groups. VT-d's
 * paging-structure caches and the SMMU's walk caches are both this.
 *
 * Invalidation by range touches only the keys the range covers at each
 * table level (or, for a range wider than {@link RANGE_PROBE_LIMIT} entries
 * at a level, only the entries of that tag); by tag or group, only those.
 */
export interface LevelGeometry {
  /** Bytes one entry at `level` maps. */
  levelSize(level: number): number;
  /** The levels whose entries point to tables (what the cache holds), in any order. */
  readonly tableLevels: readonly number[];
}

/** Beyond this many keys per level a range invalidation filters the tag instead of probing key by key. */
const RANGE_PROBE_LIMIT = 64;
/** Eight key slots per prefix: levels 0..7. The prefix may be negative (upper-half inputs). */
const LEVEL_SLOTS = 8;

export class LevelPrefixCache<V> {
  readonly lru: TaggedLru<V>;

  constructor(
    name: string,
    capacity: number,
    private readonly geometry: LevelGeometry,
    groupOf?: (tag: number) => number,
  ) {
    this.lru = new TaggedLru<V>(name, capacity, groupOf);
  }

  #key(level: number, addr: number): number {
    return Math.floor(addr / this.geometry.levelSize(level)) * LEVEL_SLOTS + level;
  }

  lookup(tag: number, level: number, addr: number): V | undefined {
    return this.lru.lookup(tag, this.#key(level, addr))?.value;
  }

  insert(tag: number, level: number, addr: number, entry: V): void {
    this.lru.insert(tag, this.#key(level, addr), entry);
  }

  get size(): number {
    return this.lru.size;
  }

  /** Drops the entries of `tag` on the path to any address in [addr, addr + size) at `levels`. Returns how many. */
  invalidateRange(tag: number, addr: number, size: number, levels: readonly number[] = this.geometry.tableLevels): number {
    if (!(size > 0)) return 0;
    const g = this.geometry;
    const last = addr + size - 1;
    let n = 0;
    let wide = false;
    for (const level of levels) {
      const first = Math.floor(addr / g.levelSize(level));
      const end = Math.floor(last / g.levelSize(level));
      if (end - first >= RANGE_PROBE_LIMIT) {
        wide = true;
        continue;
      }
      for (let p = first; p <= end; p++) if (this.lru.invalidate(tag, p * LEVEL_SLOTS + level)) n++;
    }
    if (wide) {
      n += this.lru.invalidateTag(tag, (k) => {
        const level = ((k % LEVEL_SLOTS) + LEVEL_SLOTS) % LEVEL_SLOTS;
        if (!levels.includes(level)) return false;
        const span = g.levelSize(level);
        const base = ((k - level) / LEVEL_SLOTS) * span;
        return base <= last && base + span > addr;
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
