import { checkRequestAddress } from "../request-check.js";
import { Errno, KernelError, type SourceId, type TraceBus, type TraceIds, formatBdf } from "@vsva/kernel";
import type { DmaRequest, EndpointPort, IommuPort, PageRequest, TranslateFault, TranslateResult } from "../iommu-port.js";
import { StallTable, type StallEnd } from "./stalls.js";
import { type PhysMem, ReadOnlyMem } from "@vsva/pgtable";
import { pageField } from "../page-field.js";
import { DEFAULT_SMMU_CACHES, SmmuCaches } from "./caches.js";
import { SmmuDebug, type SmmuStats } from "./debug.js";
import { CommandQueue } from "./cmdq.js";
import { type CommandContext, executeCommand } from "./commands.js";
import { ConfigScratch, fetchSte } from "./config.js";
import { IDR_LAYOUTS, encodeIdrs } from "./idr-image.js";
import { type SmmuConfig, type SmmuInterrupt, type SmmuOptions, resolveSmmuConfig } from "./options.js";
import { OutputQueue } from "./queues.js";
import { type DeferredOutcome, type SmmuTrap, deferredOutcome, entryBytes, entryReply, readReply, writeReply } from "../trap.js";
import { RegisterFile } from "../mmio/register-file.js";
import { type Mmio, checkMmio32, checkMmio64, joinDwords } from "../mmio/mmio.js";
import {
  AidrReg,
  CmdqConsReg,
  CmdqProdReg,
  Cr0AckReg,
  Cr0Reg,
  Cr1Reg,
  Cr2Reg,
  GbpaReg,
  type GerrorBit,
  GerrorReg,
  GerrornReg,
  IidrReg,
  IrqCfg0Reg,
  IrqCfg1Reg,
  IrqCfg2Reg,
  IrqCtrlAckReg,
  IrqCtrlReg,
  OutqConsReg,
  OutqProdReg,
  QueueBaseReg,
  SMMU_REG_WINDOW,
  SmmuReg,
  StatusrReg,
  StrtabBaseCfgReg,
  StrtabBaseReg,
} from "./regs.js";
import { CMD_NAMES, EVENT_BYTES, EventFetchRecord, EventId, EventRecord, PRI_BYTES, PriEntry, SyncCs, eventName } from "./structures.js";
import "./trace-events.js";
import { type FaultDetail, type SmmuState, SmmuTranslator } from "./translate.js";

/** What ends a stalled transaction, per CMD_RESUME.Resp (SMMUv3 spec §4.6.1 CMD_RESUME; Linux's encoding, arm-smmu-v3.h CMDQ_RESUME_1_RESP_*). */
const RESUME_ACTIONS: readonly StallEnd[] = ["terminate", "retry", "abort"];

const FETCH_EVENTS = new Set<number>([EventId.F_STE_FETCH, EventId.F_CD_FETCH, EventId.F_WALK_EABT]);
const TWO32 = 0x1_0000_0000;

/** Low and high 32 bits of any number (two's complement for negatives; 0 for NaN). */
function halves(x: number): { lo: number; hi: number } {
  if (!Number.isFinite(x)) return { lo: 0, hi: 0 };
  const i = Math.floor(x);
  const hi = Math.floor(i / TWO32);
  return { lo: i >>> 0, hi: (hi - Math.floor(hi / TWO32) * TWO32) >>> 0 };
}

/** `x` reduced to a field of `bits` bits (so guest-controlled values never overflow a layout field). */
function fit(x: number, bits: number): number {
  if (!Number.isFinite(x) || x < 0) return 0;
  const m = 2 ** bits;
  const i = Math.floor(x);
  return i - Math.floor(i / m) * m;
}

/**
 * An emulated Arm SMMUv3 (non-secure side, AArch64 tables, 4 KiB granule).
 *
 * Software drives it only through its registers (an {@link Mmio} window
 * of two 64 KiB pages; 64-bit values are `bigint`s) and the structures in
 * memory they point at: stream table (linear or 2-level), CD tables (linear or 2-level, SubstreamIDs up to 20 bits),
 * command, event and PRI queues. Endpoints reach it through
 * {@link IommuPort} with `sid` = StreamID and `pasid` = SubstreamID; it
 * reaches them through the {@link EndpointPort} they register (ATC_INV,
 * PRI_RESP). A translation fault's `reason` is the event ID (0 for an
 * abort that records nothing).
 *
 * Nothing software, a guest or a device writes can make it throw: bad
 * values give the architectural event, command error or GERROR bit (a value
 * that is not a register value at all is EINVAL at the {@link Mmio}
 * boundary).
 *
 * Made with a `trap` ({@link SmmuTrap}), it offers a VMM every register
 * access and every command it fetches, each to be passed to the model,
 * handled, or (a command) deferred until {@link completeDeferred}. It does
 * not know whether it is a host's SMMU or a guest's virtual one.
 */
export class SmmuUnit implements IommuPort, Mmio {
  readonly cfg: SmmuConfig;
  /** Caches, counters, coherence checks, the queue's run-now hand: for tests, benches and invariant checks, not for drivers. */
  readonly debug: SmmuDebug;
  readonly #caches: SmmuCaches;
  readonly #mem: PhysMem;
  readonly #regs = new RegisterFile(SMMU_REG_WINDOW);
  readonly #state: SmmuState = { enabled: false, gbpaAbort: false, recordInvalidSid: false, st: { base: 0, log2size: 0, split: 0, fmt: 0 } };
  readonly #translator: SmmuTranslator;
  readonly #fresh: SmmuTranslator;
  readonly #roMem: PhysMem;
  readonly #endpoints = new Map<number, EndpointPort>();
  readonly #trace: TraceBus | undefined;
  readonly #onInterrupt: ((irq: SmmuInterrupt) => void) | undefined;
  readonly #trap: SmmuTrap | null;
  readonly #r: Record<
    "cr0" | "cr0ack" | "cr2" | "gbpa" | "irqCtrl" | "irqCtrlAck" | "gerror" | "gerrorn" | "gerrCfg0" | "gerrCfg1" | "strtabBase" | "strtabCfg" |
    "cmdqBase" | "cmdqProd" | "cmdqCons" | "evtqBase" | "evtqProd" | "evtqCons" | "evtqCfg0" | "evtqCfg1" | "priqBase" | "priqProd" | "priqCons" | "priqCfg0" | "priqCfg1",
    Uint32Array
  >;
  readonly #cmdq: CommandQueue;
  readonly #evtq: OutputQueue<string>;
  readonly #priq: OutputQueue<string>;
  readonly #event = EventRecord.alloc();
  readonly #fetchEvent = EventFetchRecord.alloc();
  readonly #pri = PriEntry.alloc();
  readonly #stalls: StallTable;
  readonly #stats: SmmuStats = { syncs: 0, interrupts: 0, events: 0 };

  /** EINVAL when the options describe an impossible unit. */
  constructor(opts: SmmuOptions) {
    const cfg = resolveSmmuConfig(opts);
    this.cfg = cfg;
    this.#mem = opts.mem;
    this.#trace = opts.trace;
    this.#onInterrupt = opts.onInterrupt;
    this.#trap = opts.trap ?? null;
    const sizes = { ...DEFAULT_SMMU_CACHES, ...opts.caches };
    for (const [k, v] of Object.entries(sizes)) {
      if (!Number.isInteger(v) || v < 1) throw new KernelError(Errno.EINVAL, `SMMUv3: ${k} cache capacity ${String(v)} must be a positive integer`);
    }
    this.#caches = new SmmuCaches(sizes);
    const regs = this.#regs;
    this.#writeIdRegisters();
    this.#r = {
      cr0: regs.define(SmmuReg.CR0, Cr0Reg),
      cr0ack: regs.define(SmmuReg.CR0ACK, Cr0AckReg),
      cr2: regs.define(SmmuReg.CR2, Cr2Reg),
      gbpa: regs.define(SmmuReg.GBPA, GbpaReg),
      irqCtrl: regs.define(SmmuReg.IRQ_CTRL, IrqCtrlReg),
      irqCtrlAck: regs.define(SmmuReg.IRQ_CTRLACK, IrqCtrlAckReg),
      gerror: regs.define(SmmuReg.GERROR, GerrorReg),
      gerrorn: regs.define(SmmuReg.GERRORN, GerrornReg),
      gerrCfg0: regs.define(SmmuReg.GERROR_IRQ_CFG0, IrqCfg0Reg),
      gerrCfg1: regs.define(SmmuReg.GERROR_IRQ_CFG1, IrqCfg1Reg),
      strtabBase: regs.define(SmmuReg.STRTAB_BASE, StrtabBaseReg),
      strtabCfg: regs.define(SmmuReg.STRTAB_BASE_CFG, StrtabBaseCfgReg),
      cmdqBase: regs.define(SmmuReg.CMDQ_BASE, QueueBaseReg),
      cmdqProd: regs.define(SmmuReg.CMDQ_PROD, CmdqProdReg),
      cmdqCons: regs.define(SmmuReg.CMDQ_CONS, CmdqConsReg),
      evtqBase: regs.define(SmmuReg.EVENTQ_BASE, QueueBaseReg),
      evtqProd: regs.define(SmmuReg.EVENTQ_PROD, OutqProdReg),
      evtqCons: regs.define(SmmuReg.EVENTQ_CONS, OutqConsReg),
      evtqCfg0: regs.define(SmmuReg.EVENTQ_IRQ_CFG0, IrqCfg0Reg),
      evtqCfg1: regs.define(SmmuReg.EVENTQ_IRQ_CFG1, IrqCfg1Reg),
      priqBase: regs.define(SmmuReg.PRIQ_BASE, QueueBaseReg),
      priqProd: regs.define(SmmuReg.PRIQ_PROD, OutqProdReg),
      priqCons: regs.define(SmmuReg.PRIQ_CONS, OutqConsReg),
      priqCfg0: regs.define(SmmuReg.PRIQ_IRQ_CFG0, IrqCfg0Reg),
      priqCfg1: regs.define(SmmuReg.PRIQ_IRQ_CFG1, IrqCfg1Reg),
    };
    regs.define(SmmuReg.CR1, Cr1Reg);
    regs.define(SmmuReg.STATUSR, StatusrReg);
    regs.define(SmmuReg.GERROR_IRQ_CFG2, IrqCfg2Reg);
    regs.define(SmmuReg.EVENTQ_IRQ_CFG2, IrqCfg2Reg);
    regs.define(SmmuReg.PRIQ_IRQ_CFG2, IrqCfg2Reg);
    // GBPA out of reset: SHCFG = 1 ("use incoming"), QEMU's reset value (SMMUv3 spec §6.3).
    GbpaReg.set(this.#r.gbpa, "SHCFG", 1);

    this.#translator = new SmmuTranslator(this.#mem, cfg, this.#caches, this.#state);
    this.#stalls = new StallTable(cfg.stallMax, {
      retranslate: (req) => this.translate(req),
      deliver: (sid, resolution) => this.#endpoints.get(sid)?.stallResolved?.(resolution),
      trace: (sid, ssid, stag, action) => this.#trace?.emit("smmu.stall", "HW", this.#ids(sid, ssid), { unit: cfg.name, sid, ssid: ssid < 0 ? null : ssid, stag, action }),
    });
    this.#roMem = new ReadOnlyMem(this.#mem);
    this.#fresh = new SmmuTranslator(this.#roMem, cfg, this.#caches, this.#state, false);

    const r = this.#r;
    const ack = (f: "EVENTQEN" | "PRIQEN" | "CMDQEN"): boolean => Cr0AckReg.get(r.cr0ack, f) === 1;
    const irqOn = (f: "EVENTQ_IRQEN" | "PRIQ_IRQEN"): boolean => IrqCtrlAckReg.get(r.irqCtrlAck, f) === 1;
    this.#evtq = new OutputQueue(this.#mem, EventRecord, EVENT_BYTES, r.evtqBase, r.evtqProd, r.evtqCons, cfg.eventqBits, {
      enabled: () => ack("EVENTQEN"),
      abort: () => this.#raiseGerror("EVTQ_ABT_ERR"),
      interrupt: () => {
        if (irqOn("EVENTQ_IRQEN")) this.#interrupt("eventq", r.evtqCfg0, r.evtqCfg1);
      },
    });
    this.#priq = new OutputQueue(this.#mem, PriEntry, PRI_BYTES, r.priqBase, r.priqProd, r.priqCons, cfg.priqBits, {
      enabled: () => ack("PRIQEN"),
      abort: () => this.#raiseGerror("PRIQ_ABT_ERR"),
      interrupt: () => {
        if (irqOn("PRIQ_IRQEN")) this.#interrupt("priq", r.priqCfg0, r.priqCfg1);
      },
    });
    const cctx: CommandContext = {
      cfg,
      caches: this.#caches,
      endpoint: (sid) => this.#endpoints.get(sid),
      syncSignal: (cs, addr, data) => this.#sync(cs, addr, data),
      resume: (sid, stag, resp) => {
        if (stag === null) this.#stalls.endAll((s) => s.sid === sid, "stall-term");
        else this.#stalls.resume(sid, stag, RESUME_ACTIONS[resp] ?? "abort");
      },
      steInvalidated: (first, last) => this.#disabledStreams(first, last),
      invalidated: () => this.#translator.resetFastPath(),
      trace: this.#trace,
      unit: cfg.name,
    };
    const mode = opts.commands ?? "immediate";
    const wq = mode === "immediate" ? null : mode.scheduler.createWorkqueue(`${cfg.name}-cmdq`);
    this.#cmdq = new CommandQueue(this.#mem, r.cmdqBase, r.cmdqProd, r.cmdqCons, cfg.cmdqBits, {
      enabled: () => ack("CMDQEN"),
      stopped: () => this.#gerrorActive("CMDQ_ERR"),
      error: (code, cons) => {
        this.#trace?.emit("smmu.cmdq-error", "HW", {}, { unit: cfg.name, error: code, cons });
        this.#raiseGerror("CMDQ_ERR");
      },
      execute: (cmd) => executeCommand(cctx, cmd),
      fetched: (cmd, seq, slot, addr) => {
        const trap = this.#trap;
        if (trap === null) return "pass";
        const type = (cmd[0] ?? 0) & 0xff;
        return entryReply(trap({ kind: "command", seq, slot, addr, ...entryBytes(cmd), type, name: CMD_NAMES[type] ?? `opcode 0x${type.toString(16)}` }), "command");
      },
    }, wq);
    this.debug = new SmmuDebug({
      cfg, caches: this.#caches, state: this.#state, translator: this.#translator, fresh: this.#fresh, roMem: this.#roMem,
      cmdq: this.#cmdq, evtq: this.#evtq, priq: this.#priq, stalls: this.#stalls, stats: this.#stats,
    });
  }

  #writeIdRegisters(): void {
    const c = this.cfg;
    const regs = this.#regs;
    const idrs = encodeIdrs(c);
    const offsets = [SmmuReg.IDR0, SmmuReg.IDR1, SmmuReg.IDR2, SmmuReg.IDR3, SmmuReg.IDR4, SmmuReg.IDR5];
    IDR_LAYOUTS.forEach((layout, i) => {
      regs.define(offsets[i] ?? 0, layout).set(idrs[i] ?? layout.alloc());
    });
    const iidr = regs.define(SmmuReg.IIDR, IidrReg);
    IidrReg.set(iidr, "IMPLEMENTER", 0x43b); // Arm's JEP106 code, as Arm's own SMMUs report
    IidrReg.set(iidr, "PRODUCTID", 0x5a);
    const aidr = regs.define(SmmuReg.AIDR, AidrReg);
    AidrReg.set(aidr, "ARCH_MINOR", 1); // SMMUv3.1
  }

  // --- endpoints -------------------------------------------------------------

  /** Registers the endpoint at its StreamID. EEXIST if one is there already. */
  attachEndpoint(ep: EndpointPort): void {
    if (this.#endpoints.has(ep.sid)) throw new KernelError(Errno.EEXIST, `${this.cfg.name}: an endpoint is already attached at StreamID ${ep.sid}`);
    this.#endpoints.set(ep.sid, ep);
  }

  /** ENOENT if nothing is attached at `sid`. */
  detachEndpoint(sid: SourceId): void {
    if (!this.#endpoints.delete(sid)) throw new KernelError(Errno.ENOENT, `${this.cfg.name}: no endpoint at StreamID ${sid}`);
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
    const before = this.#regs.raw32(offset);
    const owner = this.#regs.write32(offset, v);
    if (owner >= 0) this.#afterWrite(owner, offset, before);
  }

  /** One 64-bit write (its side effect runs once both halves are in). EINVAL unless `value` is a bigint in 0 .. 2^64 − 1. */
  mmioWrite64(offset: number, value: bigint): void {
    const v = checkMmio64(value, offset);
    if (this.#trap !== null && !writeReply(this.#trap({ kind: "mmio-write", offset, width: 64, value }))) return;
    const before = this.#regs.raw32(offset);
    const beforeHi = this.#regs.raw32(offset + 4);
    const owner = this.#regs.write32(offset, v.lo);
    this.#regs.write32(offset + 4, v.hi);
    if (owner >= 0) {
      if (this.#refused(owner)) {
        this.#regs.setRaw32(offset, before);
        this.#regs.setRaw32(offset + 4, beforeHi);
        return;
      }
      this.#afterWrite(owner, offset, before);
    }
  }

  /** Writes software may not make now: a queue's base or producer-side pointer while it runs. */
  #refused(reg: number): boolean {
    const ack = (f: "EVENTQEN" | "PRIQEN" | "CMDQEN"): boolean => Cr0AckReg.get(this.#r.cr0ack, f) === 1;
    switch (reg) {
      case SmmuReg.CMDQ_BASE:
        return ack("CMDQEN");
      case SmmuReg.CMDQ_CONS:
        // Hardware's pointer once enabled; software may move it while the queue is stopped on an error.
        return ack("CMDQEN") && !this.#gerrorActive("CMDQ_ERR");
      case SmmuReg.EVENTQ_BASE:
      case SmmuReg.EVENTQ_PROD:
        return ack("EVENTQEN");
      case SmmuReg.PRIQ_BASE:
      case SmmuReg.PRIQ_PROD:
        return ack("PRIQEN");
      default:
        return false;
    }
  }

  #afterWrite(reg: number, offset: number, before: number): void {
    if (this.#refused(reg)) {
      this.#regs.setRaw32(offset, before);
      return;
    }
    const r = this.#r;
    switch (reg) {
      case SmmuReg.CR0: {
        // CR0ACK follows at once (QEMU); each enable acts as it is acknowledged.
        for (const f of Cr0Reg.fieldNames) Cr0AckReg.set(r.cr0ack, f, Cr0Reg.get(r.cr0, f));
        if (Cr0AckReg.get(r.cr0ack, "CMDQEN") === 0) this.#cmdq.disabled();
        const en = Cr0AckReg.get(r.cr0ack, "SMMUEN") === 1;
        if (en !== this.#state.enabled) {
          this.#state.enabled = en;
          this.#translator.resetFastPath();
          // Our reading of the spec: with SMMUEN cleared nothing will translate the held transactions again; they are terminated.
          if (!en) this.#stalls.endAll(() => true, "disable");
        }
        this.#cmdq.kick();
        return;
      }
      case SmmuReg.CR2:
        this.#state.recordInvalidSid = Cr2Reg.get(r.cr2, "RECINVSID") === 1;
        return;
      case SmmuReg.GBPA:
        // Only a write with UPDATE = 1 takes effect (QEMU); UPDATE then clears when done, at once here.
        if (GbpaReg.get(r.gbpa, "UPDATE") === 1) {
          this.#state.gbpaAbort = GbpaReg.get(r.gbpa, "ABORT") === 1;
          GbpaReg.set(r.gbpa, "UPDATE", 0);
        } else this.#regs.setRaw32(offset, before);
        return;
      case SmmuReg.IRQ_CTRL:
        for (const f of IrqCtrlReg.fieldNames) IrqCtrlAckReg.set(r.irqCtrlAck, f, IrqCtrlReg.get(r.irqCtrl, f));
        return;
      case SmmuReg.GERRORN:
        this.#cmdq.kick();
        return;
      case SmmuReg.STRTAB_BASE:
      case SmmuReg.STRTAB_BASE_CFG: {
        this.#state.st = {
          base: StrtabBaseReg.getAddr(r.strtabBase, "ADDR"),
          log2size: StrtabBaseCfgReg.get(r.strtabCfg, "LOG2SIZE"),
          split: StrtabBaseCfgReg.get(r.strtabCfg, "SPLIT"),
          fmt: StrtabBaseCfgReg.get(r.strtabCfg, "FMT"),
        };
        this.#translator.resetFastPath();
        return;
      }
      case SmmuReg.CMDQ_PROD:
      case SmmuReg.CMDQ_CONS:
        this.#cmdq.kick();
        return;
      default:
    }
  }

  // --- GERROR, interrupts, CMD_SYNC ---------------------------------------------------

  #gerrorActive(bit: GerrorBit): boolean {
    return GerrorReg.get(this.#r.gerror, bit) !== GerrornReg.get(this.#r.gerrorn, bit);
  }

  /** Toggle semantics (SMMUv3 spec §6.3): a bit already active is not raised again. */
  #raiseGerror(bit: GerrorBit): void {
    if (this.#gerrorActive(bit)) return;
    GerrorReg.set(this.#r.gerror, bit, GerrorReg.get(this.#r.gerror, bit) ^ 1);
    this.#trace?.emit("smmu.gerror", "HW", {}, { unit: this.cfg.name, bit });
    if (IrqCtrlAckReg.get(this.#r.irqCtrlAck, "GERROR_IRQEN") === 1) this.#interrupt("gerror", this.#r.gerrCfg0, this.#r.gerrCfg1);
  }

  #interrupt(source: SmmuInterrupt["source"], cfg0: Uint32Array, cfg1: Uint32Array): void {
    this.#stats.interrupts++;
    const addr = this.cfg.msi ? IrqCfg0Reg.getAddr(cfg0, "ADDR") : 0;
    this.#onInterrupt?.({ source, addr, data: addr === 0 ? 0 : IrqCfg1Reg.get(cfg1, "DATA") });
  }

  /**
   * CMD_SYNC completion: CS = SIG_IRQ with an MSI address writes MSIData
   * there (Linux points it at the command itself and polls: "MSI polling");
   * an address outside memory is an interrupt controller's doorbell and
   * goes to `onInterrupt`; without MSIs it is the wired interrupt. SIG_SEV
   * signals a wake-up event. Software may also just poll CONS.
   */
  #sync(cs: number, addr: number, data: number): void {
    this.#stats.syncs++;
    if (cs === SyncCs.IRQ) {
      this.#stats.interrupts++;
      if (this.cfg.msi && addr !== 0) {
        if (!this.#mem.isPopulated(addr) || !this.#mem.write32(addr, data)) this.#onInterrupt?.({ source: "cmd-sync", addr, data });
      } else this.#onInterrupt?.({ source: "cmd-sync", addr: 0, data: 0 });
    } else if (cs === SyncCs.SEV && this.cfg.sev) {
      this.#onInterrupt?.({ source: "sev", addr: 0, data: 0 });
    }
  }

  // --- traps --------------------------------------------------------------------

  /** The fetch number of the command a trap deferred (CMDQ_CONS is stopped on it), or null. */
  get deferred(): number | null {
    return this.#cmdq.deferredSeq;
  }

  /**
   * Finishes the command a trap deferred (see `QueueEntryTrap`): "pass"
   * executes it now (a CMD_SYNC signals here: its MSI write, interrupt or
   * event), "handled" moves CMDQ_CONS past it without executing it. The
   * queue then goes on as after a PROD write. ENOENT if `seq` is not the
   * deferred command; EINVAL for another outcome. Nothing changes on either
   * error.
   */
  completeDeferred(seq: number, outcome: DeferredOutcome): void {
    this.#cmdq.complete(seq, deferredOutcome(outcome));
  }

  // --- the endpoint side ---------------------------------------------------------

  /** Translates one request; EINVAL for an address that is no bus address (see `checkRequestAddress`). */
  translate(req: DmaRequest): TranslateResult {
    checkRequestAddress("SMMUv3", this.cfg.name, req.addr, this.#state.enabled, this.cfg.oas);
    const r = this.#translator.translate(req);
    return r.ok ? r : this.#report(req, r, this.#translator.lastFault);
  }

  /**
   * Records a fault, and holds the transaction when it may stall (SMMUv3 spec §6.3
   * STALL_MODEL, SMMUv3 spec §7.3 Stall/STAG): a free STAG and a written event record
   * with Stall = 1 are both needed, because software learns of a stall only
   * from that record. A stall record is written whatever CD.R / STE.S2R say
   * (our reading of the spec: our reading of the stall model; Linux always sets R anyway). If
   * the queue is disabled, full or unwritable, or every STAG is taken, the
   * transaction is terminated as on a terminate-model stream.
   */
  #report(req: DmaRequest, r: TranslateFault, d: FaultDetail): TranslateFault {
    let suppressed: "not-recorded" | "ats" | "disabled" | "overflow" | "abort" | null = null;
    const priv = req.pasid !== undefined && req.priv === true;
    const exec = req.pasid !== undefined && req.exec === true;
    let stag = d.stall ? this.#stalls.freeTag() : -1;
    if (stag >= 0) {
      const out = this.#writeEvent(req.sid, d.ssid, req.addr, req.write, priv, exec, d, stag);
      if (out !== "written") {
        suppressed = out;
        stag = -1;
      }
    } else if (!d.record) suppressed = "not-recorded";
    else if (d.ats) suppressed = "ats";
    else {
      const out = this.#writeEvent(req.sid, d.ssid, req.addr, req.write, priv, exec, d, -1);
      if (out !== "written") suppressed = out;
    }
    this.#trace?.emit("smmu.event", "HW", this.#ids(req.sid, d.ssid), {
      unit: this.cfg.name, event: r.reason, name: r.name, sid: req.sid, ssid: d.ssid < 0 ? null : d.ssid, addr: req.addr, write: req.write,
      recorded: suppressed === null, suppressed, stag: stag < 0 ? null : stag,
    });
    if (stag < 0) return r;
    this.#stalls.hold(stag, { sid: req.sid, ssid: d.ssid, req, fault: { ok: false, reason: r.reason, name: r.name, recoverable: false } });
    return { ok: false, reason: r.reason, name: r.name, recoverable: false, stalled: { stag } };
  }

  /** After CFGI_STE*: a stream whose STE now aborts or is invalid can never complete its stalled transactions (they are terminated). */
  #disabledStreams(first: number, last: number): void {
    if (this.#stalls.size === 0) return;
    const scratch = new ConfigScratch();
    const gone = new Set<number>();
    for (const sid of this.#stalls.streams()) {
      if (sid < first || sid > last) continue;
      const ste = fetchSte(this.#roMem, this.#state.st, sid, this.cfg, scratch);
      if (ste.fault !== null || ste.kind === "abort") gone.add(sid);
    }
    if (gone.size > 0) this.#stalls.endAll((s) => gone.has(s.sid), "config");
  }

  #writeEvent(
    sid: number, ssid: number, addr: number, write: boolean, priv: boolean, exec: boolean, d: FaultDetail, stag: number,
  ): "written" | "overflow" | "abort" | "disabled" {
    const fetch = FETCH_EVENTS.has(d.event);
    const v = fetch ? this.#fetchEvent : this.#event;
    v.fill(0);
    const L = fetch ? EventFetchRecord : EventRecord;
    L.set(v, "EVENTID", d.event & 0xff);
    if (ssid >= 0) {
      L.set(v, "SSV", 1);
      L.set(v, "SSID", fit(ssid, 20));
    }
    L.set(v, "SID", fit(sid, 32));
    L.set(v, "PNU", priv ? 1 : 0);
    L.set(v, "IND", exec ? 1 : 0);
    L.set(v, "RNW", write ? 0 : 1);
    L.set(v, "S2", d.s2 ? 1 : 0);
    L.set(v, "CLASS", d.cls & 3);
    if (stag >= 0) {
      L.set(v, "STALL", 1);
      L.set(v, "STAG", stag);
    }
    const a = halves(addr);
    L.set(v, "INPUT_ADDR_LO", a.lo);
    L.set(v, "INPUT_ADDR_HI", a.hi);
    if (fetch) EventFetchRecord.set(v, "FETCH_ADDR", fit(d.fetchAddr / 8, 49));
    else if (d.s2) EventRecord.set(v, "IPA", fit(d.ipa / 4096, 40));
    this.#stats.events++;
    return this.#evtq.push(v);
  }

  /**
   * A PRI page request (SMMUv3 spec §8.1). Refused (false) when the unit has no PRI,
   * SMMUEN or PRIQEN is clear, the StreamID is out of range, or the queue
   * overflows or cannot be written. A refused last-in-group request is
   * answered by the unit itself: "invalid" when the queue is off (it will
   * never be served), "success" after an overflow so the device retries
   * (our reading of the spec: the auto-response code, the same choice as the VT-d unit).
   */
  pageRequest(req: PageRequest): boolean {
    const refuse = (code: "invalid" | "success", outcome: "overflow" | "refused"): false => {
      this.#trace?.emit("smmu.page-request", "HW", this.#ids(req.sid, req.pasid ?? -1), {
        unit: this.cfg.name, sid: req.sid, ssid: req.pasid ?? null, addr: req.addr, groupIndex: req.groupIndex, lastInGroup: req.lastInGroup, outcome,
      });
      if (req.lastInGroup) this.#autoRespond(req, code);
      return false;
    };
    const sidBits = Math.min(this.#state.st.log2size, this.cfg.sidBits);
    if (!this.cfg.pri || !this.#state.enabled || Cr0AckReg.get(this.#r.cr0ack, "PRIQEN") === 0) return refuse("invalid", "refused");
    if (!Number.isInteger(req.sid) || req.sid < 0 || req.sid >= 2 ** sidBits) {
      if (this.#state.recordInvalidSid) {
        const d: FaultDetail = { event: EventId.C_BAD_STREAMID, record: true, ats: false, ssid: req.pasid ?? -1, s2: false, cls: 0, ipa: 0, fetchAddr: 0, stall: false };
        this.#writeEvent(req.sid, d.ssid, req.addr, req.write, req.priv, req.exec, d, -1);
      }
      return refuse("invalid", "refused");
    }
    const p = this.#pri;
    p.fill(0);
    PriEntry.set(p, "SID", fit(req.sid, 32));
    if (req.pasid !== undefined) {
      PriEntry.set(p, "SSV", 1);
      PriEntry.set(p, "SSID", fit(req.pasid, 20));
    }
    PriEntry.set(p, "PRIV", req.priv ? 1 : 0);
    PriEntry.set(p, "EXEC", req.exec ? 1 : 0);
    PriEntry.set(p, "READ", req.read ? 1 : 0);
    PriEntry.set(p, "WRITE", req.write ? 1 : 0);
    PriEntry.set(p, "LAST", req.lastInGroup ? 1 : 0);
    PriEntry.set(p, "PRGINDEX", fit(req.groupIndex, 9));
    PriEntry.set(p, "ADDR", pageField(req.addr));
    const out = this.#priq.push(p);
    if (out !== "written") return refuse("success", "overflow");
    this.#trace?.emit("smmu.page-request", "HW", this.#ids(req.sid, req.pasid ?? -1), {
      unit: this.cfg.name, sid: req.sid, ssid: req.pasid ?? null, addr: req.addr, groupIndex: req.groupIndex, lastInGroup: req.lastInGroup, outcome: "queued",
    });
    return true;
  }

  #autoRespond(req: PageRequest, code: "invalid" | "success"): void {
    const resp = { sid: req.sid, groupIndex: req.groupIndex, code };
    this.#endpoints.get(req.sid)?.pageResponse(req.pasid === undefined ? resp : { ...resp, pasid: req.pasid });
    this.#trace?.emit("smmu.page-response", "HW", this.#ids(req.sid, req.pasid ?? -1), {
      unit: this.cfg.name, sid: req.sid, ssid: req.pasid ?? null, groupIndex: req.groupIndex, code, auto: true,
    });
  }

  #ids(sid: number, ssid: number): TraceIds {
    const device = Number.isInteger(sid) && sid >= 0 && sid < 0x10000 ? formatBdf(sid as SourceId) : String(sid);
    return ssid >= 0 ? { device, hpasid: ssid } : { device };
  }

  /** The event name of a reason code (for messages). */
  static eventName(id: number): string {
    return eventName(id);
  }
}
