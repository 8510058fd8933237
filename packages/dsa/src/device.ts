import { Errno, KernelError, type TraceBus, Work, type Workqueue } from "@vsva/kernel";
import { type Layout, type PhysMem, u8set } from "@vsva/pgtable";
import { type AtcEntry, type AtcHandle, type DeviceTlb, type Mmio, PciEndpoint, type TranslateOk } from "@vsva/iommu-hw";
import {
  DESC_DEFINED_FLAGS,
  DSA_BAR0_SIZE,
  DSA_COMPLETION_ALIGN,
  DSA_COMPLETION_SIZE,
  DSA_DESC_SIZE,
  DSA_GRPCFG_STRIDE,
  DSA_GRPCFG_TABLE,
  DSA_TABLE_MULT,
  DSA_WQCFG_STRIDE,
  DSA_WQCFG_TABLE,
  DescFlag,
  DsaCmd,
  DsaCmdErr,
  DsaCmdSts,
  DsaCommand,
  DsaCompletion,
  DsaDesc,
  DsaDeviceState,
  DsaEngCap,
  DsaGenCap,
  DsaGenCfg,
  DsaGenCtrl,
  DsaGenSts,
  DsaGrpCap,
  DsaGrpCfg,
  DsaIntCause,
  DsaOffsets,
  DsaOpcode,
  DsaReg,
  DsaStatus,
  type DsaStatusCode,
  DsaSwErr,
  DsaVersion,
  DsaWqCap,
  DsaWqCfg,
  WqMode,
  WqState,
} from "./regs.js";

/**
 * A DSA-like SIOV accelerator: one PCIe function (a {@link PciEndpoint} with
 * PASID, ATS and PRI) with the BAR0 registers of the Intel Data Streaming
 * Accelerator at the level a driver needs, work queues with portals, and one
 * engine that executes 64-byte work descriptors by DMA through the IOMMU with
 * the descriptor's PASID.
 *
 * Submission (DSA spec 3.3, "Work Queues"): a dedicated WQ takes posted
 * MOVDIR64B writes and stamps the PASID programmed in its WQCFG on every
 * descriptor; a shared WQ takes ENQCMD, whose payload carries the submitter's
 * PASID, and answers "retry" when it cannot take the descriptor (full,
 * disabled) — the CPU's ZF. A posted write the WQ cannot accept is dropped,
 * as on the silicon (software must track a dedicated WQ's occupancy).
 *
 * Execution is deterministic: in "immediate" mode a submission (or a page
 * response) runs the engine until it is idle or blocked (a MEMMOVE whose
 * pages the engine already holds translations for takes an express path
 * with the same effects, see `#expressMove`); in "stepwise" mode
 * each {@link step} moves at most one page of one descriptor and
 * `onRunnable` says when there is work, so a kernel work queue can drive it
 * ({@link DsaDevice.driveFrom}).
 *
 * Faults (DSA spec 3.7, "Address translation and page faults"): with ATS the
 * device asks for translations; a not-present page with block-on-fault (the
 * descriptor's BOF flag, honoured only when WQCFG.BOF is set) becomes a PRI
 * page request and the descriptor waits for the response; without it the
 * descriptor completes partially with status "page fault", the bytes done and
 * the faulting address. A translation the IOMMU refuses outright (the PASID
 * not set up, a non-recoverable fault) completes with "translation fail"; when
 * the completion record itself cannot be written, the error goes to SWERR.
 */
export interface DsaOptions {
  readonly bus: number;
  readonly dev: number;
  readonly fn: number;
  /** Host physical memory the DMA reaches at translated addresses. */
  readonly mem: PhysMem;
  /** Work queues (default 4, at most 32 — one dword of GRPCFG's WQ bitmap). */
  readonly numWqs?: number;
  /** Entries shared by all WQs (WQCAP.TOTAL_WQ_SIZE, default 64). */
  readonly totalWqSize?: number;
  /** GENCAP.MAX_XFER_SHIFT (default 21: 2 MiB). */
  readonly maxXferShift?: number;
  /** GENCAP.BLOCK_ON_FAULT (default true). */
  readonly blockOnFault?: boolean;
  /** PASID capability width (default 20). */
  readonly pasidWidth?: number;
  readonly mode?: "immediate" | "stepwise";
  readonly onRunnable?: () => void;
  /**
   * Whether the engine keeps handles on the device-TLB entries it used and
   * accounts repeated hits on them without probing (default true). Off, every
   * translation probes the device TLB: the two give identical results,
   * counts and recency, and a test runs both to show it.
   */
  readonly translationMemo?: boolean;
  /**
   * Whether an idle engine runs a MEMMOVE whose every page the engine's
   * handles already translate in one pass ({@link DsaDevice.movdir64b}'s
   * express path; default true, and it needs `translationMemo`). Off, every
   * descriptor takes the step-by-step engine: the two give identical results,
   * counts and recency, and a test runs both to show it.
   */
  readonly expressPath?: boolean;
  /** Page responses per page before a still-faulting page completes with a page fault (default 3). */
  readonly maxPageRequestRetries?: number;
  readonly trace?: TraceBus;
  readonly name?: string;
}

export interface DsaStats {
  submitted: number;
  retried: number;
  /** Posted descriptors the WQ could not take (disabled, shared, full). */
  dropped: number;
  completed: number;
  pageRequests: number;
  swerrs: number;
  bytesMoved: number;
}

/** A descriptor's 64 bytes as the device keeps them, with a byte view for the copy in (reused after retirement). */
class DescBuf {
  readonly words = DsaDesc.alloc();
  readonly bytes = new Uint8Array(this.words.buffer, this.words.byteOffset, DSA_DESC_SIZE);
}

interface Queued {
  readonly buf: DescBuf;
  readonly desc: Uint32Array;
  readonly wq: number;
  readonly pasid: number | undefined;
  readonly priv: boolean;
}

/** The descriptor the engine runs. Every field is rewritten when a retired job's object is reused for the next descriptor. */
interface Job {
  buf: DescBuf;
  desc: Uint32Array;
  wq: number;
  pasid: number | undefined;
  priv: boolean;
  opcode: number;
  flags: number;
  compl: number;
  src: number;
  dst: number;
  size: number;
  bof: boolean;
  done: number;
  result: number;
  retries: number;
  /** "data" while the operation runs; "completion" while its record is written. */
  phase: "data" | "completion";
  status: DsaStatusCode;
  faultAddr: number;
  faultWrite: boolean;
  /** The page request for the completion record's own page was answered with a failure: the record cannot be written. */
  crFault: boolean;
  /** The token of the page request the job waits on; callbacks holding an older token are ignored. */
  wait: object | null;
}

interface Wq {
  readonly queue: Queued[];
}

interface PendingCmd {
  readonly wqs: readonly number[];
  readonly then: "disable" | "none" | "disableDevice";
  /** DRAIN_PASID: waits for this PASID's descriptors only, in every WQ. */
  readonly pasid?: number;
}

const PAGE = 4096;
const PAGE_MASK = PAGE - 1;
/** Addresses the model can carry exactly; above this a DMA fails translation. */
const ADDR_LIMIT = 2 ** 53;
const SUPPORTED_OPS: ReadonlySet<number> = new Set([DsaOpcode.NOOP, DsaOpcode.MEMMOVE, DsaOpcode.MEMFILL, DsaOpcode.COMPARE]);
/** The same set as a bitmap of opcodes below 32 (as OPCAP's low dword), for the per-descriptor check. */
const SUPPORTED_OPS_MASK = [...SUPPORTED_OPS].reduce((m, op) => (m | (1 << op)) >>> 0, 0);
const U64_LIMIT = 1n << 64n;

/**
 * What {@link DsaDevice.#xlate} returns: the address is in `#pa` (a field, so
 * an address above the small-integer range is not boxed on every return), or
 * a fault a page request may cure, or one it cannot.
 */
const XLATE_OK = 0;
const XLATE_RECOVERABLE = -1;
const XLATE_REFUSED = -2;
const faultKind = (x: number): "recoverable" | "refused" => (x === XLATE_RECOVERABLE ? "recoverable" : "refused");

const u64 = (lo: number, hi: number): number => (hi >>> 0) * 2 ** 32 + (lo >>> 0);

/**
 * Where a field of at most 32 bits inside one dword sits, taken from its
 * layout once: the hot path (one descriptor per submission) reads these
 * without the layout's by-name lookup.
 */
interface DwordField {
  readonly word: number;
  readonly shift: number;
  readonly mask: number;
}

function dwordField<F extends string>(layout: Layout<F>, f: F): DwordField {
  const s = layout.spec(f);
  const width = s.msb - s.lsb + 1;
  if (s.lsb >>> 5 !== s.msb >>> 5) throw new Error(`${layout.name}.${f} crosses a dword`);
  return { word: s.lsb >>> 5, shift: s.lsb & 31, mask: width === 32 ? 0xffff_ffff : (1 << width) - 1 };
}

const rd = (v: Uint32Array, f: DwordField): number => (((v[f.word] ?? 0) >>> f.shift) & f.mask) >>> 0;
/** Writes a field the device itself fills (its value always fits: counts, codes, the low bits of an address). */
const wr = (v: Uint32Array, f: DwordField, value: number): void => {
  v[f.word] = (((v[f.word] ?? 0) & ~(f.mask << f.shift)) | ((value & f.mask) << f.shift)) >>> 0;
};

const C = {
  STATUS: dwordField(DsaCompletion, "STATUS"),
  FAULT_WRITE: dwordField(DsaCompletion, "FAULT_WRITE"),
  RESULT: dwordField(DsaCompletion, "RESULT"),
  BYTES_COMPLETED: dwordField(DsaCompletion, "BYTES_COMPLETED"),
  FAULT_ADDR_LO: dwordField(DsaCompletion, "FAULT_ADDR_LO"),
  FAULT_ADDR_HI: dwordField(DsaCompletion, "FAULT_ADDR_HI"),
  INVALID_FLAGS: dwordField(DsaCompletion, "INVALID_FLAGS"),
} as const;

const D = {
  PASID: dwordField(DsaDesc, "PASID"),
  PRIV: dwordField(DsaDesc, "PRIV"),
  FLAGS: dwordField(DsaDesc, "FLAGS"),
  OPCODE: dwordField(DsaDesc, "OPCODE"),
  COMPL_LO: dwordField(DsaDesc, "COMPL_LO"),
  COMPL_HI: dwordField(DsaDesc, "COMPL_HI"),
  SRC_LO: dwordField(DsaDesc, "SRC_LO"),
  SRC_HI: dwordField(DsaDesc, "SRC_HI"),
  DST_LO: dwordField(DsaDesc, "DST_LO"),
  DST_HI: dwordField(DsaDesc, "DST_HI"),
  XFER_SIZE: dwordField(DsaDesc, "XFER_SIZE"),
} as const;

const W = {
  SIZE: dwordField(DsaWqCfg, "SIZE"),
  MODE: dwordField(DsaWqCfg, "MODE"),
  BOF: dwordField(DsaWqCfg, "BOF"),
  PASID: dwordField(DsaWqCfg, "PASID"),
  PASID_EN: dwordField(DsaWqCfg, "PASID_EN"),
  PRIV: dwordField(DsaWqCfg, "PRIV"),
  MAX_XFER_SHIFT: dwordField(DsaWqCfg, "MAX_XFER_SHIFT"),
  STATE: dwordField(DsaWqCfg, "STATE"),
  OCCUPANCY: dwordField(DsaWqCfg, "OCCUPANCY"),
} as const;
const STATE_FIELD = dwordField(DsaGenSts, "STATE");
// The express path (DsaDevice.#expressMove) reads these as whole dwords and OPCODE as a dword's top bits.
for (const f of [D.SRC_LO, D.SRC_HI, D.DST_LO, D.DST_HI, D.COMPL_LO, D.COMPL_HI, D.XFER_SIZE, C.BYTES_COMPLETED]) {
  if (f.shift !== 0 || f.mask !== 0xffff_ffff) throw new Error("dsa: an express-path field is not a whole dword");
}
if (D.OPCODE.shift + 8 !== 32 || C.STATUS.word === C.BYTES_COMPLETED.word) throw new Error("dsa: OPCODE is not the top byte of its dword, or STATUS shares a dword with BYTES_COMPLETED");
/** Spare descriptor buffers kept for reuse (a submission copies its 64 bytes into one). */
const DESC_POOL_MAX = 64;

/** Slots of {@link XlateMemo}: a power of two, above the device TLB's 64 entries so a sweep over them rarely collides. */
const XL_SLOTS = 128;
const XL_MASK = XL_SLOTS - 1;

/**
 * The engine's memory of which device-TLB entry answered a (requester,
 * 4 KiB page), direct-mapped by page number: a handle kept while the device
 * TLB's generation is the one it was taken under. Then a lookup of that page
 * for that requester would find that same entry (the device TLB changes its
 * answers only with its generation), so the engine accounts the hit on the
 * handle ({@link DeviceTlb.hitAgain}: the same counters and recency update
 * the lookup makes) and skips the probe. Nothing inexact is kept: no count,
 * no recency, no translation outlives a generation.
 */
class XlateMemo {
  /**
   * Per slot, three numbers side by side (one cache line holds several
   * slots): the page (-1: none), the requester and the generation.
   */
  readonly #tags = new Float64Array(3 * XL_SLOTS).fill(-1);
  readonly #handle: (AtcHandle | undefined)[] = new Array<AtcHandle | undefined>(XL_SLOTS).fill(undefined);
  /** The device TLB the handles belong to: the endpoint's, which never changes. */
  readonly #tlb: DeviceTlb;

  constructor(tlb: DeviceTlb) {
    this.#tlb = tlb;
  }

  /** The handle for (`who`, `page`) still good under the device TLB's current generation, or undefined. */
  get(who: number, page: number): AtcHandle | undefined {
    // ToInt32 of a page base below 2^53 keeps its low 32 bits: this is the page number mod XL_SLOTS.
    const slot = (page >>> 12) & XL_MASK;
    const t = this.#tags;
    const k = 3 * slot;
    if (t[k] !== page || t[k + 1] !== who || t[k + 2] !== this.#tlb.generation) return undefined;
    return this.#handle[slot];
  }

  set(who: number, page: number, h: AtcHandle): void {
    const slot = (page >>> 12) & XL_MASK;
    const k = 3 * slot;
    this.#tags[k] = page;
    this.#tags[k + 1] = who;
    this.#tags[k + 2] = this.#tlb.generation;
    this.#handle[slot] = h;
  }
}

export class DsaDevice implements Mmio {
  readonly ep: PciEndpoint;
  readonly name: string;
  readonly numWqs: number;
  readonly mode: "immediate" | "stepwise";
  readonly stats: DsaStats = { submitted: 0, retried: 0, dropped: 0, completed: 0, pageRequests: 0, swerrs: 0, bytesMoved: 0 };
  onRunnable: (() => void) | undefined;
  readonly #mem: PhysMem;
  readonly #regs = new Uint32Array(DSA_BAR0_SIZE / 4);
  readonly #reset: Uint32Array;
  /** Per dword of BAR0: bits software may write, and bits a written 1 clears. */
  readonly #rwMask = new Uint32Array(DSA_BAR0_SIZE / 4);
  readonly #w1cMask = new Uint32Array(DSA_BAR0_SIZE / 4);
  readonly #wqs: Wq[];
  readonly #maxRetries: number;
  readonly #scratch = new Uint8Array(PAGE);
  readonly #scratch2 = new Uint8Array(PAGE);
  /** Views made once: the registers array is never replaced (a reset copies into it). */
  readonly #wqcfgViews: Uint32Array[] = [];
  readonly #genstsView: Uint32Array;
  readonly #record = DsaCompletion.alloc();
  /** The express path's success record: only STATUS's and BYTES_COMPLETED's dwords are ever written. */
  readonly #expressRecord = DsaCompletion.alloc();
  readonly #descPool: DescBuf[] = [];
  /** The engine's handles on device-TLB entries it used (see {@link XlateMemo}). */
  readonly #xl: XlateMemo | undefined;
  readonly #express: boolean;
  /** The express path's copy of the descriptor it runs (never a job's: a hand-over copies it into one). */
  readonly #expressWords = new DescBuf();
  #job: Job | undefined;
  /** The last retired job's object, reused by the next dispatch (one job runs at a time). */
  #spare: Job | undefined;
  #rr = 0;
  /** The address the last successful {@link #xlate} produced. */
  #pa = 0;
  #pending: PendingCmd | undefined;
  #inRun = false;
  /** The PASID capability's control as last written (ENABLE, PRIV_ENABLE) and the width it allows; refreshed on every config write to it and on FLR. */
  #pasidOn = false;
  #pasidPrivOn = false;
  #pasidLimit = 0;
  #flrSeen = 0;

  constructor(opts: DsaOptions) {
    const numWqs = opts.numWqs ?? 4;
    if (!Number.isInteger(numWqs) || numWqs < 1 || numWqs > 32) throw new KernelError(Errno.EINVAL, `dsa: ${numWqs} work queues (1..32)`);
    const total = opts.totalWqSize ?? 64;
    if (!Number.isInteger(total) || total < 1 || total > 0xffff) throw new KernelError(Errno.EINVAL, `dsa: total WQ size ${total} (1..65535)`);
    const xfer = opts.maxXferShift ?? 21;
    if (!Number.isInteger(xfer) || xfer < 12 || xfer > 31) throw new KernelError(Errno.EINVAL, `dsa: max transfer shift ${xfer} (12..31)`);
    this.ep = new PciEndpoint({
      bus: opts.bus,
      dev: opts.dev,
      fn: opts.fn,
      // PCI_DEVICE_ID_INTEL_DSA_SPR0 (drivers/dma/idxd/init.c id table).
      id: { vendorId: 0x8086, deviceId: 0x0b25 },
      pasid: { maxWidth: opts.pasidWidth ?? 20, exec: false, priv: true },
      ats: {},
      pri: { outstandingCapacity: 32 },
      mem: opts.mem,
      ...(opts.trace === undefined ? {} : { trace: opts.trace }),
      ...(opts.name === undefined ? {} : { name: opts.name }),
    });
    this.name = this.ep.name;
    this.#mem = opts.mem;
    this.numWqs = numWqs;
    this.#xl = opts.translationMemo === false ? undefined : new XlateMemo(this.ep.deviceTlb);
    this.#express = this.#xl !== undefined && opts.expressPath !== false;
    this.mode = opts.mode ?? "immediate";
    this.onRunnable = opts.onRunnable;
    this.#maxRetries = opts.maxPageRequestRetries ?? 3;
    this.#wqs = Array.from({ length: numWqs }, () => ({ queue: [] }));
    for (let w = 0; w < numWqs; w++) this.#wqcfgViews.push(this.#view(this.wqcfgOffset(w), DsaWqCfg.dwords));
    this.#genstsView = this.#view(DsaReg.GENSTS, 1);

    this.#init(DsaVersion, DsaReg.VERSION, { MAJOR: 1, MINOR: 0 });
    this.#init(DsaGenCap, DsaReg.GENCAP, {
      BLOCK_ON_FAULT: opts.blockOnFault === false ? 0 : 1,
      CMD_CAP: 1,
      MAX_XFER_SHIFT: xfer,
      CONFIG_EN: 1,
    });
    this.#init(DsaWqCap, DsaReg.WQCAP, { TOTAL_WQ_SIZE: total, NUM_WQS: numWqs, WQCFG_SIZE: 0, SHARED_MODE: 1, DEDICATED_MODE: 1, PRIORITY: 1, OCCUPANCY: 1 });
    this.#init(DsaGrpCap, DsaReg.GRPCAP, { NUM_GROUPS: 1 });
    this.#init(DsaEngCap, DsaReg.ENGCAP, { NUM_ENGINES: 1 });
    this.#init(DsaOffsets, DsaReg.OFFSETS, { GRPCFG: DSA_GRPCFG_TABLE, WQCFG: DSA_WQCFG_TABLE });
    // OPCAP: bit n set for each supported opcode n (a 256-bit bitmap; every supported opcode is below 32).
    let opcap = 0;
    for (const op of SUPPORTED_OPS) opcap |= 1 << op;
    this.#regs[DsaReg.OPCAP / 4] = opcap >>> 0;
    // CMDCAP: bit n set for each command n implemented.
    let cmdcap = 0;
    for (const c of Object.values(DsaCommand)) cmdcap |= 1 << c;
    this.#regs[DsaReg.CMDCAP / 4] = cmdcap >>> 0;
    this.#init(DsaGenCfg, DsaReg.GENCFG, {});
    this.#init(DsaGenCtrl, DsaReg.GENCTRL, {});
    this.#init(DsaGenSts, DsaReg.GENSTS, {});
    this.#init(DsaIntCause, DsaReg.INTCAUSE, {});
    this.#init(DsaCmd, DsaReg.CMD, {});
    this.#init(DsaCmdSts, DsaReg.CMDSTS, {});
    this.#init(DsaSwErr, DsaReg.SWERR, {});
    this.#init(DsaGrpCfg, DSA_GRPCFG_TABLE * DSA_TABLE_MULT, {});
    for (let w = 0; w < numWqs; w++) this.#init(DsaWqCfg, this.wqcfgOffset(w), {});
    this.#reset = this.#regs.slice();

    // A Function Level Reset of the endpoint resets the device behind it too.
    this.ep.config.space.onWrite(this.ep.config.devCtl, () => {
      if (this.ep.flrCount !== this.#flrSeen) {
        this.#flrSeen = this.ep.flrCount;
        this.#resetDevice();
      }
      this.#latchPasid();
    });
    const pasidCap = this.ep.config.pasid;
    if (pasidCap !== undefined) this.ep.config.space.onWrite(pasidCap, () => this.#latchPasid());
    this.#latchPasid();
  }

  /** Reads the PASID capability's control once, for the translations of every page after it. */
  #latchPasid(): void {
    const c = this.ep.config.pasid;
    this.#pasidOn = c?.flag("ENABLE") ?? false;
    this.#pasidPrivOn = c?.flag("PRIV_ENABLE") ?? false;
    this.#pasidLimit = c === undefined ? 0 : 2 ** c.get("MAX_PASID_WIDTH");
  }

  /** BAR0 offset of WQ `w`'s WQCFG entry. */
  wqcfgOffset(w: number): number {
    return DSA_WQCFG_TABLE * DSA_TABLE_MULT + w * DSA_WQCFG_STRIDE;
  }

  /** BAR0 offset of group `g`'s GRPCFG entry. */
  grpcfgOffset(g: number): number {
    return DSA_GRPCFG_TABLE * DSA_TABLE_MULT + g * DSA_GRPCFG_STRIDE;
  }

  /** Places a register: its reset value, and its writable and write-1-to-clear bits from the layout's field access. */
  #init<F extends string>(layout: Layout<F>, off: number, values: Partial<Record<F, number>>): void {
    const view = this.#view(off, layout.dwords);
    for (const f of layout.fieldNames) {
      const s = layout.spec(f);
      for (let b = s.lsb; b <= s.msb; b++) {
        const i = (off >>> 2) + (b >>> 5);
        const m = (1 << (b & 31)) >>> 0;
        if (s.access === "RW") this.#rwMask[i] = ((this.#rwMask[i] ?? 0) | m) >>> 0;
        if (s.access === "RW1C") this.#w1cMask[i] = ((this.#w1cMask[i] ?? 0) | m) >>> 0;
      }
      const v = values[f];
      if (v !== undefined) layout.set(view, f, v);
    }
  }

  #view(off: number, dwords: number): Uint32Array {
    return this.#regs.subarray(off >>> 2, (off >>> 2) + dwords);
  }

  #wqcfg(w: number): Uint32Array {
    return this.#wqcfgViews[w] ?? this.#view(this.wqcfgOffset(w), DsaWqCfg.dwords);
  }

  get state(): number {
    return rd(this.#genstsView, STATE_FIELD);
  }

  // --- MMIO (BAR0) ------------------------------------------------------------

  mmioRead32(offset: number): number {
    if (!this.#inBar(offset, 4)) return 0;
    return this.#regs[offset >>> 2] ?? 0;
  }

  mmioRead64(offset: number): bigint {
    if (!this.#inBar(offset, 8)) return 0n;
    return (BigInt(this.#regs[(offset >>> 2) + 1] ?? 0) << 32n) | BigInt(this.#regs[offset >>> 2] ?? 0);
  }

  mmioWrite32(offset: number, value: number): void {
    if (typeof value !== "number" || !Number.isInteger(value) || value < -0x8000_0000 || value > 0xffff_ffff) {
      throw new KernelError(Errno.EINVAL, `${this.name}: MMIO write of ${String(value)} at ${String(offset)}: not a 32-bit value`);
    }
    if (!this.#inBar(offset, 4)) return;
    this.#writeDword(offset >>> 2, value >>> 0);
    this.#afterWrite(offset >>> 2, 1);
  }

  mmioWrite64(offset: number, value: bigint): void {
    if (typeof value !== "bigint" || value < 0n || value >= U64_LIMIT) {
      throw new KernelError(Errno.EINVAL, `${this.name}: MMIO write of ${String(value)} at ${String(offset)}: not a 64-bit value`);
    }
    if (!this.#inBar(offset, 8)) return;
    const i = offset >>> 2;
    this.#writeDword(i, Number(value & 0xffff_ffffn));
    this.#writeDword(i + 1, Number(value >> 32n));
    this.#afterWrite(i, 2);
  }

  #inBar(offset: number, size: number): boolean {
    return Number.isInteger(offset) && offset >= 0 && offset + size <= DSA_BAR0_SIZE && offset % size === 0;
  }

  /** Which WQ's WQCFG holds dword `i`, or -1. */
  #wqOfDword(i: number): number {
    const base = (DSA_WQCFG_TABLE * DSA_TABLE_MULT) >>> 2;
    const per = DSA_WQCFG_STRIDE >>> 2;
    if (i < base || i >= base + per * this.numWqs) return -1;
    return Math.floor((i - base) / per);
  }

  #writeDword(i: number, v: number): void {
    const rw = this.#rwMask[i] ?? 0;
    const w1c = this.#w1cMask[i] ?? 0;
    if ((rw | w1c) === 0) return;
    // DSA spec 9.2: GENCFG is writable only while the device is disabled, a
    // WQCFG entry only while its WQ is disabled (registers.h users in
    // drivers/dma/idxd/device.c: idxd_wq_config_write() runs before enable).
    if (i === DsaReg.GENCFG >>> 2 && this.state !== DsaDeviceState.DISABLED) return;
    const wq = this.#wqOfDword(i);
    if (wq >= 0 && DsaWqCfg.get(this.#wqcfg(wq), "STATE") !== WqState.DISABLED) return;
    if (i === DsaReg.CMD >>> 2 && DsaCmdSts.get(this.#view(DsaReg.CMDSTS, 1), "ACTIVE") === 1) return;
    const old = this.#regs[i] ?? 0;
    this.#regs[i] = (((old & ~rw) | (v & rw)) & ~(v & w1c)) >>> 0;
  }

  #afterWrite(i: number, n: number): void {
    const cmd = DsaReg.CMD >>> 2;
    if (cmd >= i && cmd < i + n) this.#command();
  }

  // --- commands ------------------------------------------------------------

  #command(): void {
    const cmdv = this.#view(DsaReg.CMD, 1);
    const sts = this.#view(DsaReg.CMDSTS, 1);
    if (DsaCmdSts.get(sts, "ACTIVE") === 1) return;
    const op = DsaCmd.get(cmdv, "COMMAND");
    const operand = DsaCmd.get(cmdv, "OPERAND");
    const err = this.#execCommand(op, operand);
    if (this.#pending !== undefined) {
      DsaCmdSts.set(sts, "ACTIVE", 1);
      this.#kick();
      this.#settle();
      return;
    }
    this.#finishCommand(err);
  }

  #finishCommand(err: number): void {
    const sts = this.#view(DsaReg.CMDSTS, 1);
    sts[0] = 0;
    DsaCmdSts.set(sts, "ERR", err);
    if (DsaCmd.get(this.#view(DsaReg.CMD, 1), "INT_REQ") === 1) DsaIntCause.set(this.#view(DsaReg.INTCAUSE, 1), "CMD", 1);
  }

  /** WQ indices named by a mask operand: bits 15:0 a bitmap of 16 WQs, bits 19:16 which group of 16 (drivers/dma/idxd/device.c: idxd_wq_disable()). */
  #maskWqs(operand: number): number[] {
    const base = ((operand >>> 16) & 0xf) * 16;
    const out: number[] = [];
    for (let b = 0; b < 16; b++) if ((operand & (1 << b)) !== 0 && base + b < this.numWqs) out.push(base + b);
    return out;
  }

  #allWqs(): number[] {
    return Array.from({ length: this.numWqs }, (_, i) => i);
  }

  #execCommand(op: number, operand: number): number {
    const enabled = this.state === DsaDeviceState.ENABLED;
    switch (op) {
      case DsaCommand.ENABLE_DEVICE: {
        if (enabled) return DsaCmdErr.DEV_ENABLED;
        if (!this.ep.busMasterEnabled) return DsaCmdErr.BUSMASTER_EN;
        let sum = 0;
        for (let w = 0; w < this.numWqs; w++) sum += DsaWqCfg.get(this.#wqcfg(w), "SIZE");
        if (sum > DsaWqCap.get(this.#view(DsaReg.WQCAP, 2), "TOTAL_WQ_SIZE")) return DsaCmdErr.WQ_SIZE_ERANGE;
        DsaGenSts.set(this.#view(DsaReg.GENSTS, 1), "STATE", DsaDeviceState.ENABLED);
        return DsaCmdErr.SUCCESS;
      }
      case DsaCommand.DISABLE_DEVICE:
        if (!enabled) return DsaCmdErr.DIS_DEV_EN;
        this.#pending = { wqs: this.#allWqs(), then: "disableDevice" };
        return DsaCmdErr.SUCCESS;
      case DsaCommand.DRAIN_ALL:
        this.#pending = { wqs: this.#allWqs(), then: "none" };
        return DsaCmdErr.SUCCESS;
      case DsaCommand.ABORT_ALL:
        for (const w of this.#allWqs()) this.#abortWq(w);
        return DsaCmdErr.SUCCESS;
      case DsaCommand.RESET_DEVICE:
        this.#resetDevice();
        return DsaCmdErr.SUCCESS;
      case DsaCommand.ENABLE_WQ:
        return this.#enableWq(operand);
      case DsaCommand.DISABLE_WQ:
      case DsaCommand.DRAIN_WQ: {
        const wqs = this.#maskWqs(operand);
        if (wqs.length === 0 || wqs.some((w) => DsaWqCfg.get(this.#wqcfg(w), "STATE") !== WqState.ENABLED)) return DsaCmdErr.DEV_NOT_EN;
        this.#pending = { wqs, then: op === DsaCommand.DISABLE_WQ ? "disable" : "none" };
        return DsaCmdErr.SUCCESS;
      }
      case DsaCommand.DRAIN_PASID:
        // DSA spec 9.2.x, Drain PASID: completes once every descriptor of the PASID already submitted
        // to any WQ has completed; other PASIDs' work and new submissions go on (drivers/dma/idxd/device.c:
        // idxd_device_drain_pasid(), used when a user WQ's file is closed).
        this.#pending = { wqs: [], then: "none", pasid: operand };
        return DsaCmdErr.SUCCESS;
      case DsaCommand.ABORT_PASID:
        for (const w of this.#allWqs()) this.#abortWq(w, operand);
        return DsaCmdErr.SUCCESS;
      case DsaCommand.ABORT_WQ:
      case DsaCommand.RESET_WQ: {
        const wqs = this.#maskWqs(operand);
        if (wqs.length === 0 || wqs.some((w) => DsaWqCfg.get(this.#wqcfg(w), "STATE") !== WqState.ENABLED)) return DsaCmdErr.DEV_NOT_EN;
        for (const w of wqs) {
          this.#abortWq(w);
          // RESET_WQ also disables the WQ and returns its configuration to reset (DSA spec 9.2.x, Reset WQ).
          if (op === DsaCommand.RESET_WQ) this.#wqcfg(w).fill(0);
        }
        return DsaCmdErr.SUCCESS;
      }
      default:
        return DsaCmdErr.INVAL_CMD;
    }
  }

  #enableWq(w: number): number {
    if (this.state !== DsaDeviceState.ENABLED) return DsaCmdErr.DEV_NOTEN;
    if (w >= this.numWqs) return DsaCmdErr.INVAL_WQIDX;
    const c = this.#wqcfg(w);
    if (DsaWqCfg.get(c, "STATE") === WqState.ENABLED) return DsaCmdErr.WQ_ENABLED;
    if (DsaWqCfg.get(c, "SIZE") === 0) return DsaCmdErr.WQ_SIZE;
    const gencap = this.#view(DsaReg.GENCAP, 2);
    if (DsaWqCfg.get(c, "BOF") === 1 && DsaGenCap.get(gencap, "BLOCK_ON_FAULT") === 0) return DsaCmdErr.BOF_EN;
    // A shared WQ takes its PASID from each ENQCMD payload, so it must be PASID-enabled (drivers/dma/idxd/device.c: idxd_wq_setup_pasid()).
    if (DsaWqCfg.get(c, "MODE") === WqMode.SHARED && DsaWqCfg.get(c, "PASID_EN") === 0) return DsaCmdErr.PASID_EN;
    const x = DsaWqCfg.get(c, "MAX_XFER_SHIFT");
    if (x === 0 || x > DsaGenCap.get(gencap, "MAX_XFER_SHIFT")) return DsaCmdErr.MAX_XFER_SIZE;
    DsaWqCfg.set(c, "STATE", WqState.ENABLED);
    return DsaCmdErr.SUCCESS;
  }

  /** Drops a WQ's queued descriptors and its running one (only those of `pasid` when given). */
  #abortWq(w: number, pasid?: number): void {
    const q = this.#wqs[w];
    if (q !== undefined) {
      if (pasid === undefined) q.queue.length = 0;
      else q.queue.splice(0, q.queue.length, ...q.queue.filter((d) => d.pasid !== pasid));
    }
    if (this.#job?.wq === w && (pasid === undefined || this.#job.pasid === pasid)) this.#job = undefined;
    this.#setOccupancy(w);
  }

  #wqIdle(w: number): boolean {
    return (this.#wqs[w]?.queue.length ?? 0) === 0 && this.#job?.wq !== w;
  }

  #pasidIdle(pasid: number): boolean {
    return this.#job?.pasid !== pasid && this.#wqs.every((q) => q.queue.every((d) => d.pasid !== pasid));
  }

  /** Completes a waiting drain/disable once every WQ it names (or every descriptor of its PASID) is done. */
  #settle(): void {
    const p = this.#pending;
    if (!p?.wqs.every((w) => this.#wqIdle(w))) return;
    if (p.pasid !== undefined && !this.#pasidIdle(p.pasid)) return;
    this.#pending = undefined;
    if (p.then === "disable" || p.then === "disableDevice") for (const w of p.wqs) DsaWqCfg.set(this.#wqcfg(w), "STATE", WqState.DISABLED);
    if (p.then === "disableDevice") DsaGenSts.set(this.#view(DsaReg.GENSTS, 1), "STATE", DsaDeviceState.DISABLED);
    this.#finishCommand(DsaCmdErr.SUCCESS);
  }

  #resetDevice(): void {
    this.#regs.set(this.#reset);
    for (const q of this.#wqs) q.queue.length = 0;
    this.#job = undefined;
    this.#pending = undefined;
  }

  // --- portals ---------------------------------------------------------------

  #checkSubmit(wq: number, bytes: Uint8Array): void {
    if (!Number.isInteger(wq) || wq < 0 || wq >= this.numWqs) throw new KernelError(Errno.EINVAL, `${this.name}: no portal for WQ ${String(wq)}`);
    if (!(bytes instanceof Uint8Array) || bytes.length !== DSA_DESC_SIZE) {
      throw new KernelError(Errno.EINVAL, `${this.name}: a portal write is one ${DSA_DESC_SIZE}-byte store`);
    }
  }

  /** Writes completion record `rec` at host physical `pa`: dword stores where the memory offers them, else its bytes. */
  #writeRecord(pa: number, rec: Uint32Array): boolean {
    const mem = this.#mem;
    return mem.writeWords !== undefined ? mem.writeWords(pa, rec) : mem.writeBytes(pa, new Uint8Array(rec.buffer, rec.byteOffset, DSA_COMPLETION_SIZE));
  }

  /** The device's own copy of a descriptor it queues or runs step by step. */
  #copyIn(bytes: Uint8Array): DescBuf {
    const d = this.#descPool.pop() ?? new DescBuf();
    d.bytes.set(bytes);
    return d;
  }

  #accepting(wq: number, mode: number): boolean {
    const c = this.#wqcfg(wq);
    return (
      this.state === DsaDeviceState.ENABLED &&
      rd(c, W.STATE) === WqState.ENABLED &&
      rd(c, W.MODE) === mode &&
      (this.#wqs[wq]?.queue.length ?? 0) < rd(c, W.SIZE) &&
      // A drain or disable in progress takes nothing new.
      !(this.#pending?.wqs.includes(wq) ?? false)
    );
  }

  /** A MOVDIR64B to a dedicated WQ's portal: posted, no status. The WQ's configured PASID and privilege stamp the descriptor. */
  movdir64b(wq: number, bytes: Uint8Array): void {
    this.#checkSubmit(wq, bytes);
    if (!this.#accepting(wq, WqMode.DEDICATED)) {
      this.stats.dropped++;
      return;
    }
    const c = this.#wqcfg(wq);
    const pasid = rd(c, W.PASID_EN) === 1 ? rd(c, W.PASID) : undefined;
    const priv = rd(c, W.PRIV) === 1;
    u8set.call(this.#expressWords.bytes, bytes);
    if (this.#expressMove(bytes, wq, rd(c, W.MAX_XFER_SHIFT), pasid, priv)) return;
    this.#enqueue(this.#copyIn(bytes), wq, pasid, priv);
  }

  /**
   * An ENQCMD (or ENQCMDS) to a shared WQ's portal: the payload's PASID field
   * (which the CPU filled from IA32_PASID) and privilege bit name the address
   * space. "retry" (ZF = 1) when the WQ cannot take it: full, disabled, or
   * not a shared WQ.
   */
  enqcmd(wq: number, bytes: Uint8Array): "accepted" | "retry" {
    this.#checkSubmit(wq, bytes);
    if (!this.#accepting(wq, WqMode.SHARED)) {
      this.stats.retried++;
      return "retry";
    }
    // The device's copy of the payload: the express path reads it, and so do the PASID and PRIV here.
    const w = this.#expressWords;
    u8set.call(w.bytes, bytes);
    const pasid = rd(w.words, D.PASID);
    const priv = rd(w.words, D.PRIV) === 1;
    if (!this.#expressMove(bytes, wq, rd(this.#wqcfg(wq), W.MAX_XFER_SHIFT), pasid, priv)) this.#enqueue(this.#copyIn(bytes), wq, pasid, priv);
    return "accepted";
  }

  /**
   * The express path: a MEMMOVE submitted to an idle engine (immediate mode,
   * nothing queued, running or pending) whose pages the engine's handles
   * ({@link XlateMemo}) already translate runs here in one pass, without a
   * job, a pooled copy of the descriptor or the step loop. It does what the
   * step-by-step engine does for such a descriptor, in the same order: per
   * chunk, the source's and the destination's device-TLB hits (accounted on
   * the handles, as {@link #xlate} does), then the copy; then the completion
   * record's hit and the record. So results, counters and device-TLB recency
   * are the engine's (a test runs both and compares).
   *
   * Anything else goes to the engine: before any effect, false (the caller
   * queues the descriptor as before); after some chunks, the engine takes
   * over at the first chunk whose page has no good handle, or whose copy
   * aborted ({@link #expressHandOver}), so nothing is counted twice.
   */
  #expressMove(d: Uint8Array, wq: number, maxXferShift: number, pasid: number | undefined, priv: boolean): boolean {
    // `d` is also in #expressWords (the portal copied it); a hand-over copies `d` into a job's own buffer.
    const xl = this.#xl;
    if (!this.#express || xl === undefined || this.mode !== "immediate" || this.#inRun || this.#job !== undefined || this.#pending !== undefined || !this.#allQueuesEmpty()) return false;
    // The device's copy of the descriptor (the caller made it): each field a load.
    const v = this.#expressWords.words;
    // Fields read with plain loads, not `rd`: V8 inlines a budget of bytecode into one function, and
    // a dozen `rd` calls would spend it before the translations and the copy below get theirs.
    // The address and size fields are whole dwords (DsaDesc); FLAGS and OPCODE share one.
    const flags = ((v[D.FLAGS.word] ?? 0) >>> D.FLAGS.shift) & D.FLAGS.mask;
    if (((v[D.OPCODE.word] ?? 0) >>> D.OPCODE.shift) !== DsaOpcode.MEMMOVE || (flags & ~DESC_DEFINED_FLAGS) !== 0) return false;
    const size = v[D.XFER_SIZE.word] ?? 0;
    const src = (v[D.SRC_HI.word] ?? 0) * 2 ** 32 + (v[D.SRC_LO.word] ?? 0);
    const dst = (v[D.DST_HI.word] ?? 0) * 2 ** 32 + (v[D.DST_LO.word] ?? 0);
    const compl = (v[D.COMPL_HI.word] ?? 0) * 2 ** 32 + (v[D.COMPL_LO.word] ?? 0);
    const crav = (flags & DescFlag.CRAV) !== 0;
    // #check's and #dispatch's errors (size range, overlap, a misaligned record) are the engine's to report.
    if (size === 0 || (size - 1) >>> maxXferShift !== 0 || (src < dst + size && dst < src + size)) return false;
    if (crav && (compl & (DSA_COMPLETION_ALIGN - 1)) !== 0) return false;
    // #xlate's refusals: every address of both buffers and the record must be one it would translate.
    if (src + size > ADDR_LIMIT || dst + size > ADDR_LIMIT || (crav && compl >= ADDR_LIMIT)) return false;
    const ep = this.ep;
    if (ep.upstream === undefined || !ep.busMasterEnabled || !ep.atsEnabled) return false;
    if (pasid !== undefined && (!this.#pasidOn || pasid >= this.#pasidLimit || (priv && !this.#pasidPrivOn))) return false;
    const eff = pasid !== undefined && priv;
    const who = pasid === undefined ? -1 : pasid * 2 + (eff ? 1 : 0);
    const tlb = ep.deviceTlb;
    const mem = this.#mem;
    // One block move per chunk, as #dataStep does when the memory offers it.
    if (mem.copyBytes === undefined) return false;

    this.stats.submitted++;
    this.#rr = wq + 1 === this.numWqs ? 0 : wq + 1;
    for (let off = 0; off < size; ) {
      const a = src + off;
      const b = dst + off;
      const len = Math.min(size - off, PAGE - (b & PAGE_MASK), PAGE - (a & PAGE_MASK));
      const ha = xl.get(who, a - (a & PAGE_MASK));
      const hb = xl.get(who, b - (b & PAGE_MASK));
      if (ha === undefined || hb === undefined || !ha.valid || !hb.valid || !atcPermits(ha.value, false, eff) || !atcPermits(hb.value, true, eff)) {
        this.#expressHandOver(d, wq, pasid, priv, off, false);
        return true;
      }
      tlb.hitAgain(ha);
      tlb.hitAgain(hb);
      const ea = ha.value;
      const eb = hb.value;
      if (!mem.copyBytes(eb.paBase + (b - eb.base), ea.paBase + (a - ea.base), len)) {
        this.#expressHandOver(d, wq, pasid, priv, off, true);
        return true;
      }
      off += len;
      this.stats.bytesMoved += len;
    }
    if (!crav || (flags & DescFlag.RCR) === 0) {
      // Success without a record asked for: nothing to write.
      this.stats.completed++;
      return true;
    }
    const hr = xl.get(who, compl - (compl & PAGE_MASK));
    if (hr === undefined || !hr.valid || !atcPermits(hr.value, true, eff)) {
      this.#expressHandOver(d, wq, pasid, priv, size, false);
      return true;
    }
    tlb.hitAgain(hr);
    const er = hr.value;
    // A success record: STATUS is the low bits of dword 0, BYTES_COMPLETED all of dword 1
    // (DsaCompletion), and every other field zero, which they stay in this buffer.
    const rec = this.#expressRecord;
    rec[C.STATUS.word] = DsaStatus.SUCCESS << C.STATUS.shift;
    rec[C.BYTES_COMPLETED.word] = size;
    if (!this.#writeRecord(er.paBase + (compl - er.base), rec)) {
      // As #completionStep: the record could not be written, so the error goes to SWERR.
      const job = this.#dispatch(this.#copyIn(d), wq, pasid, priv);
      if (job !== undefined) {
        job.done = size;
        this.#swerr(job, DsaStatus.CRA_XLAT, { faultAddr: compl, write: true });
        this.#job = job;
        this.#retire();
        return true;
      }
    }
    this.stats.completed++;
    return true;
  }

  /**
   * The engine takes over a descriptor the express path started: `done` bytes
   * moved (and counted); `aborted` when the copy of the next chunk found host
   * memory missing, which the engine reports as #dataStep does.
   */
  #expressHandOver(d: Uint8Array, wq: number, pasid: number | undefined, priv: boolean, done: number, aborted: boolean): void {
    const job = this.#dispatch(this.#copyIn(d), wq, pasid, priv);
    // #expressMove checked everything #dispatch may refuse: a job always comes back.
    if (job === undefined) return;
    job.done = done;
    if (aborted) {
      job.status = DsaStatus.TRANSLATION_FAIL;
      job.faultAddr = job.src + done;
      job.phase = "completion";
    } else if (done >= job.size) job.phase = "completion";
    this.#inRun = true;
    try {
      this.#job = job;
      while (this.step());
    } finally {
      this.#inRun = false;
    }
  }

  #enqueue(buf: DescBuf, wq: number, pasid: number | undefined, priv: boolean): void {
    this.stats.submitted++;
    if (this.mode === "immediate" && !this.#inRun && this.#job === undefined && this.#pending === undefined && this.#allQueuesEmpty()) {
      // An idle immediate engine takes the descriptor straight away: what the queue would hand it at once.
      this.#rr = wq + 1 === this.numWqs ? 0 : wq + 1;
      this.#inRun = true;
      try {
        const job = this.#dispatch(buf, wq, pasid, priv);
        if (job === undefined) this.#settle();
        else this.#job = job;
        while (this.step());
      } finally {
        this.#inRun = false;
      }
      return;
    }
    this.#wqs[wq]?.queue.push({ buf, desc: buf.words, wq, pasid, priv });
    this.#setOccupancy(wq);
    this.#kick();
  }

  /**
   * The PASIDs the device still has work for: each descriptor queued in a WQ
   * and the one running, in that order, repeats kept (descriptors without a
   * PASID are left out). For checkers: no descriptor may outlive its PASID.
   */
  inFlightPasids(): number[] {
    const out: number[] = [];
    for (const w of this.#wqs) for (const d of w.queue) if (d.pasid !== undefined) out.push(d.pasid);
    if (this.#job?.pasid !== undefined) out.push(this.#job.pasid);
    return out;
  }

  #allQueuesEmpty(): boolean {
    // An indexed loop: for-of brings the iterator protocol's close handling into every caller it is inlined in.
    const wqs = this.#wqs;
    // eslint-disable-next-line @typescript-eslint/prefer-for-of -- see above
    for (let i = 0; i < wqs.length; i++) if ((wqs[i]?.queue.length ?? 0) !== 0) return false;
    return true;
  }

  #setOccupancy(w: number): void {
    wr(this.#wqcfg(w), W.OCCUPANCY, this.#wqs[w]?.queue.length ?? 0);
  }

  // --- the engine ------------------------------------------------------------

  /** Whether a descriptor is waiting for a page response. */
  get blocked(): boolean {
    const job = this.#job;
    return job !== undefined && job.wait !== null;
  }

  /** Whether there is anything to run now. */
  get runnable(): boolean {
    if (this.#job !== undefined) return this.#job.wait === null;
    return this.#wqs.some((q) => q.queue.length > 0);
  }

  #kick(): void {
    if (this.mode === "immediate") this.run();
    else if (this.runnable) this.onRunnable?.();
  }

  /** Runs until idle or blocked. Re-entrant calls return at once. */
  run(): void {
    if (this.#inRun) return;
    this.#inRun = true;
    try {
      while (this.step());
    } finally {
      this.#inRun = false;
    }
  }

  /** One unit of work: dispatch a descriptor, move one page, or write a completion record. False when there was nothing to do. */
  step(): boolean {
    let job = this.#job;
    if (job === undefined) {
      const next = this.#dequeue();
      if (next === undefined) return false;
      job = this.#dispatch(next.buf, next.wq, next.pasid, next.priv);
      if (job === undefined) {
        this.#settle();
        return true;
      }
      this.#job = job;
    }
    if (job.wait !== null) return false;
    if (job.phase === "data") this.#dataStep(job);
    else this.#completionStep(job);
    return true;
  }

  /** Drives a stepwise device from a kernel work queue: one step per work item. */
  driveFrom(wq: Workqueue, name = `${this.name} engine`): Work {
    if (this.mode !== "stepwise") throw new KernelError(Errno.EINVAL, `${this.name}: only a stepwise device is driven by a work queue`);
    const work = new Work(name, () => {
      if (this.step() && this.runnable) wq.queueWork(work);
    });
    this.onRunnable = () => wq.queueWork(work);
    if (this.runnable) wq.queueWork(work);
    return work;
  }

  #dequeue(): Queued | undefined {
    const n = this.numWqs;
    // Round robin from #rr (always below n), wrapping without a division per WQ.
    for (let i = 0, w = this.#rr; i < n; i++, w = w + 1 === n ? 0 : w + 1) {
      const q = this.#wqs[w];
      // An empty queue is passed over without calling shift() on it (one builtin call per WQ per step).
      if (q === undefined || q.queue.length === 0) continue;
      const d = q.queue.shift();
      if (d !== undefined) {
        this.#rr = w + 1 === n ? 0 : w + 1;
        this.#setOccupancy(w);
        return d;
      }
    }
    return undefined;
  }

  /** Decodes and checks a descriptor (DSA spec 8.1); an error completes it at once. */
  #dispatch(buf: DescBuf, wq: number, pasid: number | undefined, priv: boolean): Job | undefined {
    const d = buf.words;
    const flags = rd(d, D.FLAGS);
    const opcode = rd(d, D.OPCODE);
    const job = this.#spare ?? newJob(buf);
    this.#spare = undefined;
    job.buf = buf;
    job.desc = d;
    job.wq = wq;
    job.pasid = pasid;
    job.priv = priv;
    job.opcode = opcode;
    job.flags = flags;
    job.compl = u64(rd(d, D.COMPL_LO), rd(d, D.COMPL_HI));
    job.src = u64(rd(d, D.SRC_LO), rd(d, D.SRC_HI));
    job.dst = u64(rd(d, D.DST_LO), rd(d, D.DST_HI));
    job.size = rd(d, D.XFER_SIZE);
    // The descriptor's BOF flag counts only when the WQ allows blocking (WQCFG.BOF).
    job.bof = (flags & DescFlag.BOF) !== 0 && rd(this.#wqcfg(wq), W.BOF) === 1;
    job.done = 0;
    job.result = 0;
    job.retries = 0;
    job.phase = "data";
    job.status = DsaStatus.SUCCESS;
    job.faultAddr = 0;
    job.faultWrite = false;
    job.crFault = false;
    job.wait = null;
    const crav = (flags & DescFlag.CRAV) !== 0;
    // `& (align - 1)` is `% align` for any non-negative integer (ToInt32 keeps the low 32 bits exactly), without the floating-point remainder.
    if (crav && (job.compl & (DSA_COMPLETION_ALIGN - 1)) !== 0) {
      // No record can be written at a misaligned address: the error goes to SWERR.
      this.#swerr(job, DsaStatus.CRA_ALIGN, { faultAddr: job.compl });
      this.stats.completed++;
      return undefined;
    }
    const bad = this.#check(job);
    if (bad !== undefined) {
      job.status = bad;
      job.phase = "completion";
    } else if (opcode === DsaOpcode.NOOP) job.phase = "completion";
    return job;
  }

  #check(job: Job): DsaStatusCode | undefined {
    if ((job.flags & ~DESC_DEFINED_FLAGS) !== 0) return DsaStatus.INVALID_FLAGS;
    if (job.opcode >= 32 || ((SUPPORTED_OPS_MASK >>> job.opcode) & 1) === 0) return DsaStatus.BAD_OPCODE;
    if (job.opcode === DsaOpcode.NOOP) return undefined;
    // size ≤ 2^MAX_XFER_SHIFT, for a size of at least 1 (both are below 2^32).
    if (job.size === 0 || (job.size - 1) >>> rd(this.#wqcfg(job.wq), W.MAX_XFER_SHIFT) !== 0) return DsaStatus.XFER_ERANGE;
    // GENCAP.OVERLAP_COPY is 0: overlapping move buffers are an error (DSA spec 8.3.x, Memory Move).
    if (job.opcode === DsaOpcode.MEMMOVE && job.src < job.dst + job.size && job.dst < job.src + job.size) return DsaStatus.OVERLAP_BUFFERS;
    return undefined;
  }

  #dataStep(job: Job): void {
    const off = job.done;
    const rest = job.size - off;
    const a = job.src + off;
    const b = job.dst + off;
    const fill = job.opcode === DsaOpcode.MEMFILL;
    let len = Math.min(rest, PAGE - (b & PAGE_MASK));
    if (!fill) len = Math.min(len, PAGE - (a & PAGE_MASK));
    let paA = 0;
    if (!fill) {
      const x = this.#xlate(job, a, false);
      if (x !== XLATE_OK) {
        this.#fault(job, faultKind(x), a, false);
        return;
      }
      paA = this.#pa;
    }
    // COMPARE reads its second source where the destination is.
    const bWrite = job.opcode !== DsaOpcode.COMPARE;
    const xb = this.#xlate(job, b, bWrite);
    if (xb !== XLATE_OK) {
      this.#fault(job, faultKind(xb), b, bWrite);
      return;
    }
    const paB = this.#pa;
    const mem = this.#mem;
    let ok: boolean;
    if (job.opcode === DsaOpcode.MEMMOVE) {
      // One block move when the memory offers it (no bounce through the device's buffer).
      if (mem.copyBytes !== undefined) ok = mem.copyBytes(paB, paA, len);
      else {
        const buf = this.#scratch.subarray(0, len);
        ok = mem.readBytes(paA, buf) && mem.writeBytes(paB, buf);
      }
    } else if (fill) {
      // The 8-byte pattern is the SRC field, repeated from the start of the destination.
      const buf = this.#scratch.subarray(0, len);
      const pat = new Uint8Array(job.desc.buffer, job.desc.byteOffset + 16, 8);
      for (let i = 0; i < len; i++) buf[i] = pat[(off + i) & 7] ?? 0;
      ok = mem.writeBytes(paB, buf);
    } else {
      const x = this.#scratch.subarray(0, len);
      const y2 = this.#scratch2.subarray(0, len);
      ok = mem.readBytes(paA, x) && mem.readBytes(paB, y2);
      if (ok) {
        for (let i = 0; i < len; i++) {
          if (x[i] !== y2[i]) {
            // Not equal: result 1, and bytes completed is the offset of the first difference (DSA spec 8.3.x, Compare).
            job.result = 1;
            job.done = off + i;
            job.phase = "completion";
            return;
          }
        }
      }
    }
    if (!ok) {
      // Host memory answered with an abort: nothing more of this descriptor can complete.
      job.status = DsaStatus.TRANSLATION_FAIL;
      job.faultAddr = a;
      job.phase = "completion";
      return;
    }
    job.done += len;
    job.retries = 0;
    this.stats.bytesMoved += len;
    if (job.done >= job.size) job.phase = "completion";
  }

  /** A data access faulted: block on a page request, or complete partially, or fail. */
  #fault(job: Job, kind: "recoverable" | "refused", addr: number, write: boolean): void {
    if (kind === "recoverable" && job.bof && this.#pageRequest(job, addr, write)) return;
    job.status = kind === "recoverable" ? DsaStatus.PAGE_FAULT_NOBOF : DsaStatus.TRANSLATION_FAIL;
    job.faultAddr = addr;
    job.faultWrite = write;
    job.phase = "completion";
  }

  /** Issues a PRI page request and blocks the job; false when PRI cannot be used or the retries are spent. */
  #pageRequest(job: Job, addr: number, write: boolean): boolean {
    const pri = this.ep.pri;
    if (pri === undefined || !pri.usable || job.retries >= this.#maxRetries) return false;
    const token = {};
    job.wait = token;
    const issued = pri.issue(
      { ...(job.pasid === undefined ? {} : { pasid: job.pasid }), priv: job.priv, exec: false, addr, read: !write, write },
      (o) => {
        if (this.#job !== job || job.wait !== token) return;
        job.wait = null;
        if (o === "success") job.retries++;
        // The record's own page: the data's status stands; asking again would fail again, forever (SWERR instead).
        else if (job.phase === "completion") job.crFault = true;
        else {
          job.status = DsaStatus.PAGE_FAULT_NOBOF;
          job.faultAddr = addr;
          job.faultWrite = write;
          job.phase = "completion";
        }
        this.#kick();
      },
    );
    if (issued === "sent") {
      this.stats.pageRequests++;
      return true;
    }
    if (issued === "noCredit") {
      pri.onCredit(() => {
        if (this.#job !== job || job.wait !== token) return;
        job.wait = null;
        this.#kick();
      });
      return true;
    }
    job.wait = null;
    return false;
  }

  /**
   * Writes the completion record (DSA spec 8.2): when CRAV is set and either
   * RCR asked for one or the descriptor did not succeed. An unsuccessful
   * descriptor without a record address, or whose record cannot be written,
   * reports through SWERR.
   */
  #completionStep(job: Job): void {
    const crav = (job.flags & DescFlag.CRAV) !== 0;
    const rcr = (job.flags & DescFlag.RCR) !== 0;
    const success = job.status === DsaStatus.SUCCESS;
    if (!crav) {
      if (!success) this.#swerr(job, job.status, { faultAddr: job.faultAddr, write: job.faultWrite });
      this.#retire(); return;
    }
    if (success && !rcr) {
      this.#retire();
      return;
    }
    const xr = this.#xlate(job, job.compl, true);
    if (xr !== XLATE_OK) {
      const x = xr;
      if (x === XLATE_RECOVERABLE && job.bof && !job.crFault && this.#pageRequest(job, job.compl, true)) return;
      this.#swerr(job, DsaStatus.CRA_XLAT, { faultAddr: job.compl, write: true });
      this.#retire(); return;
    }
    const x = this.#pa;
    const rec = this.#record;
    for (let i = 0; i < rec.length; i++) rec[i] = 0;
    wr(rec, C.STATUS, job.status);
    wr(rec, C.RESULT, job.result);
    if (job.status === DsaStatus.PAGE_FAULT_NOBOF || job.status === DsaStatus.TRANSLATION_FAIL) {
      wr(rec, C.FAULT_WRITE, job.faultWrite ? 1 : 0);
      wr(rec, C.FAULT_ADDR_LO, job.faultAddr % 2 ** 32);
      wr(rec, C.FAULT_ADDR_HI, Math.floor(job.faultAddr / 2 ** 32));
    }
    if (job.status === DsaStatus.INVALID_FLAGS) wr(rec, C.INVALID_FLAGS, job.flags & ~DESC_DEFINED_FLAGS);
    if (job.opcode !== DsaOpcode.NOOP) wr(rec, C.BYTES_COMPLETED, job.done);
    if (!this.#writeRecord(x, rec)) this.#swerr(job, DsaStatus.CRA_XLAT, { faultAddr: job.compl, write: true });
    this.#retire();
  }

  #retire(): void {
    const job = this.#job;
    if (job !== undefined) {
      if (this.#descPool.length < DESC_POOL_MAX) this.#descPool.push(job.buf);
      this.#spare = job;
    }
    this.#job = undefined;
    this.stats.completed++;
    this.#settle();
  }

  /** Records a software error (DSA spec 9.2.x, SWERR): a second one while the first is unread only sets OVERFLOW. */
  #swerr(job: Job, code: number, o: { readonly faultAddr?: number; readonly write?: boolean }): void {
    this.stats.swerrs++;
    const v = this.#view(DsaReg.SWERR, DsaSwErr.dwords);
    if (DsaSwErr.get(v, "VALID") === 1) {
      DsaSwErr.set(v, "OVERFLOW", 1);
      return;
    }
    v.fill(0);
    DsaSwErr.set(v, "VALID", 1);
    DsaSwErr.set(v, "DESC_VALID", 1);
    DsaSwErr.set(v, "WQ_IDX_VALID", 1);
    DsaSwErr.set(v, "WQ_IDX", job.wq);
    DsaSwErr.set(v, "ERROR", code);
    DsaSwErr.set(v, "OPERATION", job.opcode);
    DsaSwErr.set(v, "PASID", job.pasid ?? 0);
    DsaSwErr.set(v, "PRIV", job.priv ? 1 : 0);
    DsaSwErr.set(v, "FAULT_RW", o.write === true ? 1 : 0);
    const fa = o.faultAddr ?? 0;
    DsaSwErr.set(v, "FAULT_ADDR_LO", fa % 2 ** 32);
    DsaSwErr.set(v, "FAULT_ADDR_HI", Math.floor(fa / 2 ** 32));
    DsaIntCause.set(this.#view(DsaReg.INTCAUSE, 1), "ERR", 1);
  }

  /**
   * Translates one address for the job's PASID: through the device TLB and
   * ATS translation requests when ATS is enabled, else as an untranslated
   * request the IOMMU translates itself. A fault a page request may cure is
   * "recoverable"; anything else (no PASID support enabled, Bus Master off,
   * the PASID or page refused) is "refused".
   */
  #xlate(job: Job, addr: number, write: boolean): number {
    this.#pa = 0;
    const ep = this.ep;
    const port = ep.upstream;
    if (port === undefined || !ep.busMasterEnabled || !Number.isSafeInteger(addr) || addr >= ADDR_LIMIT) return XLATE_REFUSED;
    const pasid = job.pasid;
    if (pasid !== undefined && (!this.#pasidOn || pasid >= this.#pasidLimit || (job.priv && !this.#pasidPrivOn))) return XLATE_REFUSED;
    const priv = pasid !== undefined && job.priv;
    if (!ep.atsEnabled) {
      const r = port.translate(pasid === undefined ? { sid: ep.sid, addr, write } : { sid: ep.sid, pasid, priv, exec: false, addr, write });
      if (!(r.ok && permits(r, write, priv))) return XLATE_REFUSED;
      this.#pa = r.pa;
      return XLATE_OK;
    }
    const tlb = ep.deviceTlb;
    const page = addr - (addr & PAGE_MASK);
    const who = pasid === undefined ? -1 : pasid * 2 + (priv ? 1 : 0);
    const h = this.#xl === undefined ? undefined : this.#xl.get(who, page);
    if (h !== undefined && tlb.hitAgain(h)) {
      const e = h.value;
      if (atcPermits(e, write, priv)) {
        this.#pa = e.paBase + (addr - e.base);
        return XLATE_OK;
      }
    } else {
      const hit = tlb.lookupHandle(pasid, priv, addr);
      if (hit !== undefined) {
        this.#xl?.set(who, page, hit);
        const e = hit.value;
        if (atcPermits(e, write, priv)) {
          this.#pa = e.paBase + (addr - e.base);
          return XLATE_OK;
        }
      }
    }
    const r = port.translate(pasid === undefined ? { sid: ep.sid, addr: page, write, ats: true } : { sid: ep.sid, pasid, priv, exec: false, addr: page, write, ats: true });
    if (!r.ok) return r.recoverable ? XLATE_RECOVERABLE : XLATE_REFUSED;
    ep.deviceTlb.fill(pasid, priv, page, r);
    if (!permits(r, write, priv)) return XLATE_RECOVERABLE;
    this.#pa = paOf(r, page, addr);
    return XLATE_OK;
  }
}

/** Whether a translation allows the access: the right permission, and a user access only to user pages. */
function newJob(buf: DescBuf): Job {
  return {
    buf, desc: buf.words, wq: 0, pasid: undefined, priv: false, opcode: 0, flags: 0, compl: 0, src: 0, dst: 0, size: 0, bof: false,
    done: 0, result: 0, retries: 0, phase: "data", status: DsaStatus.SUCCESS, faultAddr: 0, faultWrite: false, crFault: false, wait: null,
  };
}

function permits(r: TranslateOk, write: boolean, priv: boolean): boolean {
  return (write ? r.write : r.read) && (priv || !r.privOnly);
}

/**
 * {@link permits} for a device-TLB entry. A function of its own: the IOMMU's
 * answers come in several object shapes and device-TLB entries in one, and a
 * shared function's property loads, seeing all of them, would stay generic
 * (a LoadIC call each) on the hot path.
 */
function atcPermits(e: AtcEntry, write: boolean, priv: boolean): boolean {
  return (write ? e.write : e.read) && (priv || !e.privOnly);
}

function paOf(r: TranslateOk, page: number, addr: number): number {
  return r.pa + (addr - page);
}
