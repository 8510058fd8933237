import type { SourceId } from "@vsva/kernel";
import { ArmPerm as Perm, type PhysMem } from "@vsva/pgtable";
import type { DmaRequest, TranslateResult } from "../iommu-port.js";
import { sameValue } from "../cache/same-value.js";
import { type SmmuCaches, type TlbEntry, TlbClass } from "./caches.js";
import type { CommandQueue } from "./cmdq.js";
import { type CdInfo, ConfigScratch, type SteInfo, fetchCd, fetchSte } from "./config.js";
import type { SmmuConfig } from "./options.js";
import type { OutputQueue } from "./queues.js";
import type { StallTable } from "./stalls.js";
import type { SmmuState, SmmuTranslator } from "./translate.js";

/** A cached translation next to what a fresh walk finds now. */
export interface SmmuCacheMismatch {
  readonly cached: TlbEntry;
  readonly fresh: TranslateResult;
  readonly freshPerms: number;
}

/** A cached STE or CD that no longer matches memory. */
export interface SmmuStructureMismatch {
  readonly cache: "ste" | "cd";
  readonly sid: number;
  readonly ssid: number | null;
  readonly cached: SteInfo | CdInfo;
  readonly fresh: SteInfo | CdInfo;
}

/** Counters the unit keeps for tests and reports. */
export interface SmmuStats {
  syncs: number;
  interrupts: number;
  events: number;
}

/** What the debug view reads of the unit. */
export interface SmmuDebugParts {
  readonly cfg: SmmuConfig;
  readonly caches: SmmuCaches;
  readonly state: SmmuState;
  readonly translator: SmmuTranslator;
  /** A translator over read-only memory that bypasses every cache. */
  readonly fresh: SmmuTranslator;
  readonly roMem: PhysMem;
  readonly cmdq: CommandQueue;
  readonly evtq: OutputQueue<string>;
  readonly priq: OutputQueue<string>;
  readonly stalls: StallTable;
  readonly stats: SmmuStats;
}

/** What one request cost in memory references (`SmmuDebug.lastRequest`). */
export interface SmmuRequestAccounting {
  /** 64-bit reads of translation-table descriptors (stage 1, stage 2, nested) by the walk. */
  readonly walkReads: number;
  /** Access-flag/dirty updates the walk wrote. */
  readonly walkWrites: number;
  /** Walk-cache hits that saved descriptor reads. */
  readonly walkCacheHits: number;
  /** 64-bit reads fetching level-1 stream-table descriptors, STEs, level-1 CD descriptors and CDs (with the stage-2 walk locating a nested CD). */
  readonly structureReads: number;
}

/**
 * What tests, benches and the invariant checker see of an SMMUv3 besides
 * its registers: caches, counters, a cache-bypassing translation, coherence
 * checks and the hand that runs a deferred command queue. None of it exists
 * on the silicon; it is `unit.debug`, apart from the unit's own API.
 */
export class SmmuDebug {
  readonly #p: SmmuDebugParts;

  constructor(parts: SmmuDebugParts) {
    this.#p = parts;
  }

  /** The STE, CD, TLB and walk caches. */
  get caches(): SmmuCaches {
    return this.#p.caches;
  }

  /** CMD_SYNCs completed, interrupts raised, events recorded. */
  get stats(): Readonly<SmmuStats> {
    return this.#p.stats;
  }

  /** Runs the command queue now (in deferred mode, what the work item would do). Returns commands completed. */
  processCommands(): number {
    return this.#p.cmdq.process();
  }

  /** Whether a deferred command-queue run is waiting for the scheduler. */
  get commandsPending(): boolean {
    return this.#p.cmdq.pending;
  }

  /** Transactions stalled now, waiting for CMD_RESUME / CMD_STALL_TERM. */
  get outstandingStalls(): number {
    return this.#p.stalls.size;
  }

  /**
   * The descriptor reads and walk-cache hits of the last request's table walk; all zero when the
   * last request walked nothing (TLB hit, bypass, a fault before the walk). STE, CD and level-1
   * descriptor fetches are not walk reads: see {@link lastRequest}.
   */
  get lastWalk(): { readonly reads: number; readonly writes: number; readonly walkCacheHits: number } {
    return this.#p.translator.lastWalk;
  }

  /** The last request's memory traffic, table walk and structure fetches counted apart. */
  get lastRequest(): SmmuRequestAccounting {
    const w = this.#p.translator.lastWalk;
    return { walkReads: w.reads, walkWrites: w.writes, walkCacheHits: w.walkCacheHits, structureReads: this.#p.translator.lastStructureReads };
  }

  get queueStats(): { readonly cmdq: CommandQueue["stats"]; readonly eventq: OutputQueue<string>["stats"]; readonly priq: OutputQueue<string>["stats"] } {
    return { cmdq: this.#p.cmdq.stats, eventq: this.#p.evtq.stats, priq: this.#p.priq.stats };
  }

  /**
   * Compares each cached leaf translation with a fresh translation that
   * bypasses every cache and writes nothing. After software has issued the
   * invalidations its table changes require, the answer is empty. Stage-2
   * entries filled by nested walks are checked through the nested entries
   * that use them.
   */
  checkCaches(): SmmuCacheMismatch[] {
    const out: SmmuCacheMismatch[] = [];
    if (!this.#p.state.enabled) return out;
    const fresh = this.#p.fresh;
    for (const node of this.#p.caches.tlb.entries()) {
      const e = node.value;
      if (e.sid < 0) continue;
      const privAccess = (e.perms & (Perm.USER_READ | Perm.USER_WRITE | Perm.USER_EXEC)) === 0;
      const read = (e.perms & (privAccess ? Perm.PRIV_READ : Perm.USER_READ)) !== 0;
      const req: DmaRequest = {
        sid: e.sid as SourceId,
        ...(e.ssid >= 0 ? { pasid: e.ssid, priv: privAccess, exec: !read } : {}),
        addr: e.inputBase,
        write: !read && e.ssid < 0,
      };
      const now = fresh.translate(req);
      const freshPerms = now.ok ? fresh.lastPerms : 0;
      const same = now.ok && now.pa === e.pageBase && now.size === e.size && freshPerms === e.perms;
      if (!same && !(e.cls === TlbClass.S2 && e.ssid >= 0)) out.push({ cached: e, fresh: now, freshPerms });
    }
    return out;
  }

  /** Compares every cached STE and CD with a fresh fetch: a mismatch is a missing CFGI_*. */
  checkStructureCaches(): SmmuStructureMismatch[] {
    const out: SmmuStructureMismatch[] = [];
    const { cfg, caches, roMem, state } = this.#p;
    const s = new ConfigScratch();
    for (const node of caches.ste.entries()) {
      const fresh = fetchSte(roMem, state.st, node.tag, cfg, s);
      if (!sameValue(node.value, fresh)) out.push({ cache: "ste", sid: node.tag, ssid: null, cached: node.value, fresh });
    }
    for (const node of caches.cd.entries()) {
      const ste = fetchSte(roMem, state.st, node.tag, cfg, s);
      if (ste.fault !== null || (ste.kind !== "s1" && ste.kind !== "nested")) {
        out.push({ cache: "cd", sid: node.tag, ssid: node.key, cached: node.value, fresh: ste });
        continue;
      }
      // A nested CD address is an IPA: translate it like the fresh pipeline would.
      const fresh = ste.kind === "nested" ? this.#p.fresh.cdOf(node.tag, node.key) : fetchCd(roMem, ste, node.key, cfg, s);
      if (!sameValue(node.value, fresh)) out.push({ cache: "cd", sid: node.tag, ssid: node.key, cached: node.value, fresh });
    }
    return out;
  }

  /** A translation that bypasses every cache and writes nothing (records no event). */
  translateUncached(req: DmaRequest): TranslateResult {
    return this.#p.fresh.translate(req);
  }
}
