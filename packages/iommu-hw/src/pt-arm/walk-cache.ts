import { LevelPrefixCache, type LevelGeometry } from "../cache/level-prefix-cache.js";
import { armLevelSize, type ArmTableEntry, type ArmWalkCacheLike } from "@vsva/pgtable";

/** VMSAv8-64 with the 4 KiB granule: table descriptors at levels 0..2 (level 3 holds only pages). */
const ARM_WALK_GEOMETRY: LevelGeometry = { levelSize: armLevelSize, tableLevels: [0, 1, 2] };

/**
 * An SMMU walk cache (table descriptors, per stage) on {@link TaggedLru}:
 * entries keyed by (tag, Arm level of the descriptor, input prefix). The
 * owner chooses tag and group: for stage 1 the TLB tag (class, VMID, ASID)
 * grouped by (class, VMID); for stage 2 the VMID.
 *
 * Invalidation by range touches only the keys the range covers (or, for a
 * wide range, only the entries of that tag); by tag or group only those.
 */
export class ArmWalkCache extends LevelPrefixCache<ArmTableEntry> implements ArmWalkCacheLike {
  constructor(name: string, capacity: number, groupOf?: (tag: number) => number) {
    super(name, capacity, ARM_WALK_GEOMETRY, groupOf);
  }
}
