import type { CacheNode } from "../cache/tagged-lru.js";
import type { DmaRequest, TranslateFault, TranslateOk, TranslateResult } from "../iommu-port.js";
import { type PhysMem, walkFirstLevel, walkSecondLevel, type SecondLevelConfig, type SecondStage, type WalkAccess, type WalkResult, newWalkResult, resetWalkResult } from "@vsva/pgtable";
import {
  CacheClass, type CacheClassValue, type CtxInfo, type IotlbEntry, type IotlbNode, type PasidInfo, RightsFor, type VtdCaches, cacheTag, iotlbKey,
  sizeCodeOf,
} from "./caches.js";
import { ContextScratch, fetchContext } from "./context.js";
import { FaultReason, faultReasonName } from "./fault-reason.js";
import type { VtdConfig } from "./options.js";
import { PasidScratch, fetchPasid } from "./pasid.js";
import { MICRO_TLB_SLOTS, ResolvedPath, ResolvedPaths } from "./resolved-path.js";
import { Pgtt } from "./structures.js";
import { isPageLevelFault, walkFaultReason } from "./walk-fault.js";

const PAGE = 4096;
/** What `lastWalk` shows for a request that walked nothing. */
const NO_WALK: Readonly<WalkResult> = Object.freeze(newWalkResult());
const READ: WalkAccess = Object.freeze({ write: false });
const WRITE: WalkAccess = Object.freeze({ write: true });

/** The root-table state latched by GCMD.SRTP and enabled by GCMD.TE. */
export interface RootState {
  translationEnabled: boolean;
  /** Latched RTADDR.RTA. */
  rootTable: number;
  /** Latched RTADDR.TTM (1 = scalable mode). */
  ttm: number;
}

/** Details of the last fault `translate` returned, for the unit to record (or not). */
export interface FaultDetail {
  reason: number;
  /** An FPD bit along the way suppresses recording. */
  fpd: boolean;
  /** Not present / access rights in the page tables: an ATS translation request gets R=W=0 without a record. */
  pageLevel: boolean;
}

export { MICRO_TLB_SLOTS };
const MICRO_TLB_MASK = MICRO_TLB_SLOTS - 1;

/**
 * A requester ID is 16 bits on the wire. Anything else a buggy device model
 * passes is still walked (the table index bits are taken from it), but never
 * cached: its cache keys could collide with a real device's, and no
 * invalidation could name it.
 */
const isSourceId = (sid: number): boolean => Number.isInteger(sid) && sid >= 0 && sid <= 0xffff;

const modulo = (a: number, m: number): number => a - Math.floor(a / m) * m;

/** The request flags an IOTLB entry's own checks depend on (write, PRIV, EXE), as one number: an entry's memo is kept with the flags it was checked for. */
const requestBits = (write: boolean, priv: boolean, exec: boolean): number => (write ? 1 : 0) | (priv ? 2 : 0) | (exec ? 4 : 0);

/**
 * The answer of an IOTLB hit on `node` for the integral address `addr`, the
 * entry having been found to grant a request of {@link requestBits} `bits`:
 * the node's memo when it was made for the same address, else a new frozen
 * answer, memoised on the node with the address and `bits`. All its fields
 * follow from the entry and `addr`, so a shared frozen object is the answer a
 * fresh one would be; a hit on a repeated address allocates nothing. And a
 * memo kept for (`addr`, `bits`) says the entry's own checks passed for such
 * a request, so a request with the same address and bits can skip them (the
 * checks on its context and PASID entries, which the entry does not pin, are
 * still made).
 */
function hitResult(node: IotlbNode, addr: number, bits: number): TranslateOk {
  const m = node.memo;
  node.memoAux = bits;
  if (m !== null && node.memoKey === addr) return m;
  const e = node.value;
  const r: TranslateOk = Object.freeze({ ok: true, pa: e.pageBase + (addr - e.inputBase), size: e.size, read: e.read, write: e.write, exec: e.exec, privOnly: !e.user });
  node.memo = r;
  node.memoKey = addr;
  return r;
}

/**
 * The translation pipeline of a scalable-mode unit: context cache, PASID
 * cache, IOTLB, then a walk (first level, second level, nested, or pass
 * through) with the paging-structure caches as walker hooks. Every structure
 * fetched from memory is checked and a problem becomes its fault reason
 * (VT-d spec appendix A); nothing the tables contain can make it throw.
 *
 * Two memos keep the IOTLB-hit path short without changing what it answers:
 * - a {@link ResolvedPath} per (source, PASID) stands for the context-cache
 *   and PASID-cache lookups while both entries stay cached (their hits are
 *   still counted and their recency bumped, as the lookups would);
 * - a per-path micro-TLB of {@link MICRO_TLB_SLOTS} keeps recent IOTLB hits: while a
 *   slot's node and path are valid, a request on the same path inside that
 *   page is served without any lookup (and counted as the IOTLB hit it is).
 * Both are trusted only through `CacheNode.valid`, so any invalidation or
 * eviction of an entry they rest on ends them at once.
 */
export class Translator {
  readonly #mem: PhysMem;
  readonly #cfg: VtdConfig;
  readonly #caches: VtdCaches;
  readonly #root: RootState;
  readonly #walk: WalkResult = newWalkResult();
  readonly #ctxScratch = new ContextScratch();
  readonly #pasidScratch = new PasidScratch();
  readonly #stage: SecondStage = { translate: (gpa, access, out) => this.#secondStage(gpa, access, out) };
  readonly lastFault: FaultDetail = { reason: 0, fpd: false, pageLevel: false };
  /** When false, fills nothing and trusts nothing cached: a fresh walk for the checker. */
  #useCaches = true;
  // Second stage of the nested walk in progress.
  #nestedSl: SecondLevelConfig | null = null;
  #nestedDid = 0;
  readonly #paths: ResolvedPaths;
  // The micro-TLB lives on each resolved path (ResolvedPath.micro).
  // Nodes met by the lookups of the current request.
  #ctxNode: CacheNode<CtxInfo> | undefined;
  #peNode: CacheNode<PasidInfo> | undefined;
  // Per-request accounting, reset lazily: a counter belongs to the request whose number it carries,
  // so a hit, a pass-through or a structure fault reads as "no walk" without any work on the hit path.
  #reqSeq = 0;
  #walkSeq = -1;
  #structSeq = -1;
  #structureReads = 0;

  constructor(mem: PhysMem, cfg: VtdConfig, caches: VtdCaches, root: RootState, useCaches = true) {
    this.#mem = mem;
    this.#cfg = cfg;
    this.#caches = caches;
    this.#root = root;
    this.#useCaches = useCaches;
    this.#paths = new ResolvedPaths(2 * caches.pasid.capacity + 16);
  }

  /** Forgets the micro-TLB and the resolved paths (root table or TE changed). */
  resetFastPath(): void {
    this.#paths.clear();
  }

  translate(req: DmaRequest): TranslateResult {
    this.#reqSeq++;
    const root = this.#root;
    if (!root.translationEnabled) {
      return { ok: true, pa: req.addr, size: PAGE, read: true, write: true, exec: true, privOnly: false };
    }
    // Only scalable mode is modelled: any other TTM is 0x31 (see FaultReason.RTADDR_INV_TTM).
    if (root.ttm !== 1) return this.#fault(FaultReason.RTADDR_INV_TTM, false, false);
    const path = this.#useCaches ? this.#paths.find(req.sid, req.pasid ?? -1) : null;
    if (path === null) return this.#resolve(req);

    const ctx = path.ctxNode.value;
    const pe = path.peNode.value;
    // PRIV and EXE come from the PASID TLP prefix: a request without PASID has neither.
    const hasPasid = path.pasidKey >= 0;
    const priv = hasPasid && req.priv === true;
    const exec = hasPasid && req.exec === true;
    const addr = req.addr;
    const caches = this.#caches;

    // The micro-TLB: the slot of the page's low number bits, if the same path filled it. Like a
    // first-level TLB tagged by source and PASID, a hit there consults neither the context nor
    // the PASID cache (their recency is not bumped); it is an IOTLB hit all the same.
    // ToUint32 keeps bits 31:0 of an integral address exactly, so `>>> 12` takes page-number bits.
    const slot = (addr >>> 12) & MICRO_TLB_MASK;
    const f = path.micro[slot];
    const bits = requestBits(req.write, priv, exec);
    if (f?.valid === true) {
      // The same address and request flags as the entry's memo: its own checks passed for them.
      const m = f.memo;
      if (m !== null && f.memoKey === addr && f.memoAux === bits && !exec && (!priv || pe.sre) && (req.ats !== true || ctx.dte)) {
        caches.iotlb.noteHit(f);
        return m;
      }
      const e = f.value;
      const off = addr - e.inputBase;
      // EXE is left to the full check (it also needs ECAP.ERS); PRIV needs SRE. An address with a
      // fraction (off not integral; off < 2^30 so `| 0` is exact) is no address: the full path faults it.
      if (
        off >= 0 && off < e.size && (off | 0) === off && (req.write ? e.write : e.read) && !exec && (priv ? pe.sre : e.user) && (req.ats !== true || ctx.dte) &&
        (e.rightsFor === RightsFor.ANY || e.rightsFor === (priv ? RightsFor.SUPERVISOR : RightsFor.USER))
      ) {
        caches.iotlb.noteHit(f);
        return hitResult(f, addr, bits);
      }
    }

    // The context and PASID caches hit: account for it as their lookups would.
    caches.context.noteHit(path.ctxNode);
    caches.pasid.noteHit(path.peNode);
    if (req.ats === true && !ctx.dte) return this.#fault(FaultReason.DTE_CLEAR, ctx.fpd, false);

    // The IOTLB through the path's handle on its tag: one probe, nothing counted until the entry
    // is used. Only the plain case is served here (an integral address, no EXE, PRIV allowed by
    // SRE, not pass-through, a translation granting the access); anything else, and any miss,
    // takes #translateIn, which does the counted lookup as before.
    const keys = path.iotlbKeys;
    if (keys !== undefined && !exec && (pe.sre || !priv) && pe.pgtt !== Pgtt.PASS_THROUGH && Number.isInteger(addr)) {
      const pfn = Math.floor(addr / PAGE);
      // Only the 4 KiB key: a page of a 2 MiB or 1 GiB entry, or a miss, takes #translateIn's counted
      // lookup, which probes every size. V8 inlines a fixed budget of bytecode into this function,
      // and the block probes (hot while a fill-heavy phase runs, when V8 decides) would spend it.
      const node = keys.get(pfn * 4);
      const m = node?.memo ?? null;
      // The same address and request flags as the entry's memo: its own checks passed for them.
      if (m !== null && node?.valid === true && node.memoKey === addr && node.memoAux === bits) {
        caches.iotlb.noteHit(node);
        path.micro[pfn & MICRO_TLB_MASK] = node;
        return m;
      }
      if (node?.valid === true) {
        const e = node.value;
        if (
          e.fault === 0 && (req.write ? e.write : e.read) && (priv || e.user) &&
          (e.rightsFor === RightsFor.ANY || e.rightsFor === (priv ? RightsFor.SUPERVISOR : RightsFor.USER))
        ) {
          caches.iotlb.noteHit(node);
          const s = pfn & MICRO_TLB_MASK;
          path.micro[s] = node;
          return hitResult(node, addr, bits);
        }
      }
    }
    const r = this.#translateIn(req, ctx, pe, path.pasid, path.cls, path.tag, path);
    // A missing or dead handle (its tag emptied at some point): take the live one, if any.
    if (keys === undefined || keys.size === 0) path.iotlbKeys = caches.iotlb.keysOf(path.tag);
    return r;
  }

  /** The context and PASID levels through the caches (lookups, fetches, their faults), then the rest. */
  #resolve(req: DmaRequest): TranslateResult {
    const ctx = this.#context(req.sid);
    if (ctx.fault !== 0) return this.#fault(ctx.fault, ctx.fpd, false);
    const hasPasid = req.pasid !== undefined;
    if (hasPasid && !ctx.paside) return this.#fault(FaultReason.PASIDE_CLEAR, ctx.fpd, false);
    if (req.ats === true && !ctx.dte) return this.#fault(FaultReason.DTE_CLEAR, ctx.fpd, false);
    const pasid = req.pasid ?? ctx.ridPasid;
    if (!Number.isInteger(pasid) || pasid < 0 || pasid >= 2 ** this.#cfg.pasidBits) return this.#fault(FaultReason.PASID_TOO_LARGE, ctx.fpd, false);

    const pe = this.#pasidInfo(req.sid, pasid, ctx);
    if (pe.fault !== 0) return this.#fault(pe.fault, pe.fpd, false);
    const cls: CacheClassValue = pe.pgtt === Pgtt.FIRST_LEVEL ? CacheClass.FIRST : pe.pgtt === Pgtt.NESTED ? CacheClass.NESTED : CacheClass.SECOND;
    const tag = cacheTag(cls, pe.did, pasid);
    const ctxNode = this.#ctxNode;
    const peNode = this.#peNode;
    let path: ResolvedPath | null = null;
    if (ctxNode !== undefined && peNode !== undefined) {
      path = new ResolvedPath(req.sid, req.pasid ?? -1, ctxNode, peNode, pasid, cls, tag);
      this.#paths.add(path);
    }
    return this.#translateIn(req, ctx, pe, pasid, cls, tag, path);
  }

  /** Below the PASID entry: request checks, the IOTLB, then a walk. `path` is null when the entries are not cached. */
  #translateIn(
    req: DmaRequest, ctx: CtxInfo, pe: PasidInfo, pasid: number, cls: CacheClassValue, tag: number, path: ResolvedPath | null,
  ): TranslateResult {
    const hasPasid = req.pasid !== undefined;
    // PRIV and EXE come from the PASID TLP prefix: a request without PASID has neither.
    const priv = hasPasid && req.priv === true;
    const exec = hasPasid && req.exec === true;
    if (priv && !pe.sre) return this.#fault(FaultReason.SRE_CLEAR, pe.fpd, false);
    if (exec && (!pe.ere || !this.#cfg.executeRequests)) return this.#fault(FaultReason.ERE_CLEAR, pe.fpd, false);

    const addr = req.addr;
    // Not an address at all (NaN, a fraction): no walk can take it, nothing may cache it.
    if (!Number.isInteger(addr)) {
      return this.#fault(pe.fl !== null ? FaultReason.NON_CANONICAL : FaultReason.ADDR_BEYOND_HAW, pe.fpd, false);
    }
    if (pe.pgtt === Pgtt.PASS_THROUGH) {
      if (addr < 0 || addr >= 2 ** this.#cfg.hostAddrBits) return this.#fault(FaultReason.ADDR_BEYOND_HAW, pe.fpd, false);
      return { ok: true, pa: addr, size: PAGE, read: true, write: true, exec: true, privOnly: false };
    }

    const pfn = Math.floor(addr / PAGE);
    if (this.#useCaches) {
      const node = this.#caches.lookupIotlb(tag, pfn);
      if (node !== undefined) {
        const e = node.value;
        if (e.fault !== 0) return this.#fault(e.fault, pe.fpd, true, ctx, pe);
        if (
          (req.write ? e.write : e.read) && (!exec || e.exec) && (priv || e.user) &&
          (e.rightsFor === RightsFor.ANY || e.rightsFor === (priv ? RightsFor.SUPERVISOR : RightsFor.USER))
        ) {
          if (path !== null) {
            const slot = pfn & MICRO_TLB_MASK;
            path.micro[slot] = node;
          }
          return hitResult(node, addr, requestBits(req.write, priv, exec));
        }
        // Access rights not in the cached entry, or found for the other privilege: confirm with a fresh walk.
      }
    }
    return this.#walkAndFill(req, ctx, pe, pasid, cls, tag, priv, exec);
  }

  /** An IOTLB miss (or a cached entry lacking the rights asked for): walk, then cache the leaf or, with CM=1, the not-present fault. */
  #walkAndFill(
    req: DmaRequest, ctx: CtxInfo, pe: PasidInfo, pasid: number, cls: CacheClassValue, tag: number, priv: boolean, exec: boolean,
  ): TranslateResult {
    const addr = req.addr;
    const hasPasid = req.pasid !== undefined;
    const pfn = Math.floor(addr / PAGE);
    const access: WalkAccess = hasPasid ? { write: req.write, exec, priv } : req.write ? WRITE : READ;
    const w = this.#walkFor(pe, tag, addr, access);
    if (!w.ok) {
      const reason = walkFaultReason(w, pe.fl?.levels ?? 0, (pe.sl ?? this.#nestedSl)?.levels ?? 0);
      const pageLevel = w.stage === "first" && isPageLevelFault(w);
      if (this.#useCaches && this.#cfg.cachingMode && w.kind === "not-present" && (w.stage === "first" || cls === CacheClass.SECOND)) {
        this.#caches.iotlb.insert(tag, iotlbKey(pfn, 0), {
          fault: reason, pageBase: 0, size: PAGE, read: false, write: false, exec: false, user: false,
          sid: req.sid, pasid, hadPasid: hasPasid, rightsFor: RightsFor.ANY, cls, did: pe.did, inputBase: pfn * PAGE,
        });
      }
      return this.#fault(reason, pe.fpd, pageLevel || (cls === CacheClass.SECOND && isPageLevelFault(w)), ctx, pe, pageLevel);
    }
    const size = w.pageSize;
    const off = modulo(addr, size);
    const e: IotlbEntry = {
      fault: 0, pageBase: w.pa - off, size, read: w.read, write: w.write, exec: w.exec, user: w.user,
      sid: req.sid, pasid, hadPasid: hasPasid, cls, did: pe.did, inputBase: addr - off,
      rightsFor: pe.fl === null || pe.fl.wpe ? RightsFor.ANY : priv ? RightsFor.SUPERVISOR : RightsFor.USER,
    };
    // The answer is the one a hit on the new entry gives (pa = pageBase + addr - inputBase = w.pa).
    // Kept with no request bits (-1): the first hit on the entry makes its own checks.
    if (this.#useCaches) return hitResult(this.#caches.iotlb.insert(tag, iotlbKey(pfn, sizeCodeOf(size)), e), addr, -1);
    const ok: TranslateOk = { ok: true, pa: w.pa, size, read: w.read, write: w.write, exec: w.exec, privOnly: !w.user };
    return ok;
  }
  /**
   * The page walk of the last request (its memory references, PSC hits), for benches and tests:
   * all zero when that request walked nothing (an IOTLB hit, pass-through, a fault before the walk).
   * Context and PASID structure fetches are not in it: see {@link lastStructureReads}.
   */
  get lastWalk(): Readonly<WalkResult> {
    return this.#walkSeq === this.#reqSeq ? this.#walk : NO_WALK;
  }

  /** 64-bit memory reads of the last request fetching root, context, PASID-directory and PASID entries. */
  get lastStructureReads(): number {
    return this.#structSeq === this.#reqSeq ? this.#structureReads : 0;
  }

  #countStructureReads(n: number): void {
    if (this.#structSeq !== this.#reqSeq) {
      this.#structSeq = this.#reqSeq;
      this.#structureReads = 0;
    }
    this.#structureReads += n;
  }

  #walkFor(pe: PasidInfo, tag: number, addr: number, access: WalkAccess): WalkResult {
    this.#walkSeq = this.#reqSeq;
    const out = this.#walk;
    const mem = this.#mem;
    const c = this.#caches;
    if (pe.pgtt === Pgtt.SECOND_LEVEL && pe.sl !== null) {
      return walkSecondLevel(mem, pe.sl, addr, access, out, this.#useCaches ? { psc: { cache: c.slPsc, tag: pe.did } } : undefined);
    }
    if (pe.fl === null) {
      resetWalkResult(out);
      out.kind = "not-present";
      return out;
    }
    if (pe.pgtt === Pgtt.NESTED && pe.sl !== null) {
      this.#nestedSl = pe.sl;
      this.#nestedDid = pe.did;
      return walkFirstLevel(mem, pe.fl, addr, access, out, this.#useCaches ? { secondStage: this.#stage, psc: { cache: c.flPsc, tag } } : { secondStage: this.#stage });
    }
    return walkFirstLevel(mem, pe.fl, addr, access, out, this.#useCaches ? { psc: { cache: c.flPsc, tag } } : undefined);
  }

  /**
   * SecondStage for nested walks: the guest-physical translations of the
   * domain are cached in the IOTLB too (class NESTED_SECOND, tagged by DID),
   * in front of a second-level walk with the second-level PSC.
   */
  #secondStage(gpa: number, access: WalkAccess, out: WalkResult): boolean {
    const sl = this.#nestedSl;
    if (sl === null) {
      resetWalkResult(out);
      out.stage = "second";
      out.kind = "table-abort";
      return false;
    }
    const did = this.#nestedDid;
    const tag = cacheTag(CacheClass.NESTED_SECOND, did, 0);
    const pfn = Math.floor(gpa / PAGE);
    if (this.#useCaches) {
      const node = this.#caches.lookupIotlb(tag, pfn);
      if (node !== undefined) {
        const e = node.value;
        if (e.fault === 0 && (access.write ? e.write : e.read) && (access.exec !== true || e.exec)) {
          resetWalkResult(out);
          out.stage = "second";
          out.ok = true;
          out.pa = e.pageBase + (gpa - e.inputBase);
          out.pageSize = e.size;
          out.read = e.read;
          out.write = e.write;
          out.exec = e.exec;
          out.user = true;
          return true;
        }
      }
    }
    walkSecondLevel(this.#mem, sl, gpa, access, out, this.#useCaches ? { psc: { cache: this.#caches.slPsc, tag: did } } : undefined);
    if (out.ok && this.#useCaches) {
      const off = modulo(gpa, out.pageSize);
      this.#caches.iotlb.insert(tag, iotlbKey(pfn, sizeCodeOf(out.pageSize)), {
        fault: 0, pageBase: out.pa - off, size: out.pageSize, read: out.read, write: out.write, exec: out.exec, user: true,
        sid: -1, pasid: 0, hadPasid: false, rightsFor: RightsFor.ANY, cls: CacheClass.NESTED_SECOND, did, inputBase: gpa - off,
      });
    }
    return out.ok;
  }

  /** The context entry of `sid` as the unit sees it (through the context cache). */
  contextOf(sid: number): CtxInfo {
    this.#reqSeq++; // a request of its own (a page request): the accounting starts afresh
    return this.#context(sid);
  }

  #context(sid: number): CtxInfo {
    this.#ctxNode = undefined;
    const cacheable = this.#useCaches && isSourceId(sid);
    if (cacheable) {
      const node = this.#caches.context.lookup(0, sid);
      if (node !== undefined) {
        this.#ctxNode = node;
        return node.value;
      }
    }
    const before = this.#mem.stats.reads;
    const info = fetchContext(this.#mem, this.#root.rootTable, sid, this.#cfg, this.#ctxScratch);
    this.#countStructureReads(this.#mem.stats.reads - before);
    const notPresent = info.fault === FaultReason.ROOT_ENTRY_NOT_PRESENT || info.fault === FaultReason.CONTEXT_ENTRY_NOT_PRESENT;
    if (cacheable && (info.fault === 0 || (notPresent && this.#cfg.cachingMode))) {
      this.#ctxNode = this.#caches.context.insert(0, sid, info);
    }
    return info;
  }

  #pasidInfo(sid: number, pasid: number, ctx: CtxInfo): PasidInfo {
    this.#peNode = undefined;
    const cacheable = this.#useCaches && isSourceId(sid);
    if (cacheable) {
      const node = this.#caches.lookupPasid(sid, pasid);
      if (node !== undefined) {
        this.#peNode = node;
        return node.value;
      }
    }
    const before = this.#mem.stats.reads;
    const info = fetchPasid(this.#mem, ctx, pasid, this.#cfg, this.#pasidScratch);
    this.#countStructureReads(this.#mem.stats.reads - before);
    const notPresent = info.fault === FaultReason.PASID_DIR_NOT_PRESENT || info.fault === FaultReason.PASID_ENTRY_NOT_PRESENT;
    if (cacheable && (info.fault === 0 || (notPresent && this.#cfg.cachingMode))) {
      this.#peNode = this.#caches.insertPasid(sid, pasid, info);
    }
    return info;
  }

  #fault(reason: number, fpd: boolean, pageLevel: boolean, ctx?: CtxInfo, pe?: PasidInfo, firstLevelPageFault = pageLevel): TranslateFault {
    const d = this.lastFault;
    d.reason = reason;
    d.fpd = fpd;
    d.pageLevel = pageLevel;
    const recoverable =
      firstLevelPageFault && this.#cfg.pageRequests && ctx?.pre === true &&
      (pe?.pgtt === Pgtt.FIRST_LEVEL || pe?.pgtt === Pgtt.NESTED);
    return { ok: false, reason, name: faultReasonName(reason), recoverable };
  }
}
