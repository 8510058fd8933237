import { checkRequestAddress } from "../request-check.js";
import { Errno, KernelError, type SourceId, type TraceBus, type TraceIds, formatBdf } from "@vsva/kernel";
import type { DmaRequest, EndpointPort, IommuPort, PageRequest, TranslateFault, TranslateResult } from "../iommu-port.js";
import { type PhysMem, ReadOnlyMem } from "@vsva/pgtable";
import { DEFAULT_CACHE_CAPACITIES, VtdCaches } from "./caches.js";
import { VtdDebug } from "./debug.js";
import { EventSource } from "./events.js";
import { FaultReason, faultReasonName } from "./fault-reason.js";
import { FaultRecorder } from "./fault-recorder.js";
import { type InvalidationContext, executeDescriptor } from "./inv-exec.js";
import { InvalidationQueue } from "./inv-queue.js";
import { type VtdConfig, type VtdOptions, resolveConfig } from "./options.js";
import { PageRequestQueue } from "./prq.js";
import { RegisterFile } from "../mmio/register-file.js";
import { type Mmio, checkMmio32, checkMmio64, joinDwords } from "../mmio/mmio.js";
import {
  CapReg,
  CcmdReg,
  EcapReg,
  GcmdReg,
  GstsReg,
  IcsReg,
  IotlbReg,
  IrtaReg,
  IvaReg,
  REG_WINDOW,
  RegOffset,
  RtaddrReg,
  VerReg,
} from "./regs.js";
import "./trace-events.js";
import { type RootState, Translator } from "./translate.js";
import { VirtualCommand } from "./vcmd.js";
import { encodeCaps } from "./cap-image.js";
import { DescType, INV_TYPE_NAMES } from "./descriptors.js";
import { type DeferredOutcome, type VtdTrap, deferredOutcome, entryBytes, entryReply, readReply, vcmdReply, writeReply } from "../trap.js";

/**
 * An emulated Intel VT-d remapping unit in scalable mode.
 *
 * Software drives it only through its registers (`mmio*`) and the structures
 * in memory they point at; endpoints reach it through {@link IommuPort} and
 * are reached through the {@link EndpointPort} they register by source ID.
 *
 * Its registers are an {@link Mmio} window: 64-bit values are `bigint`s,
 * and 32-bit accesses to either half of a 64-bit register are allowed.
 * Unimplemented offsets read 0 and ignore writes.
 *
 * Nothing software or a device writes can make it throw: bad values produce
 * the architectural fault, queue error or status (a value that is not a
 * register value at all is EINVAL at the {@link Mmio} boundary).
 *
 * Made with a `trap` ({@link VtdTrap}), it offers a VMM every register
 * access, every invalidation descriptor it fetches and every virtual
 * command, each to be passed to the model, handled, or (a descriptor)
 * deferred until {@link completeDeferred}. It does not know whether it is
 * a host's unit or a guest's virtual one.
 */
export class VtdUnit implements IommuPort, Mmio {
  readonly cfg: VtdConfig;
  /** Caches, coherence checks, the queue's run-now hand: for tests, benches and invariant checks, not for drivers. */
  readonly debug: VtdDebug;
  readonly #caches: VtdCaches;
  readonly #mem: PhysMem;
  readonly #regs = new RegisterFile(REG_WINDOW);
  readonly #root: RootState = { translationEnabled: false, rootTable: 0, ttm: 0 };
  readonly #translator: Translator;
  readonly #fresh: Translator;
  readonly #roMem: PhysMem;
  readonly #faults: FaultRecorder;
  readonly #faultEvent: EventSource;
  readonly #invEvent: EventSource;
  readonly #prEvent: EventSource | null;
  readonly #iq: InvalidationQueue;
  readonly #prq: PageRequestQueue | null;
  readonly #vcmd: VirtualCommand | null;
  readonly #trap: VtdTrap | null;
  readonly #endpoints = new Map<number, EndpointPort>();
  readonly #trace: TraceBus | undefined;
  readonly #gcmd: Uint32Array;
  readonly #gsts: Uint32Array;
  readonly #rtaddr: Uint32Array;
  readonly #ccmd: Uint32Array;
  readonly #ics: Uint32Array;
  readonly #iva: Uint32Array;
  readonly #iotlbReg: Uint32Array;
  readonly #iotlbOffset: number;

  /** EINVAL when the options describe an impossible unit. */
  constructor(opts: VtdOptions) {
    const cfg = resolveConfig(opts);
    this.cfg = cfg;
    this.#mem = opts.mem;
    this.#trace = opts.trace;
    const sizes = { ...DEFAULT_CACHE_CAPACITIES, ...opts.caches };
    for (const [k, v] of Object.entries(sizes)) {
      if (!Number.isInteger(v) || v < 1) throw new KernelError(Errno.EINVAL, `VT-d unit: ${k} cache capacity ${String(v)} must be a positive integer`);
    }
    this.#caches = new VtdCaches(sizes);
    const regs = this.#regs;

    const ver = regs.define(RegOffset.VER, VerReg);
    VerReg.set(ver, "MAX", cfg.version.major & 0xf);
    VerReg.set(ver, "MIN", cfg.version.minor & 0xf);
    const caps = encodeCaps(cfg);
    regs.define(RegOffset.CAP, CapReg).set(caps.cap);
    regs.define(RegOffset.ECAP, EcapReg).set(caps.ecap);
    this.#gcmd = regs.define(RegOffset.GCMD, GcmdReg);
    this.#gsts = regs.define(RegOffset.GSTS, GstsReg);
    this.#rtaddr = regs.define(RegOffset.RTADDR, RtaddrReg);
    this.#ccmd = regs.define(RegOffset.CCMD, CcmdReg);
    regs.define(RegOffset.IRTA, IrtaReg);
    this.#ics = regs.define(RegOffset.ICS, IcsReg);
    this.#iotlbOffset = cfg.iotlbOffset;
    this.#iva = regs.define(this.#iotlbOffset, IvaReg);
    this.#iotlbReg = regs.define(this.#iotlbOffset + 8, IotlbReg);

    const deliver = opts.onInterrupt;
    this.#faultEvent = new EventSource(regs, RegOffset.FECTL, "fault", deliver);
    this.#invEvent = new EventSource(regs, RegOffset.IECTL, "invalidation", deliver);
    this.#faults = new FaultRecorder(regs, cfg.faultRecordOffset, cfg.faultRecords, this.#faultEvent);

    if (cfg.pageRequests) {
      this.#prEvent = new EventSource(regs, RegOffset.PECTL, "page-request", deliver);
      this.#prq = new PageRequestQueue(regs, this.#mem, this.#prEvent);
    } else {
      this.#prEvent = null;
      this.#prq = null;
    }
    this.#vcmd = cfg.virtualCommand ? new VirtualCommand(regs, cfg.pasidBits) : null;
    this.#trap = opts.trap ?? null;

    this.#translator = new Translator(this.#mem, cfg, this.#caches, this.#root);
    this.#roMem = new ReadOnlyMem(this.#mem);
    this.#fresh = new Translator(this.#roMem, cfg, this.#caches, this.#root, false);

    const inv = opts.invalidation ?? "immediate";
    const wq = inv === "immediate" ? null : inv.scheduler.createWorkqueue(`${cfg.name}-qi`);
    const ictx: InvalidationContext = {
      mem: this.#mem,
      cfg,
      caches: this.#caches,
      endpoint: (sid) => this.#endpoints.get(sid),
      scalableMode: () => this.#root.ttm === 1,
      waitInterrupt: () => {
        const wasSet = IcsReg.get(this.#ics, "IWC") === 1;
        IcsReg.set(this.#ics, "IWC", 1);
        if (!wasSet) this.#invEvent.raise();
      },
      trace: this.#trace,
    };
    this.#iq = new InvalidationQueue(
      regs,
      this.#mem,
      {
        enabled: () => GstsReg.get(this.#gsts, "QIES") === 1,
        stopped: () => this.#faults.status("IQE"),
        error: (iqei, head) => {
          this.#faults.setStatus("IQE");
          this.#trace?.emit("vtd.queue-error", "HW", {}, { unit: cfg.name, iqei, head });
        },
        execute: (d, wide) => executeDescriptor(ictx, d, wide),
        fetched: (d, seq, slot, addr) => {
          const trap = this.#trap;
          if (trap === null) return "pass";
          const type = DescType.get(d, "TYPE");
          return entryReply(trap({ kind: "descriptor", seq, slot, addr, ...entryBytes(d), type, name: INV_TYPE_NAMES[type] ?? `type ${type}` }), "descriptor");
        },
      },
      wq,
    );
    this.debug = new VtdDebug({ cfg, caches: this.#caches, root: this.#root, translator: this.#translator, fresh: this.#fresh, roMem: this.#roMem, iq: this.#iq });
  }

  // --- endpoints -------------------------------------------------------------

  /** Registers the endpoint below this unit at its source ID. EEXIST if one is there already. */
  attachEndpoint(ep: EndpointPort): void {
    if (this.#endpoints.has(ep.sid)) throw new KernelError(Errno.EEXIST, `${this.cfg.name}: an endpoint is already attached at ${formatBdf(ep.sid)}`);
    this.#endpoints.set(ep.sid, ep);
  }

  /** ENOENT if nothing is attached at `sid`. */
  detachEndpoint(sid: SourceId): void {
    if (!this.#endpoints.delete(sid)) throw new KernelError(Errno.ENOENT, `${this.cfg.name}: no endpoint at ${formatBdf(sid)}`);
  }

  // --- MMIO ----------------------------------------------------------------

  mmioRead32(offset: number): number {
    const t = this.#trap === null ? null : readReply(this.#trap({ kind: "mmio-read", offset, width: 32 }), 32);
    return t === null ? this.#regs.read32(offset) : Number(t);
  }

  mmioRead64(offset: number): bigint {
    const t = this.#trap === null ? null : readReply(this.#trap({ kind: "mmio-read", offset, width: 64 }), 64);
    return t ?? joinDwords(this.#regs.read32(offset), this.#regs.read32(offset + 4));
  }

  /** EINVAL if `value` does not hold 32 bits (see {@link Mmio}). */
  mmioWrite32(offset: number, value: number): void {
    const v = checkMmio32(value, offset);
    if (this.#trap !== null && !writeReply(this.#trap({ kind: "mmio-write", offset, width: 32, value: BigInt(v) }))) return;
    const owner = this.#regs.write32(offset, v);
    if (owner >= 0) this.#afterWrite(owner, offset);
  }

  /** A 64-bit write (one side effect, after both halves are in). EINVAL unless `value` is a bigint in 0 .. 2^64 − 1. */
  mmioWrite64(offset: number, value: bigint): void {
    const v = checkMmio64(value, offset);
    if (this.#trap !== null && !writeReply(this.#trap({ kind: "mmio-write", offset, width: 64, value }))) return;
    const owner = this.#regs.write32(offset, v.lo);
    this.#regs.write32(offset + 4, v.hi);
    if (owner >= 0) this.#afterWrite(owner, offset);
  }

  #afterWrite(reg: number, offset: number): void {
    switch (reg) {
      case RegOffset.GCMD:
        this.#onGcmd();
        return;
      case RegOffset.FSTS: {
        this.#faults.afterSoftwareWrite();
        this.#iq.kick();
        return;
      }
      case RegOffset.FECTL:
        this.#faultEvent.onCtlWrite();
        return;
      case RegOffset.IECTL:
        this.#invEvent.onCtlWrite();
        return;
      case RegOffset.PECTL:
        this.#prEvent?.onCtlWrite();
        return;
      case RegOffset.IQT:
        this.#iq.kick();
        return;
      case RegOffset.ICS:
        if (IcsReg.get(this.#ics, "IWC") === 0) this.#invEvent.serviced();
        return;
      case RegOffset.PRS:
        this.#prq?.afterPrsWrite();
        return;
      case RegOffset.CCMD:
        this.#onCcmd();
        return;
      case RegOffset.VCMD:
        // The command is in the low dword: a write of the high half alone runs nothing.
        if (offset === RegOffset.VCMD && this.#vcmd !== null) {
          const reply = this.#trap === null ? null : vcmdReply(this.#trap({ kind: "vcmd", ...this.#vcmd.written }));
          const o = this.#vcmd.respond(reply);
          this.#trace?.emit("vtd.vcmd", "HW", {}, { unit: this.cfg.name, ...o });
        }
        return;
      default:
        if (reg === this.#iotlbOffset + 8) this.#onIotlbReg();
        else if (this.#faults.owns(reg)) this.#faults.afterSoftwareWrite();
    }
  }

  /**
   * GCMD (VT-d §10.4 GCMD/GSTS): latched bits are compared with GSTS, one-shot bits act when
   * written as 1. Software is meant to change one command at a time; when a
   * write changes several, they are carried out in bit order, high to low.
   */
  #onGcmd(): void {
    const g = this.#gcmd;
    const s = this.#gsts;
    const te = GcmdReg.get(g, "TE");
    if (te !== GstsReg.get(s, "TES")) {
      GstsReg.set(s, "TES", te);
      this.#root.translationEnabled = te === 1;
      this.#translator.resetFastPath();
    }
    if (GcmdReg.get(g, "SRTP") === 1) {
      this.#root.rootTable = RtaddrReg.getAddr(this.#rtaddr, "RTA");
      this.#root.ttm = RtaddrReg.get(this.#rtaddr, "TTM");
      GstsReg.set(s, "RTPS", 1);
      this.#translator.resetFastPath();
    }
    if (GcmdReg.get(g, "SFL") === 1) GstsReg.set(s, "FLS", 1);
    GstsReg.set(s, "AFLS", 0); // advanced fault logging is not implemented (CAP.AFL=0)
    // Write-buffer flush completes at once: WBFS never reads 1.
    // Without ECAP.QI there is no queue to enable: QIE is ignored and QIES stays 0.
    const qie = this.cfg.queuedInvalidation ? GcmdReg.get(g, "QIE") : 0;
    if (qie !== GstsReg.get(s, "QIES")) {
      GstsReg.set(s, "QIES", qie);
      if (qie === 0) this.#iq.resetHead();
      else this.#iq.kick();
    }
    GstsReg.set(s, "IRES", GcmdReg.get(g, "IRE"));
    if (GcmdReg.get(g, "SIRTP") === 1) GstsReg.set(s, "IRTPS", 1);
    GstsReg.set(s, "CFIS", GcmdReg.get(g, "CFI"));
    // One-shot command bits do not stay set.
    GcmdReg.set(g, "SRTP", 0);
    GcmdReg.set(g, "SFL", 0);
    GcmdReg.set(g, "WBF", 0);
    GcmdReg.set(g, "SIRTP", 0);
  }

  /** Register-based context-cache invalidation (VT-d §10.4 CCMD); completes at once. */
  #onCcmd(): void {
    const c = this.#ccmd;
    if (CcmdReg.get(c, "ICC") === 0) return;
    const g = CcmdReg.get(c, "CIRG");
    if (g === 3) this.#caches.invalidateContextDevice(CcmdReg.get(c, "SID"), CcmdReg.get(c, "FM"));
    else if (g !== 0) this.#caches.context.invalidateAll();
    CcmdReg.set(c, "CAIG", g);
    CcmdReg.set(c, "ICC", 0);
  }

  /** Register-based IOTLB invalidation (VT-d §10.4 IOTLB registers); completes at once. */
  #onIotlbReg(): void {
    const r = this.#iotlbReg;
    if (IotlbReg.get(r, "IVT") === 0) return;
    const g = IotlbReg.get(r, "IIRG");
    const did = IotlbReg.get(r, "DID");
    if (g === 1) this.#caches.invalidateAllTranslations();
    else if (g === 2) this.#caches.invalidateDomain(did);
    else if (g === 3) {
      const am = Math.min(IvaReg.get(this.#iva, "AM"), this.cfg.maxAddressMask);
      const pfn = Math.floor(IvaReg.get(this.#iva, "ADDR") / 2 ** am) * 2 ** am;
      this.#caches.invalidateDomainPages(did, pfn, am, IvaReg.get(this.#iva, "IH") === 1);
    }
    IotlbReg.set(r, "IAIG", g);
    IotlbReg.set(r, "IVT", 0);
  }

  // --- traps --------------------------------------------------------------------

  /** The fetch number of the invalidation descriptor a trap deferred (the queue is stopped at it), or null. */
  get deferred(): number | null {
    return this.#iq.deferredSeq;
  }

  /**
   * Finishes the descriptor a trap deferred (see `QueueEntryTrap`):
   * "pass" executes it now (a wait descriptor writes its status and raises
   * its interrupt here), "handled" moves IQH past it without executing it.
   * The queue then goes on as after an IQT write (at once, or in a work
   * item in deferred mode). ENOENT if `seq` is not the deferred descriptor;
   * EINVAL for another outcome. Nothing changes on either error.
   */
  completeDeferred(seq: number, outcome: DeferredOutcome): void {
    this.#iq.complete(seq, deferredOutcome(outcome));
  }

  // --- the endpoint side ---------------------------------------------------------

  /** Translates one request; EINVAL for an address that is no bus address (see `checkRequestAddress`). */
  translate(req: DmaRequest): TranslateResult {
    checkRequestAddress("VT-d unit", this.cfg.name, req.addr, this.#root.translationEnabled, this.cfg.hostAddrBits);
    const r = this.#translator.translate(req);
    if (!r.ok) this.#reportFault(req, r);
    return r;
  }

  #reportFault(req: DmaRequest, r: TranslateFault): void {
    const d = this.#translator.lastFault;
    let suppressed: "fpd" | "ats" | "overflow" | null = null;
    if (d.fpd) suppressed = "fpd";
    // An ATS translation request that meets a missing page or missing rights
    // gets a completion with R=W=0; the device, not the IOMMU, deals with it.
    else if (req.ats === true && d.pageLevel) suppressed = "ats";
    else {
      const ok = this.#faults.record({
        sid: req.sid,
        ...(req.pasid === undefined ? {} : { pasid: req.pasid }),
        priv: req.priv === true,
        exec: req.exec === true,
        write: req.write,
        addr: req.addr,
        reason: r.reason,
        at: req.ats === true ? 1 : 0,
      });
      if (!ok) suppressed = "overflow";
    }
    this.#emitFault(req.sid, req.pasid, req.addr, req.write, r.reason, suppressed);
  }

  #emitFault(sid: number, pasid: number | undefined, addr: number, write: boolean, reason: number, suppressed: "fpd" | "ats" | "overflow" | null): void {
    const t = this.#trace;
    if (t === undefined) return;
    const ids: TraceIds = pasid === undefined ? { device: formatBdf(sid as SourceId) } : { device: formatBdf(sid as SourceId), hpasid: pasid };
    t.emit("vtd.fault", "HW", ids, {
      unit: this.cfg.name, sid, pasid: pasid ?? null, addr, write, reason, name: faultReasonName(reason), recorded: suppressed === null, suppressed,
    });
  }

  /**
   * A PRI page request from an endpoint (VT-d spec chapter 7). Refused (false) when the unit
   * has no PRS, translation is off, the context entry cannot be used or has
   * PRE=0 (fault 0x47 recorded unless FPD), or the queue overflows. A refused
   * last-in-group request is answered by the unit itself: "invalid" for a
   * request it will never serve, "success" after an overflow so that the
   * device retries and asks again (our reading of the spec: auto-response code).
   */
  pageRequest(req: PageRequest): boolean {
    const prq = this.#prq;
    const refuse = (code: "invalid" | "success", outcome: "overflow" | "refused"): false => {
      this.#trace?.emit("vtd.page-request", "HW", this.#ids(req.sid, req.pasid), {
        unit: this.cfg.name, sid: req.sid, pasid: req.pasid ?? null, addr: req.addr, groupIndex: req.groupIndex, lastInGroup: req.lastInGroup, outcome,
      });
      if (req.lastInGroup) this.#autoRespond(req, code);
      return false;
    };
    if (prq === null || !this.#root.translationEnabled) return refuse("invalid", "refused");
    let reason = 0;
    let fpd = false;
    if (this.#root.ttm !== 1) reason = FaultReason.PAGE_REQUEST_INV_TTM; // not 0x31: see the constant
    else {
      const ctx = this.#translator.contextOf(req.sid);
      fpd = ctx.fpd;
      if (ctx.fault !== 0) reason = ctx.fault;
      else if (!ctx.pre) reason = FaultReason.PRE_CLEAR;
      else if (req.pasid !== undefined && !ctx.paside) reason = FaultReason.PASIDE_CLEAR;
    }
    if (reason !== 0) {
      let suppressed: "fpd" | "overflow" | null = fpd ? "fpd" : null;
      if (!fpd) {
        const rec = { sid: req.sid, priv: req.priv, exec: req.exec, write: req.write, addr: req.addr, reason, at: 0 };
        if (!this.#faults.record(req.pasid === undefined ? rec : { ...rec, pasid: req.pasid })) suppressed = "overflow";
      }
      this.#emitFault(req.sid, req.pasid, req.addr, req.write, reason, suppressed);
      return refuse("invalid", "refused");
    }
    if (!prq.enqueue(req)) return refuse("success", "overflow");
    this.#trace?.emit("vtd.page-request", "HW", this.#ids(req.sid, req.pasid), {
      unit: this.cfg.name, sid: req.sid, pasid: req.pasid ?? null, addr: req.addr, groupIndex: req.groupIndex, lastInGroup: req.lastInGroup, outcome: "queued",
    });
    return true;
  }

  #autoRespond(req: PageRequest, code: "invalid" | "success"): void {
    const resp = { sid: req.sid, groupIndex: req.groupIndex, code };
    this.#endpoints.get(req.sid)?.pageResponse(req.pasid === undefined ? resp : { ...resp, pasid: req.pasid });
    this.#trace?.emit("vtd.page-response", "HW", this.#ids(req.sid, req.pasid), {
      unit: this.cfg.name, sid: req.sid, pasid: req.pasid ?? null, groupIndex: req.groupIndex, code, auto: true,
    });
  }

  #ids(sid: number, pasid: number | undefined): TraceIds {
    const device = formatBdf(sid as SourceId);
    return pasid === undefined ? { device } : { device, hpasid: pasid };
  }
}
