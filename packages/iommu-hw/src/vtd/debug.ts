import type { SourceId } from "@vsva/kernel";
import type { PhysMem } from "@vsva/pgtable";
import type { DmaRequest, TranslateResult } from "../iommu-port.js";
import { sameValue } from "../cache/same-value.js";
import { CacheClass, type CtxInfo, type IotlbEntry, type PasidInfo, RightsFor, type VtdCaches } from "./caches.js";
import { ContextScratch, fetchContext } from "./context.js";
import type { InvalidationQueue } from "./inv-queue.js";
import type { VtdConfig } from "./options.js";
import { PasidScratch, fetchPasid } from "./pasid.js";
import type { RootState, Translator } from "./translate.js";

/** A cached translation next to what a fresh walk finds now (for the invariant checker). */
export interface CacheMismatch {
  readonly cached: IotlbEntry;
  readonly fresh: TranslateResult;
}

/** A cached context or PASID entry that no longer matches memory. */
export interface StructureCacheMismatch {
  readonly cache: "context" | "pasid";
  readonly sid: number;
  readonly pasid: number | null;
  readonly cached: CtxInfo | PasidInfo;
  readonly fresh: CtxInfo | PasidInfo;
}

/** What the debug view reads of the unit. */
export interface VtdDebugParts {
  readonly cfg: VtdConfig;
  readonly caches: VtdCaches;
  readonly root: RootState;
  readonly translator: Translator;
  /** A translator over read-only memory that bypasses every cache. */
  readonly fresh: Translator;
  readonly roMem: PhysMem;
  readonly iq: InvalidationQueue;
}

/** What one request cost in memory references (`VtdDebug.lastRequest`). */
export interface VtdRequestAccounting {
  /** 64-bit reads of paging entries (first level, second level, nested) by the page walk. */
  readonly walkReads: number;
  /** Accessed/dirty updates the page walk wrote. */
  readonly walkWrites: number;
  /** Paging-structure-cache hits that saved walk reads. */
  readonly pscHits: number;
  /** 64-bit reads fetching the root, context, PASID-directory and PASID entries (context/PASID-cache misses). */
  readonly structureReads: number;
}

/**
 * What tests, benches and the invariant checker see of a VT-d unit besides
 * its registers: the caches, a cache-bypassing translation, coherence
 * checks and the hand that runs a deferred invalidation queue. None of it
 * exists on the silicon, so a driver or a VMM has no business with it; it is
 * `unit.debug`, apart from the unit's own API.
 */
export class VtdDebug {
  readonly #p: VtdDebugParts;

  constructor(parts: VtdDebugParts) {
    this.#p = parts;
  }

  /** The context, PASID, IOTLB and paging-structure caches. */
  get caches(): VtdCaches {
    return this.#p.caches;
  }

  /** Runs the invalidation queue now (in deferred mode, what the work item would do). Returns descriptors processed. */
  processInvalidations(): number {
    return this.#p.iq.process();
  }

  /** Whether a deferred invalidation-queue run is waiting for the scheduler. */
  get invalidationPending(): boolean {
    return this.#p.iq.pending;
  }

  /** Descriptors the queue has completed and stopped on since the unit was made. */
  get queueStats(): InvalidationQueue["stats"] {
    return this.#p.iq.stats;
  }

  /**
   * The memory references and PSC hits of the last request's page walk; all zero when the last
   * request walked nothing (IOTLB hit, pass-through, a fault before the walk). Root, context and
   * PASID structure fetches are not page-walk reads: see {@link lastRequest}.
   */
  get lastWalk(): { readonly reads: number; readonly writes: number; readonly pscHits: number } {
    return this.#p.translator.lastWalk;
  }

  /** The last request's memory traffic, page walk and structure fetches counted apart. */
  get lastRequest(): VtdRequestAccounting {
    const w = this.#p.translator.lastWalk;
    return { walkReads: w.reads, walkWrites: w.writes, pscHits: w.pscHits, structureReads: this.#p.translator.lastStructureReads };
  }

  /** Every leaf translation the IOTLB holds, as a device would be served it. */
  *cachedTranslations(): IterableIterator<IotlbEntry> {
    for (const node of this.#p.caches.iotlb.entries()) {
      if (node.value.cls !== CacheClass.NESTED_SECOND && node.value.fault === 0) yield node.value;
    }
  }

  /**
   * Compares each cached leaf translation with a fresh walk that bypasses
   * every cache and writes nothing to memory. After software has made the
   * invalidations its table changes require, the answer is empty; what is
   * left is stale. The nested second-stage entries are checked through the
   * nested translations that use them.
   */
  checkCaches(): CacheMismatch[] {
    const out: CacheMismatch[] = [];
    if (!this.#p.root.translationEnabled) return out;
    for (const e of this.cachedTranslations()) {
      const req: DmaRequest = {
        sid: e.sid as SourceId,
        // Re-walk with the privilege the entry's rights were found for.
        ...(e.hadPasid ? { pasid: e.pasid, priv: e.rightsFor === RightsFor.SUPERVISOR || (e.rightsFor === RightsFor.ANY && !e.user) } : {}),
        addr: e.inputBase,
        write: false,
      };
      const fresh = this.#p.fresh.translate(req);
      const same =
        fresh.ok && fresh.pa === e.pageBase && fresh.size === e.size && fresh.read === e.read && fresh.write === e.write &&
        fresh.exec === e.exec && fresh.privOnly === !e.user;
      if (!same) out.push({ cached: e, fresh });
    }
    return out;
  }

  /**
   * Compares every cached context entry and PASID entry with a fresh fetch
   * from memory. A mismatch after software has issued the context-cache and
   * PASID-cache invalidations its changes require is a missing flush.
   */
  checkStructureCaches(): StructureCacheMismatch[] {
    const out: StructureCacheMismatch[] = [];
    const { cfg, caches, roMem } = this.#p;
    const cs = new ContextScratch();
    const ps = new PasidScratch();
    const root = this.#p.root.rootTable;
    for (const node of caches.context.entries()) {
      const fresh = fetchContext(roMem, root, node.key, cfg, cs);
      if (!sameValue(node.value, fresh)) out.push({ cache: "context", sid: node.key, pasid: null, cached: node.value, fresh });
    }
    for (const node of caches.pasid.entries()) {
      const sid = node.key;
      const pasid = node.tag % 2 ** 20;
      const ctx = fetchContext(roMem, root, sid, cfg, cs);
      const fresh = ctx.fault !== 0 ? ctx : fetchPasid(roMem, ctx, pasid, cfg, ps);
      if (!sameValue(node.value, fresh)) out.push({ cache: "pasid", sid, pasid, cached: node.value, fresh });
    }
    return out;
  }

  /** A translation that bypasses every cache and writes nothing (records no fault). */
  translateUncached(req: DmaRequest): TranslateResult {
    return this.#p.fresh.translate(req);
  }
}
