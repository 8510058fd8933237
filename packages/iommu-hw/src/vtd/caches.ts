import { type CacheNode, type CacheStats, TaggedLru } from "../cache/tagged-lru.js";
import type { ReadonlyNodeIndex } from "../cache/node-index.js";
import { invalidatePageRange, pageKey, probePageKeys, sizeCodeOf } from "../cache/page-keys.js";
import type { TranslateOk } from "../iommu-port.js";
import type { FirstLevelConfig, SecondLevelConfig } from "@vsva/pgtable";
import { WalkCache } from "../pt/walk-cache.js";

/**
 * The unit's translation caches, all on TaggedLru so that every selective
 * invalidation touches only the entries of its tag or group:
 *
 * - context cache: decoded context entries by source ID;
 * - PASID cache: decoded PASID entries, tagged (DID, PASID), found by (SID, PASID);
 * - IOTLB: leaf translations tagged (class, DID, PASID), keyed by page and size;
 * - first-level paging-structure cache: tagged like the IOTLB;
 * - second-level paging-structure cache: tagged by DID.
 *
 * "Class" separates what the invalidation types treat differently (VT-d §6.5.2 IOTLB descriptor, VT-d §6.5.2 PASID-based-IOTLB descriptor):
 * first-level-only and nested entries go away on PASID-based IOTLB
 * invalidation; second-level-only, nested, and the second-stage translations
 * a nested walk uses go away on (DID-based) IOTLB invalidation. We read VT-d
 * 3.x this way: an IOTLB invalidation leaves first-level-only (PGTT=1)
 * mappings alone, and a PASID-based one leaves second-level-only mappings
 * alone, so a driver that uses the wrong type keeps seeing stale entries.
 * Invalidating more than asked is always allowed; the model does it only
 * where the address cannot be matched (a type-2 page invalidation names a
 * guest-physical address, so it drops every nested entry of the domain).
 */
export const CacheClass = { FIRST: 0, NESTED: 1, SECOND: 2, NESTED_SECOND: 3 } as const;
export type CacheClassValue = (typeof CacheClass)[keyof typeof CacheClass];

const PASID_SPAN = 2 ** 20;
const DID_SPAN = 2 ** 16;
/** PASID-cache "DID" under which not-present entries are cached (caching mode): they carry no meaningful DID. */
const NOT_PRESENT_DID = DID_SPAN;

export const cacheTag = (cls: number, did: number, pasid: number): number => (cls * DID_SPAN + did) * PASID_SPAN + pasid;
const groupOfTag = (tag: number): number => Math.floor(tag / PASID_SPAN);

/** Which requests a cached entry's write right holds for: every request, only user (PRIV=0) or only supervisor (PRIV=1) ones. */
export const RightsFor = { ANY: 0, USER: 1, SUPERVISOR: 2 } as const;
export type RightsForValue = (typeof RightsFor)[keyof typeof RightsFor];

/** A decoded scalable-mode context entry, or a cached fault (caching mode). */
export interface CtxInfo {
  /** 0, or the fault reason this entry gives (cached only with CM=1). */
  readonly fault: number;
  readonly fpd: boolean;
  readonly dte: boolean;
  readonly paside: boolean;
  readonly pre: boolean;
  /** Directory entries: 2^(PDTS+7). */
  readonly dirEntries: number;
  readonly dirPtr: number;
  readonly ridPasid: number;
}

/** A decoded PASID-table entry with the walker configurations built once, or a cached fault. */
export interface PasidInfo {
  readonly fault: number;
  /** FPD of the directory entry or of the PASID entry. */
  readonly fpd: boolean;
  readonly did: number;
  readonly pgtt: number;
  readonly sre: boolean;
  readonly ere: boolean;
  readonly fl: FirstLevelConfig | null;
  readonly sl: SecondLevelConfig | null;
}

/** A cached leaf translation (or, with CM=1, a cached fault). */
export interface IotlbEntry {
  readonly fault: number;
  /** Output address of the page's first byte. */
  readonly pageBase: number;
  readonly size: number;
  readonly read: boolean;
  readonly write: boolean;
  readonly exec: boolean;
  readonly user: boolean;
  /** The request that filled it: what a cache-bypassing re-walk needs. */
  readonly sid: number;
  readonly pasid: number;
  /** Whether that request carried the PASID (else it used RID_PASID). */
  readonly hadPasid: boolean;
  /**
   * Which requests `write` holds for. With WPE=0 a supervisor may write a
   * read-only first-level page (CR0.WP=0 semantics), so write rights found
   * by a walk for one privilege do not carry over to the other: such an
   * entry serves only requests of the privilege that filled it, and the
   * other one re-walks (and refills). {@link RightsFor}.
   */
  readonly rightsFor: RightsForValue;
  readonly cls: CacheClassValue;
  readonly did: number;
  /** Input page address. */
  readonly inputBase: number;
}

/**
 * An IOTLB entry's node. Its memo is the `translate()` answer last given from
 * it (a frozen {@link TranslateOk}), keyed by the request address: every field
 * of that answer follows from the entry and the address alone, so a request
 * for the same address while the entry lives gets the same object back
 * instead of a new one (ATS translation requests, page-aligned, repeat their
 * addresses; so does a DMA that walks the same buffer again).
 */
export type IotlbNode = CacheNode<IotlbEntry, TranslateOk>;

export interface VtdCacheCapacities {
  readonly context: number;
  readonly pasid: number;
  readonly iotlb: number;
  readonly firstLevelPsc: number;
  readonly secondLevelPsc: number;
}

export const DEFAULT_CACHE_CAPACITIES: VtdCacheCapacities = {
  context: 256,
  pasid: 1024,
  iotlb: 4096,
  firstLevelPsc: 1024,
  secondLevelPsc: 1024,
};

const PAGE = 4096;

/** IOTLB keys: 4 KiB, 2 MiB and 1 GiB entries side by side in a tag (`cache/page-keys.ts`). */
export const iotlbKey = pageKey;
export { sizeCodeOf };

/**
 * The IOTLB node for 4 KiB page `pfn` in one tag's entries (a
 * `TaggedLru.keysOf` handle), probing the page sizes in the order
 * {@link VtdCaches.lookupIotlb} does, without counting or bumping anything.
 */
export const probeIotlbKeys: (keys: ReadonlyNodeIndex<IotlbNode>, pfn: number) => IotlbNode | undefined = probePageKeys;

export class VtdCaches {
  readonly context: TaggedLru<CtxInfo>;
  readonly pasid: TaggedLru<PasidInfo>;
  /** (SID, PASID) -> PASID-cache node: lookup needs no DID, invalidation needs no SID. */
  readonly #pasidIndex = new Map<number, CacheNode<PasidInfo>>();
  readonly iotlb: TaggedLru<IotlbEntry, TranslateOk>;
  readonly flPsc: WalkCache;
  readonly slPsc: WalkCache;

  constructor(cap: VtdCacheCapacities) {
    this.context = new TaggedLru<CtxInfo>("context cache", cap.context);
    this.pasid = new TaggedLru<PasidInfo>("PASID cache", cap.pasid, groupOfTag);
    // CLOCK replacement: how many entries a unit caches and which it gives up are the
    // implementation's (VT-d spec chapter 6, caching translation information: software sees only
    // what may be cached and the invalidations that remove it); a hit then costs a reference bit.
    this.iotlb = new TaggedLru<IotlbEntry, TranslateOk>("IOTLB", cap.iotlb, groupOfTag, "clock");
    this.flPsc = new WalkCache("first-level PSC", cap.firstLevelPsc, groupOfTag);
    this.slPsc = new WalkCache("second-level PSC", cap.secondLevelPsc, (t) => t);
  }

  stats(): Record<"context" | "pasid" | "iotlb" | "firstLevelPsc" | "secondLevelPsc", CacheStats> {
    return {
      context: this.context.stats,
      pasid: this.pasid.stats,
      iotlb: this.iotlb.stats,
      firstLevelPsc: this.flPsc.lru.stats,
      secondLevelPsc: this.slPsc.lru.stats,
    };
  }

  // --- PASID cache ---------------------------------------------------------

  lookupPasid(sid: number, pasid: number): CacheNode<PasidInfo> | undefined {
    const k = sid * PASID_SPAN + pasid;
    const node = this.#pasidIndex.get(k);
    if (!node?.valid) {
      this.#pasidIndex.delete(k);
      this.pasid.stats.misses++;
      return undefined;
    }
    this.pasid.noteHit(node);
    return node;
  }

  insertPasid(sid: number, pasid: number, info: PasidInfo): CacheNode<PasidInfo> {
    const did = info.fault !== 0 ? NOT_PRESENT_DID : info.did;
    const node = this.pasid.insert(cacheTag(0, did, pasid), sid, info);
    this.#pasidIndex.set(sid * PASID_SPAN + pasid, node);
    // Keep the side index bounded: evicted and invalidated nodes are swept in
    // amortised O(1) once they outnumber the live ones.
    if (this.#pasidIndex.size > 2 * this.pasid.capacity + 16) {
      for (const [k, n] of this.#pasidIndex) if (!n.valid) this.#pasidIndex.delete(k);
    }
    return node;
  }

  /** VT-d §6.5.2 PASID-cache descriptor PASID-selective; not-present entries cached for that PASID go too (their DID is meaningless). */
  invalidatePasidEntry(did: number, pasid: number): number {
    return this.pasid.invalidateTag(cacheTag(0, did, pasid)) + this.pasid.invalidateTag(cacheTag(0, NOT_PRESENT_DID, pasid));
  }

  invalidatePasidDomain(did: number): number {
    return this.pasid.invalidateGroup(did) + this.pasid.invalidateGroup(NOT_PRESENT_DID);
  }

  // --- context cache -------------------------------------------------------

  /** Device-selective with function mask FM (VT-d §10.4 CCMD): 0 none, 1/2/3 mask SID bits 2, 2:1, 2:0. */
  invalidateContextDevice(sid: number, fm: number): number {
    const maskBits = fm === 0 ? 0 : fm === 1 ? 4 : fm === 2 ? 6 : 7;
    let n = 0;
    const base = sid & ~maskBits & 0xffff;
    for (let f = 0; f < 8; f++) {
      if ((f & ~maskBits) !== 0) continue;
      if (this.context.invalidate(0, base | f)) n++;
    }
    return n;
  }

  // --- IOTLB and paging-structure caches ------------------------------------

  /**
   * Probes the three page sizes: one lookup, counted once as a hit (and
   * bumped) or a miss. The tag's entries are taken once and probed in the
   * order {@link probeIotlbKeys} uses.
   */
  lookupIotlb(tag: number, pfn: number): IotlbNode | undefined {
    const lru = this.iotlb;
    const keys = lru.keysOf(tag);
    const node = keys === undefined ? undefined : probeIotlbKeys(keys, pfn);
    if (node === undefined) {
      lru.stats.misses++;
      return undefined;
    }
    lru.noteHit(node);
    return node;
  }

  invalidateAllTranslations(): void {
    this.iotlb.invalidateAll();
    this.flPsc.lru.invalidateAll();
    this.slPsc.lru.invalidateAll();
  }

  /** VT-d §6.5.2 IOTLB descriptor domain-selective: second-level, nested and nested second-stage entries of DID. */
  invalidateDomain(did: number): number {
    let n = 0;
    for (const cls of [CacheClass.SECOND, CacheClass.NESTED, CacheClass.NESTED_SECOND]) n += this.iotlb.invalidateGroup(cls * DID_SPAN + did);
    n += this.flPsc.lru.invalidateGroup(CacheClass.NESTED * DID_SPAN + did);
    n += this.slPsc.lru.invalidateTag(did);
    return n;
  }

  /** VT-d §6.5.2 IOTLB descriptor page-selective within DID: pages [pfn, pfn + 2^am) of the second-level input space. */
  invalidateDomainPages(did: number, pfn: number, am: number, ih: boolean): number {
    const count = 2 ** am;
    let n = 0;
    for (const cls of [CacheClass.SECOND, CacheClass.NESTED_SECOND]) {
      for (const tag of this.iotlb.tagsOf(cls * DID_SPAN + did)) n += this.#invalidateIotlbRange(tag, pfn, count);
    }
    // A nested entry is keyed by the first-level input; a guest-physical range cannot name it.
    n += this.iotlb.invalidateGroup(CacheClass.NESTED * DID_SPAN + did);
    n += this.flPsc.lru.invalidateGroup(CacheClass.NESTED * DID_SPAN + did);
    if (!ih) n += this.slPsc.invalidateRange(did, pfn * PAGE, count * PAGE);
    return n;
  }

  /** VT-d §6.5.2 PASID-based-IOTLB descriptor G=2: every first-level-only and nested mapping of (DID, PASID). */
  invalidatePasidMappings(did: number, pasid: number): number {
    let n = 0;
    for (const cls of [CacheClass.FIRST, CacheClass.NESTED]) {
      const tag = cacheTag(cls, did, pasid);
      n += this.iotlb.invalidateTag(tag) + this.flPsc.lru.invalidateTag(tag);
    }
    return n;
  }

  /** VT-d §6.5.2 PASID-based-IOTLB descriptor G=3: pages [pfn, pfn + 2^am) of (DID, PASID); IH keeps the paging-structure caches. */
  invalidatePasidPages(did: number, pasid: number, pfn: number, am: number, ih: boolean): number {
    const count = 2 ** am;
    let n = 0;
    for (const cls of [CacheClass.FIRST, CacheClass.NESTED]) {
      const tag = cacheTag(cls, did, pasid);
      n += this.#invalidateIotlbRange(tag, pfn, count);
      if (!ih) n += this.flPsc.invalidateRange(tag, pfn * PAGE, count * PAGE);
    }
    return n;
  }

  #invalidateIotlbRange(tag: number, pfn: number, count: number): number {
    return invalidatePageRange(this.iotlb, tag, pfn, count);
  }
}
