import { TaggedLru } from "../cache/tagged-lru.js";
import { armLevelSize } from "./geometry.js";
import type { ArmTableEntry, ArmWalkCacheLike } from "./types.js";

/** Beyond this many keys per level a range invalidation filters the tag instead of probing key by key. */
const RANGE_PROBE_LIMIT = 64;

const prefix = (addr: number, level: number): number => Math.floor(addr / armLevelSize(level));
// Eight slots per prefix leave room for levels 0..3; the prefix may be negative (TTB1 inputs).
const keyOf = (level: number, addr: number): number => prefix(addr, level) * 8 + level;
const levelOfKey = (k: number): number => ((k % 8) + 8) % 8;

/**
 * An SMMU walk cache (table descriptors, per stage) on {@link TaggedLru}:
 * entries keyed by (tag, Arm level of the descriptor, input prefix). The
 * owner chooses tag and group: for stage 1 the TLB tag (class, VMID, ASID)
 * grouped by (class, VMID); for stage 2 the VMID.
 *
 * Invalidation by range touches only the keys the range covers (or, for a
 * wide range, only the entries of that tag); by tag or group only those.
 */
export class ArmWalkCache implements ArmWalkCacheLike {
  readonly lru: TaggedLru<ArmTableEntry>;

  constructor(name: string, capacity: number, groupOf?: (tag: number) => number) {
    this.lru = new TaggedLru<ArmTableEntry>(name, capacity, groupOf);
  }

  lookup(tag: number, level: number, addr: number): ArmTableEntry | undefined {
    return this.lru.lookup(tag, keyOf(level, addr))?.value;
  }

  insert(tag: number, level: number, addr: number, e: ArmTableEntry): void {
    this.lru.insert(tag, keyOf(level, addr), e);
  }

  get size(): number {
    return this.lru.size;
  }

  /** Drops the entries of `tag` on the path to any address in [addr, addr + size). */
  invalidateRange(tag: number, addr: number, size: number): number {
    if (!(size > 0)) return 0;
    const last = addr + size - 1;
    let n = 0;
    let wide = false;
    for (let level = 0; level <= 2; level++) {
      const first = prefix(addr, level);
      const end = prefix(last, level);
      if (end - first >= RANGE_PROBE_LIMIT) {
        wide = true;
        continue;
      }
      for (let p = first; p <= end; p++) if (this.lru.invalidate(tag, p * 8 + level)) n++;
    }
    if (wide) {
      n += this.lru.invalidateTag(tag, (k) => {
        const level = levelOfKey(k);
        const base = ((k - level) / 8) * armLevelSize(level);
        return base <= last && base + armLevelSize(level) > addr;
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
