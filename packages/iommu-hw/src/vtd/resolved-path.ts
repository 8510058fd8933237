import type { CacheNode } from "../cache/tagged-lru.js";
import type { ReadonlyNodeIndex } from "../cache/node-index.js";
import type { CacheClassValue, CtxInfo, IotlbNode, PasidInfo } from "./caches.js";

/**
 * Slots of the micro-TLB in front of the IOTLB: direct-mapped on the low bits
 * of the 4 KiB page number, like a small first-level TLB (a 2 MiB or 1 GiB
 * entry may sit in several slots). It holds IOTLB nodes, not copies, so it
 * can never be staler than the IOTLB. 64 slots, as many as the SMMUv3 unit's
 * micro-TLB: a stream working over 256 KiB in 4 KiB pages is served from it
 * (one array load and the node's `valid`), and the IOTLB proper is probed only
 * beyond that; it was 16, which sent every sweep of more than 16 pages to the
 * IOTLB's index on every request.
 */
export const MICRO_TLB_SLOTS = 64;

/**
 * What the context and PASID caches say about one (source ID, request PASID):
 * the two cache nodes, the PASID the translation runs under (the request's, or
 * RID_PASID) and the IOTLB tag it implies. A request whose path is still valid
 * skips the context-cache and PASID-cache lookups and the tag arithmetic, and
 * goes straight to the IOTLB.
 *
 * It is a memo of lookups, not a cache of its own: it is trusted only while
 * both nodes are `valid`, i.e. while the context and PASID caches would return
 * exactly these entries, so every invalidation or eviction of either entry
 * ends it at once and the next request resolves afresh. Only requests that
 * passed every context- and PASID-level check get one (no cached faults), so
 * the checks left on a request are the request-dependent ones (ATS against
 * DTE, PRIV against SRE, EXE against ERE).
 *
 * It also holds the IOTLB's handle on its tag (`TaggedLru.keysOf`), so an
 * IOTLB hit is one probe of that map. The handle is only ever a shortcut: a
 * miss through it (the tag had emptied, or the page is not cached) goes the
 * ordinary, counted way, which re-takes the handle.
 */
export class ResolvedPath {
  /** The IOTLB's entries of `tag`, as last taken; empty for good once the tag empties. */
  iotlbKeys: ReadonlyNodeIndex<IotlbNode> | undefined = undefined;
  /**
   * This path's micro-TLB: IOTLB nodes direct-mapped on the low bits of the
   * 4 KiB page number (see {@link MICRO_TLB_SLOTS}). Per path, so a slot needs no
   * path tag: a hit is one load and the node's `valid`.
   */
  readonly micro: (IotlbNode | null)[];

  constructor(
    readonly sid: number,
    /** The request's PASID, or -1 for a request without one. */
    readonly pasidKey: number,
    readonly ctxNode: CacheNode<CtxInfo>,
    readonly peNode: CacheNode<PasidInfo>,
    /** The PASID the translation is tagged with: the request's, or the context's RID_PASID. */
    readonly pasid: number,
    readonly cls: CacheClassValue,
    readonly tag: number,
  ) {
    this.micro = new Array<IotlbNode | null>(MICRO_TLB_SLOTS).fill(null);
  }

  get live(): boolean {
    return this.ctxNode.valid && this.peNode.valid;
  }
}

/** Paths by (source ID, request PASID): a one-entry front for the common single-stream case, then a Map. */
export class ResolvedPaths {
  readonly #byKey = new Map<number, ResolvedPath>();
  #last: ResolvedPath | null = null;

  /**
   * @param limit entries above which dead paths are swept (amortised O(1)):
   *   twice the PASID-cache capacity bounds the live ones, since at most a
   *   request with and one without PASID share a PASID-cache entry.
   */
  constructor(private readonly limit: number) {}

  /** The live path of (sid, pasidKey), or null. */
  find(sid: number, pasidKey: number): ResolvedPath | null {
    let p = this.#last;
    if (p?.sid !== sid || p.pasidKey !== pasidKey) {
      p = this.#byKey.get(pathKey(sid, pasidKey)) ?? null;
      // The key is exact only for in-range integers; a request with a garbage
      // source ID or PASID must not land on another device's path.
      if (p?.sid !== sid || p.pasidKey !== pasidKey) return null;
      this.#last = p;
    }
    return p.live ? p : null;
  }

  add(p: ResolvedPath): void {
    if (!Number.isInteger(p.sid) || p.sid < 0 || p.sid > 0xffff) return;
    this.#byKey.set(pathKey(p.sid, p.pasidKey), p);
    this.#last = p;
    if (this.#byKey.size > this.limit) {
      for (const [k, q] of this.#byKey) if (!q.live) this.#byKey.delete(k);
    }
  }

  /** Forgets every path (root table or translation enable changed). */
  clear(): void {
    this.#byKey.clear();
    this.#last = null;
  }
}

/** PASIDs are below 2^20, so pasidKey + 1 fits in 21 bits next to the 16-bit source ID. */
const pathKey = (sid: number, pasidKey: number): number => sid * 2 ** 21 + pasidKey + 1;
