import type { CacheNode } from "../cache/tagged-lru.js";
import type { ReadonlyNodeIndex } from "../cache/node-index.js";
import type { DmaRequest, TranslateFault, TranslateOk, TranslateResult } from "../iommu-port.js";
import { type PhysMem, type WalkAccess, type ArmS1Config, type ArmStage2, type ArmWalkResult, ArmPerm as Perm, neededPerms, walkStage1, walkStage2, newArmWalkResult, resetArmWalkResult } from "@vsva/pgtable";
import { type SmmuCaches, type TlbClassValue, type TlbEntry, type TlbNode, GLOBAL_ASID, TlbClass, tlbTag } from "./caches.js";
import { type CdInfo, ConfigScratch, type ConfigFault, type SteInfo, type StreamTableRegs, fetchCd, fetchSte, s2Event } from "./config.js";
import type { SmmuConfig } from "./options.js";
import { ABORT_NO_EVENT, EventClass, EventId, S1Dss, Strw, eventName } from "./structures.js";

const PAGE = 4096;
const UTLB_MASK = 63;

interface UtlbSlot {
  node: TlbNode | null;
  ste: CacheNode<SteInfo> | null;
  cd: CacheNode<CdInfo> | null;
  sid: number;
  ssid: number;
}
/**
 * The stage-1 lookup of the stream the micro-TLB last served, as far as it
 * depends on the stream alone: its STE and CD cache nodes, the TLB tag of its
 * ASID (with the TLB's handle on that tag) and whether it may make ATS
 * requests. Trusted only while both nodes are valid and they are still the
 * stream's fast STE and CD, i.e. exactly when the full pipeline would take
 * the same STE and CD without a counted lookup and probe this tag first.
 */
interface ResolvedStream {
  readonly sid: number;
  readonly ssid: number;
  readonly ste: CacheNode<SteInfo>;
  readonly cd: CacheNode<CdInfo>;
  readonly tag: number;
  readonly ats: boolean;
  /** The TLB's entries of `tag` (`TaggedLru.keysOf`), as last taken; empty for good once the tag empties. */
  keys: ReadonlyNodeIndex<TlbNode> | undefined;
}

const TWO63 = 2 ** 63;
const TWO64 = 2 ** 64;
const TABLE_READ: WalkAccess = Object.freeze({ write: false });
/** What `lastWalk` shows for a request that walked nothing. */
const NO_WALK: Readonly<ArmWalkResult> = Object.freeze(newArmWalkResult());

/** Unit state the pipeline reads (kept current by the unit's register writes). */
export interface SmmuState {
  /** CR0ACK.SMMUEN. */
  enabled: boolean;
  /** GBPA.ABORT as last updated. */
  gbpaAbort: boolean;
  /** CR2.RECINVSID. */
  recordInvalidSid: boolean;
  st: StreamTableRegs;
}

/** The event the last fault should produce (the unit writes the record, or not). */
export interface FaultDetail {
  event: number;
  /** Whether a record is due (CD.R / STE.S2R for translation-class faults; always for configuration errors; never for aborts). */
  record: boolean;
  /** A translation-class fault of an ATS translation request: answered to the device, not recorded. */
  ats: boolean;
  ssid: number;
  s2: boolean;
  cls: number;
  ipa: number;
  fetchAddr: number;
  /**
   * The transaction may stall instead of being terminated: a translation-class
   * fault of a non-ATS request, at stage 1 with CD.S = 1 or at stage 2 with
   * STE.S2S = 1 (SMMUv3 spec: SMMU_IDR0.STALL_MODEL, STE.S2S §5.2, CD.S §5.4). Whether
   * it does is the unit's decision (a free STAG, room in the event queue).
   */
  stall: boolean;
}

const modulo = (a: number, m: number): number => a - Math.floor(a / m) * m;
const TRANSLATION_CLASS = new Set<number>([EventId.F_TRANSLATION, EventId.F_ADDR_SIZE, EventId.F_ACCESS, EventId.F_PERMISSION]);

/**
 * The SMMU's translation pipeline: STE (through the STE cache), SubstreamID
 * and S1DSS handling, CD (through the CD cache; through stage 2 when
 * nested), TLB, then a stage-1, stage-2 or nested walk with the walk caches
 * as hooks. Every structure problem becomes its event; nothing in memory
 * or in a request makes it throw.
 *
 * A 64-entry micro-TLB sits in front: while a slot's TLB node and the STE
 * and CD cache nodes that led to it are valid, a request from the same
 * StreamID and SubstreamID within that page is served without a lookup.
 */
export class SmmuTranslator {
  readonly lastFault: FaultDetail = { event: 0, record: false, ats: false, ssid: -1, s2: false, cls: 0, ipa: 0, fetchAddr: 0, stall: false };
  /** Perm bits of the last successful translation (for the cache checker): the TLB entry's, when a hit gave it. */
  get lastPerms(): number {
    return this.#lastHit?.value.perms ?? this.#lastPerms;
  }

  #lastPerms = 0;
  #lastHit: TlbNode | null = null;
  readonly #walk: ArmWalkResult = newArmWalkResult();
  readonly #s2out: ArmWalkResult = newArmWalkResult();
  readonly #scratch = new ConfigScratch();
  readonly #stage2: ArmStage2 = { translate: (ipa, access, table, out) => this.#s2(ipa, access, table, out) };
  #curSte: SteInfo | null = null;
  /**
   * A small direct-mapped micro-TLB (as an SMMU's TBU keeps next to a port),
   * indexed by page and StreamID. Every slot holds the TLB, STE and CD cache
   * nodes that produced it and is trusted only while all three are valid,
   * so an invalidation takes effect here the moment it reaches the caches.
   */
  readonly #utlb: UtlbSlot[] = Array.from({ length: UTLB_MASK + 1 }, () => ({ node: null, ste: null, cd: null, sid: -1, ssid: -2 }));
  #stream: ResolvedStream | null = null;
  #fastSte: CacheNode<SteInfo> | null = null;
  #fastCd: CacheNode<CdInfo> | null = null;
  #fastSid = -1;
  #fastSsid = -2;
  #steNode: CacheNode<SteInfo> | undefined;
  #cdNode: CacheNode<CdInfo> | undefined;
  // Per-request accounting, reset lazily: a counter belongs to the request whose number it carries,
  // so a hit, a bypass or a configuration fault reads as "no walk" without any work on the hit path.
  #reqSeq = 0;
  #walkSeq = -1;
  #structSeq = -1;
  #structureReads = 0;

  constructor(
    private readonly mem: PhysMem,
    private readonly cfg: SmmuConfig,
    private readonly caches: SmmuCaches,
    private readonly state: SmmuState,
    private readonly useCaches = true,
  ) {}

  resetFastPath(): void {
    for (const u of this.#utlb) u.node = null;
    this.#fastSid = -1;
    this.#stream = null;
  }

  /**
   * The translation-table walk of the last request (descriptor reads, walk-cache hits): all zero when
   * that request walked nothing (a TLB hit, bypass, a fault before the walk). STE, CD and level-1
   * descriptor fetches (with the stage-2 walks that locate a nested CD) are not in it: see
   * {@link lastStructureReads}.
   */
  get lastWalk(): Readonly<ArmWalkResult> {
    return this.#walkSeq === this.#reqSeq ? this.#walk : NO_WALK;
  }

  /** 64-bit memory reads of the last request fetching stream-table and context-descriptor structures. */
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

  translate(req: DmaRequest): TranslateResult {
    this.#reqSeq++;
    const addr = req.addr;
    const slot = this.#utlb[(((addr / PAGE) | 0) ^ req.sid) & UTLB_MASK];
    const ssid = req.pasid ?? -1;
    const priv = ssid !== -1 && req.priv === true;
    const need = neededPerms(req.write, ssid !== -1 && req.exec === true, priv);
    if (slot !== undefined && slot.node !== null && slot.sid === req.sid && slot.ssid === ssid && slot.node.valid) {
      const node = slot.node;
      const ste = slot.ste;
      const cd = slot.cd;
      if (ste !== null && ste.valid && (cd === null || cd.valid) && this.state.enabled && (req.ats !== true || ste.value.eats !== 0)) {
        // The same address and needed permissions as the entry's memo: its own checks passed for them.
        const m = node.memo;
        if (m !== null && node.memoKey === addr && node.memoAux === need) {
          this.caches.tlb.noteHit(node);
          this.#lastHit = node;
          return m;
        }
        const e = node.value;
        const off = addr - e.inputBase;
        if (off >= 0 && off < e.size && (e.perms & need) === need) {
          this.caches.tlb.noteHit(node);
          return this.#hit(node, addr, priv, need);
        }
      }
    }
    // The TLB proper, for the stream the micro-TLB last served: one probe of its ASID's entries
    // through the kept handle, counted as the lookup it stands for. Only a lower-half address
    // (TTB0) granting the access is served here; anything else takes the full pipeline.
    const rs = this.#stream;
    if (
      rs !== null && rs.sid === req.sid && rs.ssid === ssid && addr >= 0 && addr < TWO63 && Number.isInteger(addr) && rs.ste === this.#fastSte && rs.cd === this.#fastCd &&
      req.sid === this.#fastSid && ssid === this.#fastSsid && rs.ste.valid && rs.cd.valid && this.state.enabled && (req.ats !== true || rs.ats)
    ) {
      let keys = rs.keys;
      if (keys === undefined || keys.size === 0) keys = rs.keys = this.caches.tlb.keysOf(rs.tag);
      // Only the 4 KiB key: a page of a block entry, or a miss, takes the full pipeline's counted
      // lookup, which probes every size (V8's inlining budget for this function is better spent).
      const node = keys === undefined ? undefined : keys.get(Math.floor(addr / PAGE) * 4);
      if (node !== undefined && ((node.memoKey === addr && node.memoAux === need) || (node.value.perms & need) === need)) {
        this.caches.tlb.noteHit(node);
        this.lastFault.ssid = ssid;
        this.#cdNode = rs.cd;
        this.#steNode = rs.ste;
        // #setFast, written out: the stream is already the fast one (checked above), so only the slot changes.
        if (slot !== undefined) {
          slot.node = node;
          slot.ste = rs.ste;
          slot.cd = rs.cd;
          slot.sid = req.sid;
          slot.ssid = ssid;
        }
        return this.#hit(node, addr, priv, need);
      }
    }
    return this.#slow(req);
  }

  #slow(req: DmaRequest): TranslateResult {
    const st = this.state;
    const addr = req.addr;
    this.lastFault.ssid = req.pasid ?? -1;
    this.#cdNode = undefined;
    if (!st.enabled) {
      if (st.gbpaAbort) return this.#fault(ABORT_NO_EVENT, false);
      return this.#ok(addr, PAGE, Perm.ALL, false);
    }
    // The STE and CD of the stream the micro-TLB last served are reused while their cache nodes are valid.
    const ste = this.#sameStream(req) ? this.#fastSteInfo() ?? this.#ste(req.sid) : this.#ste(req.sid);
    if (ste.fault !== null) return this.#configFault(ste.fault, ste.fault.event !== EventId.C_BAD_STREAMID || st.recordInvalidSid);
    if (ste.kind === "abort") return this.#fault(ABORT_NO_EVENT, false);
    if (req.ats === true && (!this.cfg.ats || ste.eats === 0)) return this.#fault(EventId.F_BAD_ATS_TREQ, true);
    const hasSsid = req.pasid !== undefined;
    const ssidIn = req.pasid ?? -1;
    const priv = hasSsid && req.priv === true;
    const exec = hasSsid && req.exec === true;
    if (!Number.isInteger(addr)) return this.#fault(EventId.F_TRANSLATION, true);

    // A SubstreamID on a stream whose stage 1 is bypassed has no CD to select.
    if ((ste.kind === "bypass" || ste.kind === "s2") && hasSsid) return this.#fault(EventId.C_BAD_SUBSTREAMID, true);
    if (ste.kind === "bypass") return this.#bypass(addr);
    if (ste.kind === "s2") return this.#stage2Only(req, ste, addr, { write: req.write, exec, priv }, ssidIn);

    let ssid: number;
    if (hasSsid) {
      if (ste.cdMax === 0 || !Number.isInteger(ssidIn) || ssidIn < 0 || ssidIn >= 2 ** ste.cdMax) return this.#fault(EventId.C_BAD_SUBSTREAMID, true);
      ssid = ssidIn;
    } else if (ste.cdMax === 0 || ste.s1dss === S1Dss.SSID0) {
      ssid = 0;
    } else if (ste.s1dss === S1Dss.TERMINATE) {
      return this.#fault(EventId.F_STREAM_DISABLED, true);
    } else {
      // S1DSS = bypass: stage 1 is skipped for traffic without a SubstreamID.
      return ste.kind === "nested" ? this.#stage2Only(req, ste, addr, { write: req.write, exec, priv }, ssidIn) : this.#bypass(addr);
    }
    const cd = this.#sameStream(req) ? this.#fastCdInfo() ?? this.#cd(req.sid, ssid, ste) : this.#cd(req.sid, ssid, ste);
    if (cd.fault !== null) {
      const f = cd.fault;
      return this.#configFault(f, !f.s2 || !TRANSLATION_CLASS.has(f.event) || ste.s2r);
    }
    // Our reading of the spec: a CD that asks to stall on a stream whose STE disables stage-1 stalls is ILLEGAL (C_BAD_CD), as we read the S1STALLD description.
    if (cd.stall && ste.s1stalld) {
      return this.#configFault({ event: EventId.C_BAD_CD, fetchAddr: 0, s2: false, ipa: 0, why: "CD.S = 1 with STE.S1STALLD = 1" }, true);
    }
    const va = addr >= TWO63 ? addr - TWO64 : addr;
    const s1: ArmS1Config | null = va < 0 ? cd.ttb1 : cd.ttb0;
    if (s1 === null) return this.#fault(EventId.F_TRANSLATION, cd.record, req.ats === true, true, cd.stall);
    const cls: TlbClassValue = ste.strw === Strw.EL2 ? TlbClass.EL2 : ste.kind === "nested" ? TlbClass.NESTED : TlbClass.S1;
    const vmid = cls === TlbClass.EL2 ? 0 : ste.vmid;
    const pfn = Math.floor(va / PAGE);
    if (this.useCaches) {
      this.#keepStream(req, ste, cls, vmid, cd.asid, va);
      const node = this.caches.lookupS1(cls, vmid, cd.asid, pfn);
      if (node !== undefined) {
        const e = node.value;
        const need = neededPerms(req.write, exec, priv);
        if ((e.perms & need) === need) {
          this.#setFast(node, req);
          return this.#hit(node, va, priv, need);
        }
        // Rights not in the cached entry: a fresh walk decides (the tables may have gained them).
      }
    }
    this.#curSte = ste;
    const tag = tlbTag(cls, vmid, cd.asid);
    this.#walkSeq = this.#reqSeq;
    const w = walkStage1(this.mem, s1, va, { write: req.write, exec, priv }, this.#walk, {
      ...(ste.kind === "nested" ? { stage2: this.#stage2 } : {}),
      ...(this.useCaches ? { walkCache: { cache: this.caches.s1wc, tag } } : {}),
    });
    if (!w.ok) return this.#walkFault(w, w.stage === 2 ? ste.s2r : cd.record, req.ats === true, this.cfg.pri && w.stage === 1, w.stage === 2 ? ste.s2s : cd.stall);
    const off = modulo(va, w.pageSize);
    const e: TlbEntry = {
      pageBase: w.pa - off, size: w.pageSize, perms: w.perms, inputBase: va - off, cls, vmid,
      asid: w.global ? GLOBAL_ASID : cd.asid, sid: req.sid, ssid: ssidIn,
    };
    if (this.useCaches) this.#setFast(this.caches.insert(e), req);
    return this.#ok(w.pa, w.pageSize, w.perms, priv);
  }

  #bypass(addr: number): TranslateResult {
    if (addr < 0 || addr >= 2 ** this.cfg.oas) return this.#fault(EventId.F_ADDR_SIZE, true);
    return this.#ok(addr, PAGE, Perm.ALL, false);
  }

  #stage2Only(req: DmaRequest, ste: SteInfo, ipa: number, access: WalkAccess, ssid: number): TranslateResult {
    const s2 = ste.s2;
    if (s2 === null) return this.#fault(EventId.C_BAD_STE, true);
    const pfn = Math.floor(ipa / PAGE);
    const tag = tlbTag(TlbClass.S2, ste.vmid, 0);
    const need = neededPerms(access.write, access.exec === true, access.priv === true);
    if (this.useCaches) {
      const node = this.caches.lookupTag(tag, pfn);
      if (node !== undefined && (node.value.perms & need) === need) {
        this.#setFast(node, req);
        return this.#hit(node, ipa, access.priv === true, need);
      }
    }
    this.#walkSeq = this.#reqSeq;
    const w = walkStage2(this.mem, s2, ipa, access, false, this.#walk, this.useCaches ? { walkCache: { cache: this.caches.s2wc, tag: ste.vmid } } : undefined);
    if (!w.ok) return this.#walkFault(w, ste.s2r, req.ats === true, false, ste.s2s);
    const off = modulo(ipa, w.pageSize);
    if (this.useCaches) {
      const node = this.caches.insert({ pageBase: w.pa - off, size: w.pageSize, perms: w.perms, inputBase: ipa - off, cls: TlbClass.S2, vmid: ste.vmid, asid: 0, sid: req.sid, ssid });
      this.#setFast(node, req);
    }
    return this.#ok(w.pa, w.pageSize, w.perms, access.priv === true);
  }

  /** Stage 2 of a nested walk (and of a nested CD fetch), with the S2 TLB entries in front. */
  #s2(ipa: number, access: WalkAccess, table: boolean, out: ArmWalkResult): boolean {
    const ste = this.#curSte;
    const s2 = ste?.s2 ?? null;
    if (ste === null || s2 === null) {
      resetArmWalkResult(out);
      out.stage = 2;
      out.kind = "translation";
      return false;
    }
    const tag = tlbTag(TlbClass.S2, ste.vmid, 0);
    const pfn = Math.floor(ipa / PAGE);
    // With S2PTW a table fetch must see the memory type, which the TLB entry does not keep.
    const useTlb = this.useCaches && !(table && s2.ptw);
    if (useTlb) {
      const node = this.caches.lookupTag(tag, pfn);
      const need = neededPerms(access.write, access.exec === true, access.priv === true);
      if (node !== undefined && (node.value.perms & need) === need) {
        const e = node.value;
        resetArmWalkResult(out);
        out.stage = 2;
        out.ok = true;
        out.pa = e.pageBase + (ipa - e.inputBase);
        out.pageSize = e.size;
        out.perms = e.perms;
        return true;
      }
    }
    walkStage2(this.mem, s2, ipa, access, table, out, this.useCaches ? { walkCache: { cache: this.caches.s2wc, tag: ste.vmid } } : undefined);
    if (out.ok && useTlb) {
      const off = modulo(ipa, out.pageSize);
      this.caches.insert({ pageBase: out.pa - off, size: out.pageSize, perms: out.perms, inputBase: ipa - off, cls: TlbClass.S2, vmid: ste.vmid, asid: 0, sid: -1, ssid: -1 });
    }
    return out.ok;
  }

  /** The STE of `sid` as the unit sees it (through the STE cache). */
  steOf(sid: number): SteInfo {
    this.#reqSeq++; // a request of its own (a page request): the accounting starts afresh
    return this.#ste(sid);
  }

  #sameStream(req: DmaRequest): boolean {
    return this.useCaches && req.sid === this.#fastSid && (req.pasid ?? -1) === this.#fastSsid;
  }

  #fastSteInfo(): SteInfo | undefined {
    const n = this.#fastSte;
    if (!n?.valid) return undefined;
    this.#steNode = n;
    return n.value;
  }

  #fastCdInfo(): CdInfo | undefined {
    const n = this.#fastCd;
    if (!n?.valid) return undefined;
    this.#cdNode = n;
    return n.value;
  }

  /** The CD of (sid, ssid) as the pipeline finds it (or the STE that has none). */
  cdOf(sid: number, ssid: number): CdInfo | SteInfo {
    const ste = this.#ste(sid);
    if (ste.fault !== null || (ste.kind !== "s1" && ste.kind !== "nested")) return ste;
    return this.#cd(sid, ssid, ste);
  }

  #ste(sid: number): SteInfo {
    this.#steNode = undefined;
    if (this.useCaches) {
      const node = this.caches.ste.lookup(sid, 0);
      if (node !== undefined) {
        this.#steNode = node;
        return node.value;
      }
    }
    const before = this.mem.stats.reads;
    const info = fetchSte(this.mem, this.state.st, sid, this.cfg, this.#scratch);
    this.#countStructureReads(this.mem.stats.reads - before);
    // Only valid configurations are cached: an error is re-fetched (and reported) every time.
    if (this.useCaches && info.fault === null) this.#steNode = this.caches.ste.insert(sid, 0, info);
    return info;
  }

  #cd(sid: number, ssid: number, ste: SteInfo): CdInfo {
    this.#cdNode = undefined;
    if (this.useCaches) {
      const node = this.caches.cd.lookup(sid, ssid);
      if (node !== undefined) {
        this.#cdNode = node;
        return node.value;
      }
    }
    this.#curSte = ste;
    const before = this.mem.stats.reads;
    const info = fetchCd(this.mem, ste, ssid, this.cfg, this.#scratch, ste.kind === "nested" ? (ipa) => this.#cdStage2(ipa) : undefined);
    this.#countStructureReads(this.mem.stats.reads - before);
    if (this.useCaches && info.fault === null) this.#cdNode = this.caches.cd.insert(sid, ssid, info);
    return info;
  }

  #cdStage2(ipa: number): ArmWalkResult {
    this.#s2(ipa, TABLE_READ, false, this.#s2out);
    return this.#s2out;
  }

  /** Keeps what the stage-1 lookup of `req`'s stream depends on for the TLB-proper fast path ({@link ResolvedStream}), when it came from cached STE and CD entries. */
  #keepStream(req: DmaRequest, ste: SteInfo, cls: number, vmid: number, asid: number, va: number): void {
    const steNode = this.#steNode;
    const cdNode = this.#cdNode;
    if (steNode === undefined || cdNode === undefined || va < 0) return;
    const ssid = req.pasid ?? -1;
    const tag = tlbTag(cls, vmid, asid);
    const rs = this.#stream;
    if (rs?.sid === req.sid && rs.ssid === ssid && rs.ste === steNode && rs.cd === cdNode && rs.tag === tag) return;
    this.#stream = { sid: req.sid, ssid, ste: steNode, cd: cdNode, tag, ats: this.cfg.ats && ste.eats !== 0, keys: this.caches.tlb.keysOf(tag) };
  }

  /**
   * The answer of a TLB hit on `node` for input address `input`, the entry having been found to
   * grant a request needing the permissions `need` (`neededPerms`, which also carry the privilege):
   * the node's memo when it was made for the same address and `need`, else a new frozen answer,
   * memoised on the node. Its fields follow from the entry, the address and the privilege alone,
   * so the shared frozen object is what a fresh one would be; and a memo kept for (`input`, `need`)
   * says the entry's own check passed for such a request, so the micro-TLB may skip it.
   */
  #hit(node: TlbNode, input: number, priv: boolean, need: number): TranslateOk {
    const m = node.memo;
    if (m !== null && node.memoKey === input && node.memoAux === need) {
      this.#lastHit = node;
      return m;
    }
    const e = node.value;
    const r = Object.freeze(this.#ok(e.pageBase + (input - e.inputBase), e.size, e.perms, priv));
    this.#lastHit = node;
    node.memo = r;
    node.memoKey = input;
    node.memoAux = need;
    return r;
  }

  #setFast(node: TlbNode, req: DmaRequest): void {
    const steNode = this.#steNode;
    if (steNode === undefined) return;
    const slot = this.#utlb[(((req.addr / PAGE) | 0) ^ req.sid) & UTLB_MASK];
    if (slot !== undefined) {
      slot.node = node;
      slot.ste = steNode;
      slot.cd = this.#cdNode ?? null;
      slot.sid = req.sid;
      slot.ssid = req.pasid ?? -1;
    }
    this.#fastSte = steNode;
    this.#fastCd = this.#cdNode ?? null;
    this.#fastSid = req.sid;
    this.#fastSsid = req.pasid ?? -1;
  }

  #ok(pa: number, size: number, perms: number, priv: boolean): TranslateOk {
    this.#lastHit = null;
    this.#lastPerms = perms;
    const r = priv ? Perm.PRIV_READ : Perm.USER_READ;
    const w = priv ? Perm.PRIV_WRITE : Perm.USER_WRITE;
    const x = priv ? Perm.PRIV_EXEC : Perm.USER_EXEC;
    return {
      ok: true, pa, size, read: (perms & r) !== 0, write: (perms & w) !== 0, exec: (perms & x) !== 0,
      privOnly: (perms & (Perm.USER_READ | Perm.USER_WRITE | Perm.USER_EXEC)) === 0,
    };
  }

  #configFault(f: ConfigFault, record: boolean): TranslateFault {
    const d = this.lastFault;
    d.s2 = f.s2;
    d.cls = EventClass.CD;
    d.ipa = f.ipa;
    d.fetchAddr = f.fetchAddr;
    return this.#finish(f.event, record, false, false);
  }

  #walkFault(w: ArmWalkResult, recordTranslation: boolean, ats: boolean, pageLevel: boolean, stall: boolean): TranslateFault {
    const d = this.lastFault;
    const event = s2Event(w);
    d.s2 = w.stage === 2;
    d.cls = w.stage === 2 && w.s2Phase === "table" ? EventClass.TT : EventClass.IN;
    d.ipa = w.ipa;
    d.fetchAddr = w.fetchAddr;
    const translationClass = TRANSLATION_CLASS.has(event);
    const recoverable = pageLevel && event !== EventId.F_ADDR_SIZE && translationClass;
    return this.#finish(event, translationClass ? recordTranslation : true, ats && translationClass, recoverable, stall && translationClass && !ats);
  }

  #fault(event: number, record: boolean, ats = false, recoverable = false, stall = false): TranslateFault {
    const d = this.lastFault;
    d.s2 = false;
    d.cls = EventClass.IN;
    d.ipa = 0;
    d.fetchAddr = 0;
    return this.#finish(event, record && event !== ABORT_NO_EVENT, ats, recoverable && this.cfg.pri, stall && !ats);
  }

  #finish(event: number, record: boolean, ats: boolean, recoverable: boolean, stall = false): TranslateFault {
    const d = this.lastFault;
    d.event = event;
    d.record = record;
    d.ats = ats;
    d.stall = stall;
    return { ok: false, reason: event, name: eventName(event), recoverable };
  }
}
