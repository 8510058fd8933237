import { type CacheNode, type CacheStats, TaggedLru } from "../cache/tagged-lru.js";
import type { ReadonlyNodeIndex } from "../cache/node-index.js";
import { invalidatePageRange, pageKey, probePageKeys, sizeCodeOf } from "../cache/page-keys.js";
import type { TranslateOk } from "../iommu-port.js";
import { ArmWalkCache } from "../pt-arm/walk-cache.js";
import type { CdInfo, SteInfo } from "./config.js";

/**
 * The SMMU's caches, all on TaggedLru so every selective invalidation
 * touches only its tag or group (never a scan of the whole cache):
 *
 * - STE cache: tag = StreamID (all in group 0, so a range can list the
 *   cached StreamIDs without touching their entries);
 * - CD cache: tag = StreamID, key = SubstreamID;
 * - TLB: leaf translations tagged (class, VMID, ASID), grouped by (class,
 *   VMID), keyed by page and size. Global (nG = 0) stage-1 entries carry
 *   the ASID {@link GLOBAL_ASID} and match any ASID;
 * - stage-1 walk cache tagged like the TLB; stage-2 walk cache by VMID.
 *
 * Classes keep apart what the TLBI commands treat differently (SMMUv3 spec chapter 4):
 * `S1` NS-EL1 stage-1-only, `NESTED` combined stage 1 + 2, `S2` IPA → PA
 * (stage-2-only streams and the stage 2 of nested walks share it: one VMID
 * has one stage-2 table), `EL2` EL2 stream-world stage 1.
 */
export const TlbClass = { S1: 0, NESTED: 1, S2: 2, EL2: 3 } as const;
export type TlbClassValue = (typeof TlbClass)[keyof typeof TlbClass];

const VMID_SPAN = 2 ** 16;
const ASID_SPAN = 2 ** 17;
export const GLOBAL_ASID = 2 ** 16;

export const tlbTag = (cls: number, vmid: number, asid: number): number => (cls * VMID_SPAN + vmid) * ASID_SPAN + asid;
export const tlbGroup = (cls: number, vmid: number): number => cls * VMID_SPAN + vmid;
const groupOfTag = (tag: number): number => Math.floor(tag / ASID_SPAN);

/** A cached leaf translation. */
export interface TlbEntry {
  /** Output address of the page's first byte. */
  readonly pageBase: number;
  readonly size: number;
  /** Perm bits (pt-arm/types.ts), both stages ANDed. */
  readonly perms: number;
  readonly inputBase: number;
  readonly cls: TlbClassValue;
  readonly vmid: number;
  readonly asid: number;
  /** The request that filled it, for a cache-bypassing re-walk: StreamID (−1 for nested stage-2 entries) and SubstreamID (−1 for none). */
  readonly sid: number;
  readonly ssid: number;
}

/**
 * A TLB entry's node. Its memo is the `translate()` answer last given from it
 * (a frozen {@link TranslateOk}), keyed by the input address (`memoKey`) and
 * the request's privilege (`memoAux`: 1 privileged, 0 not), the two things
 * besides the entry that answer depends on.
 */
export type TlbNode = CacheNode<TlbEntry, TranslateOk>;

export interface SmmuCacheCapacities {
  readonly ste: number;
  readonly cd: number;
  readonly tlb: number;
  readonly s1WalkCache: number;
  readonly s2WalkCache: number;
}

export const DEFAULT_SMMU_CACHES: SmmuCacheCapacities = { ste: 256, cd: 1024, tlb: 4096, s1WalkCache: 1024, s2WalkCache: 1024 };

const PAGE = 4096;

/** TLB keys: 4 KiB, 2 MiB and 1 GiB entries side by side in a tag (`cache/page-keys.ts`). */
export const tlbKey = pageKey;
export { sizeCodeOf };

/** The TLB node for 4 KiB page `pfn` in one tag's entries (a `TaggedLru.keysOf` handle), probing the page sizes in {@link SmmuCaches.lookupTag}'s order, counting nothing. */
export const probeTlbKeys: (keys: ReadonlyNodeIndex<TlbNode>, pfn: number) => TlbNode | undefined = probePageKeys;

export class SmmuCaches {
  readonly ste: TaggedLru<SteInfo>;
  readonly cd: TaggedLru<CdInfo>;
  readonly tlb: TaggedLru<TlbEntry, TranslateOk>;
  readonly s1wc: ArmWalkCache;
  readonly s2wc: ArmWalkCache;
  /**
   * The TLB's handle on the tag last looked up (`TaggedLru.keysOf`): a run of
   * lookups in one ASID finds its entries without finding the tag again. A
   * handle whose tag emptied is empty for good, so an empty one is re-taken.
   */
  #lastTag = -1;
  #lastKeys: ReadonlyNodeIndex<TlbNode> | undefined = undefined;

  constructor(cap: SmmuCacheCapacities) {
    this.ste = new TaggedLru<SteInfo>("STE cache", cap.ste, () => 0);
    this.cd = new TaggedLru<CdInfo>("CD cache", cap.cd, () => 0);
    // CLOCK replacement: the SMMUv3 spec says what a TLB may hold and how the TLBI commands
    // (chapter 4) remove it, not which entry a full TLB gives up, so models choose (gem5's
    // src/dev/arm/smmu_v3_caches.hh offers round-robin, random or LRU); a hit then costs a
    // reference bit, not a list move.
    this.tlb = new TaggedLru<TlbEntry, TranslateOk>("TLB", cap.tlb, groupOfTag, "clock");
    this.s1wc = new ArmWalkCache("stage-1 walk cache", cap.s1WalkCache, groupOfTag);
    this.s2wc = new ArmWalkCache("stage-2 walk cache", cap.s2WalkCache, (t) => t);
  }

  stats(): Record<"ste" | "cd" | "tlb" | "s1WalkCache" | "s2WalkCache", CacheStats> {
    return { ste: this.ste.stats, cd: this.cd.stats, tlb: this.tlb.stats, s1WalkCache: this.s1wc.lru.stats, s2WalkCache: this.s2wc.lru.stats };
  }

  // --- configuration caches --------------------------------------------------------------

  /** CFGI_STE / STE_RANGE / ALL: StreamIDs in [first, last]. A CD is cached in terms of the STE that located it, so its CDs go too (our reading of the spec; Linux relies on it when it repoints S1ContextPtr). */
  invalidateStes(first: number, last: number): number {
    let n = 0;
    if (last - first < 64) {
      for (let sid = first; sid <= last; sid++) n += this.ste.invalidateTag(sid) + this.cd.invalidateTag(sid);
      return n;
    }
    for (const sid of this.ste.tagsOf(0)) if (sid >= first && sid <= last) n += this.ste.invalidateTag(sid);
    for (const sid of this.cd.tagsOf(0)) if (sid >= first && sid <= last) n += this.cd.invalidateTag(sid);
    return n;
  }

  // --- TLB lookups ------------------------------------------------------------------------

  /**
   * Probes the three page sizes in `tag`: one lookup, counted once as a hit
   * (and bumped) or a miss. The tag's entries are taken once (`keysOf`) and
   * probed directly: three `TaggedLru.lookup` calls would each find the tag
   * again and count a miss per size.
   */
  lookupTag(tag: number, pfn: number): TlbNode | undefined {
    const lru = this.tlb;
    let keys = this.#lastTag === tag ? this.#lastKeys : undefined;
    if (keys === undefined || keys.size === 0) {
      keys = lru.keysOf(tag);
      this.#lastTag = tag;
      this.#lastKeys = keys;
    }
    const node = keys === undefined ? undefined : probeTlbKeys(keys, pfn);
    if (node === undefined) {
      lru.stats.misses++;
      return undefined;
    }
    lru.noteHit(node);
    return node;
  }

  /** A stage-1 (or combined) lookup: the ASID's own entries, then the global ones. */
  lookupS1(cls: number, vmid: number, asid: number, pfn: number): TlbNode | undefined {
    const own = this.lookupTag(tlbTag(cls, vmid, asid), pfn);
    if (own !== undefined) return own;
    const global = this.lookupTag(tlbTag(cls, vmid, GLOBAL_ASID), pfn);
    if (global !== undefined) this.tlb.stats.misses--;
    return global;
  }

  insert(e: TlbEntry): TlbNode {
    return this.tlb.insert(tlbTag(e.cls, e.vmid, e.asid), tlbKey(Math.floor(e.inputBase / PAGE), sizeCodeOf(e.size)), e);
  }

  // --- TLB invalidation (SMMUv3 spec chapter 4) --------------------------------------------------------

  /** TLBI_NH_ALL (and EL2_ALL with cls EL2): every stage-1 and combined entry of the VMID. */
  invalidateVmidS1(classes: readonly number[], vmid: number): number {
    let n = 0;
    for (const cls of classes) n += this.tlb.invalidateGroup(tlbGroup(cls, vmid)) + this.s1wc.invalidateGroup(tlbGroup(cls, vmid));
    return n;
  }

  /** TLBI_NH_ASID / EL2_ASID: non-global entries of one ASID (global ones stay, as TLBI ASIDE1 leaves them). */
  invalidateAsid(classes: readonly number[], vmid: number, asid: number): number {
    let n = 0;
    for (const cls of classes) n += this.tlb.invalidateTag(tlbTag(cls, vmid, asid)) + this.s1wc.invalidateTag(tlbTag(cls, vmid, asid));
    return n;
  }

  /** TLBI_NH_VA / EL2_VA: [addr, addr + size) of one ASID (and the global entries there). `leaf` keeps the walk caches. */
  invalidateVa(classes: readonly number[], vmid: number, asid: number, addr: number, size: number, leaf: boolean): number {
    let n = 0;
    for (const cls of classes) {
      n += this.#invalidateRange(tlbTag(cls, vmid, asid), addr, size) + this.#invalidateRange(tlbTag(cls, vmid, GLOBAL_ASID), addr, size);
      if (!leaf) n += this.s1wc.invalidateRange(tlbTag(cls, vmid, asid), addr, size);
    }
    return n;
  }

  /** TLBI_NH_VAA / EL2_VAA: [addr, addr + size) of every ASID of the VMID. */
  invalidateVaAllAsids(classes: readonly number[], vmid: number, addr: number, size: number, leaf: boolean): number {
    let n = 0;
    for (const cls of classes) {
      for (const tag of this.tlb.tagsOf(tlbGroup(cls, vmid))) n += this.#invalidateRange(tag, addr, size);
      if (!leaf) for (const tag of this.s1wc.lru.tagsOf(tlbGroup(cls, vmid))) n += this.s1wc.invalidateRange(tag, addr, size);
    }
    return n;
  }

  /** TLBI_S12_VMALL: every stage-1, combined and stage-2 entry of the VMID, walk caches included. */
  invalidateVmidAll(vmid: number): number {
    let n = this.invalidateVmidS1([TlbClass.S1, TlbClass.NESTED], vmid);
    n += this.tlb.invalidateGroup(tlbGroup(TlbClass.S2, vmid)) + this.s2wc.invalidateGroup(vmid);
    return n;
  }

  /**
   * TLBI_S2_IPA: stage-2 entries for [ipa, ipa + size). Combined entries and
   * the stage-1 walk-cache entries that hold stage-2 results are not named
   * by an IPA: as the architecture says, software follows with TLBI_NH_ALL
   * or TLBI_S12_VMALL for them (SMMUv3 spec chapter 4; Linux does).
   */
  invalidateIpa(vmid: number, ipa: number, size: number, leaf: boolean): number {
    let n = this.#invalidateRange(tlbTag(TlbClass.S2, vmid, 0), ipa, size);
    if (!leaf) n += this.s2wc.invalidateRange(vmid, ipa, size);
    return n;
  }

  invalidateAllTranslations(): number {
    return this.tlb.invalidateAll() + this.s1wc.invalidateAll() + this.s2wc.invalidateAll();
  }

  #invalidateRange(tag: number, addr: number, size: number): number {
    const pfn = Math.floor(addr / PAGE);
    return invalidatePageRange(this.tlb, tag, pfn, Math.max(1, Math.ceil((addr + size) / PAGE) - pfn));
  }
}
