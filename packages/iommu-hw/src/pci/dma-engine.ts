import type { SourceId, TraceBus } from "@vsva/kernel";
import type { DmaRequest, IommuPort, TranslateOk } from "../iommu-port.js";
import type { PhysMem } from "@vsva/pgtable";
import type { AtcEntry, AtcHandle, DeviceTlb } from "./device-tlb.js";
import type { PageRequestInterface, PageRequestOutcome } from "./pri.js";
import "./trace-events.js";

/**
 * A generic DMA engine on the endpoint, for tests and the harness, in the
 * manner of QEMU's iommu-testdev: program an address (optionally with a PASID
 * and privileged/execute attributes), a length and a direction, trigger, and
 * read a result code.
 *
 * The transfer is split at 4 KiB boundaries of the untranslated address. Each
 * page is translated
 * - with ATS enabled: through the device TLB; on a miss (or a cached entry
 *   without the needed permission) by an ATS translation request whose
 *   completion fills the device TLB; a recoverable fault with PRI usable
 *   becomes a page request, and the DMA waits for the page group response;
 * - otherwise: by an untranslated request the IOMMU translates itself.
 * The bytes then move in host physical memory at the translated address.
 *
 * The engine runs "immediately" (trigger and page responses run it until it
 * completes or blocks) or "stepwise" (each `step()` moves one page; when a
 * blocked DMA becomes runnable again `onRunnable` is called, so a scheduler
 * can queue the next step).
 */
export type DmaResult =
  | "idle"
  | "running"
  | "pageRequestPending"
  | "ok"
  | "translationFault"
  | "pageRequestInvalid"
  | "priResponseFailure"
  | "busMasterDisabled"
  | "pasidDisabled"
  | "badProgramming"
  | "memoryAbort";

export interface DmaProgram {
  readonly pasid?: number;
  /** Privileged Mode Requested (needs a PASID). */
  readonly priv?: boolean;
  /** Execute Requested (needs a PASID). */
  readonly exec?: boolean;
  readonly addr: number;
  readonly length: number;
  /** "read": memory → `buffer`; "write": `pattern` (repeated) → memory. */
  readonly direction: "read" | "write";
  readonly pattern?: Uint8Array;
  readonly buffer?: Uint8Array;
}

export interface DmaStats {
  bytesMoved: number;
  /** Requests sent to the IOMMU's translate (ATS translation requests and untranslated accesses). */
  translationsRequested: number;
  atsTranslations: number;
  deviceTlbHits: number;
  pageRequests: number;
  completed: number;
}

/** The PASID capability's control state as the function has latched it. */
export interface PasidControl {
  readonly enabled: boolean;
  readonly width: number;
  readonly exec: boolean;
  readonly priv: boolean;
}

/** What the engine needs from the endpoint it sits in. */
export interface DmaEngineHost {
  readonly sid: SourceId;
  readonly device: string;
  readonly mem: PhysMem;
  readonly deviceTlb: DeviceTlb;
  readonly pri: PageRequestInterface | undefined;
  readonly trace: TraceBus | undefined;
  upstream(): IommuPort | undefined;
  busMasterEnabled(): boolean;
  atsEnabled(): boolean;
  /** PASID capability state, or undefined when the function has none. */
  pasidControl(): PasidControl | undefined;
  /** A non-posted request came back Unsupported Request: sets Status.Received Master Abort. */
  noteMasterAbort(): void;
}

export interface DmaEngineOptions {
  readonly mode?: "immediate" | "stepwise";
  /** Successful page responses per page before a still-faulting page fails the DMA (default 3). */
  readonly maxPageRequestRetries?: number;
  readonly onRunnable?: () => void;
  readonly onComplete?: (result: DmaResult) => void;
  /**
   * Keep handles on the device-TLB entries that answered (see `DmaEngine.#xlHandle`) and
   * account repeated hits on them instead of probing again (default true). Invisible by
   * design: off only for the tests that prove the same workload ends identically either way.
   */
  readonly translationMemo?: boolean;
}

const PAGE_SIZE = 4096;
/**
 * Offset within a 4 KiB page as `addr & PAGE_MASK`: exact for any integer
 * below 2^53 (ToInt32 keeps the low 32 bits, and with them the low 12), where
 * `addr % PAGE_SIZE` on an address above 2^31 is a floating-point remainder,
 * a runtime call on every page.
 */
const PAGE_MASK = PAGE_SIZE - 1;
const MAX_ADDR = 2 ** 53;

/**
 * What #translate returns instead of an object (a transfer must allocate
 * nothing per page): a host-physical address (>= 0), or one of these.
 */
const NEEDS_PAGE_REQUEST = -1;
/** The DMA fails with the result left in `#failure`. */
const FAILED = -2;
/**
 * Pages of a pattern or buffer whose per-chunk views the engine keeps (see
 * `DmaEngine.#chunk`): 4 MiB, so a long-lived program of that size costs at
 * most this many small view objects, and a larger one still works (views
 * past it are made per chunk, as before).
 */
const VIEW_MEMO_PAGES = 1024;
/**
 * The run memo (see `DmaEngine.#extend`): slots direct-mapped by the run's first 4 KiB page,
 * each of RUN_MEMO_FIELDS numbers (first address, its host-physical address, device-TLB
 * generation, requester and access key, pattern limit, bytes left, run length, and how many
 * device-TLB handles of the joined pages `DmaEngine.#runHandles` holds for it, or -1).
 */
const RUN_MEMO_SLOTS = 16;
const RUN_MEMO_MASK = RUN_MEMO_SLOTS - 1;
const RUN_MEMO_FIELDS = 8;
/**
 * Slots of the translation memo (`DmaEngine.#xlHandle`), direct-mapped by 4 KiB page number:
 * a power of two above the default 64-entry device TLB, so a sweep over it rarely collides.
 */
const XL_SLOTS = 128;
const XL_MASK = XL_SLOTS - 1;

/**
 * The request sent upstream: with the PASID TLP prefix if the program has a PASID, and marked as an
 * ATS translation request if `ats`. A fresh object per request (a port may keep it, as the harness's
 * recording port does), written as literals with the same fields in the same order as a spread of
 * the prefix would give: a spread into a literal is a generic property copy, several times the cost
 * of the literal, on every page of a stream of device-TLB misses.
 */
function requestOf(sid: SourceId, p: DmaProgram, priv: boolean, exec: boolean, addr: number, write: boolean, ats: boolean): DmaRequest {
  const pasid = p.pasid;
  if (pasid === undefined) return ats ? { sid, addr, write, ats } : { sid, addr, write };
  return ats ? { sid, pasid, priv, exec, addr, write, ats } : { sid, pasid, priv, exec, addr, write };
}

function permits(p: { read: boolean; write: boolean; exec: boolean; privOnly: boolean }, write: boolean, exec: boolean, priv: boolean): boolean {
  if (write ? !p.write : !p.read) return false;
  if (exec && !p.exec) return false;
  return priv || !p.privOnly;
}

export class DmaEngine {
  readonly stats: DmaStats = { bytesMoved: 0, translationsRequested: 0, atsTranslations: 0, deviceTlbHits: 0, pageRequests: 0, completed: 0 };
  readonly mode: "immediate" | "stepwise";
  onRunnable: (() => void) | undefined;
  onComplete: ((result: DmaResult) => void) | undefined;
  readonly #host: DmaEngineHost;
  readonly #maxRetries: number;
  readonly #scratch = new Uint8Array(PAGE_SIZE);
  /**
   * Views of `#viewsOf` (the program's pattern or buffer) by chunk: slot
   * `floor(start / PAGE_SIZE)` holds the view last made there. A transfer
   * moves page-sized chunks at the same offsets every time it runs, and
   * making a view per page cost as much as a tenth of a 4 KiB copy; a slot
   * is used only when its view is exactly the chunk asked for.
   */
  #viewsOf: Uint8Array | undefined = undefined;
  #views: (Uint8Array | undefined)[] = [];
  /** Where each kept view starts in `#viewsOf` (a number compare instead of a `byteOffset` getter per page). */
  #viewStarts: number[] = [];
  /** RUN_MEMO_SLOTS × RUN_MEMO_FIELDS; a first address of -1 marks a slot unused. */
  readonly #runMemo = new Float64Array(RUN_MEMO_SLOTS * RUN_MEMO_FIELDS).fill(-1);
  /** Whether the last #translate was answered by the device TLB. */
  #lastHit = false;
  readonly #memoOn: boolean;
  /**
   * The translation memo: slot `pfn & XL_MASK` keeps the device TLB's handle on the entry
   * that answered the lookup of (requester `#xlWho`, 4 KiB page `#xlPage`) while the device
   * TLB's generation was `#xlGen`. While the generation holds, a lookup of any address in
   * that page by that requester finds that same entry (the device TLB changes an answer only
   * with its generation, and its entries cover whole aligned 4 KiB pages), so the hit is
   * accounted on the handle (DeviceTlb.hitAgain: the same counters and recency update the
   * lookup makes) and the probe is skipped. The access (read/write/exec) is not part of the
   * key: the lookup does not depend on it, and the permission check is made on the entry
   * every time, as after a probe. No count, recency or translation outlives a generation.
   */
  readonly #xlPage = new Float64Array(XL_SLOTS).fill(-1);
  readonly #xlWho = new Float64Array(XL_SLOTS);
  readonly #xlGen = new Float64Array(XL_SLOTS);
  readonly #xlHandle: (AtcHandle | undefined)[] = new Array<AtcHandle | undefined>(XL_SLOTS).fill(undefined);
  /**
   * Per run-memo slot, the handles of the pages that joined that run, in address order, taken
   * by the lookups made when the run last moved (under the generation the slot records). A run
   * memo hit is the same run under the same generation, so its joined pages' lookups are
   * accounted on these handles instead of probed.
   */
  readonly #runHandles: AtcHandle[][] = Array.from({ length: RUN_MEMO_SLOTS }, (): AtcHandle[] => []);
  /** The run-memo slot #extend last answered from or filled, or -1 (no run considered). */
  #runSlot = -1;
  #program: DmaProgram | undefined;
  #state: DmaResult = "idle";
  #done = 0;
  #retries = 0;
  /** Identity of the wait in progress; an outcome for an older wait is stale and ignored. */
  #wait: object | null = null;
  #inRun = false;
  /** The PASID control last checked against, and 2^width for it. */
  #pasidCtl: PasidControl | undefined = undefined;
  #pasidLimit = 0;
  /** The result of the last #translate that returned FAILED. */
  #failure: DmaResult = "translationFault";
  /**
   * Set by an immediate-mode trigger that has just validated the program: the
   * first step runs synchronously after it, before software can touch the
   * configuration, so its re-check of Bus Master and PASID control would read
   * the same registers again. Any later step (stepwise, or resumed after a
   * page request) re-checks.
   */
  #justValidated = false;

  constructor(host: DmaEngineHost, opts: DmaEngineOptions = {}) {
    this.#host = host;
    this.mode = opts.mode ?? "immediate";
    this.#maxRetries = opts.maxPageRequestRetries ?? 3;
    this.onRunnable = opts.onRunnable;
    this.onComplete = opts.onComplete;
    this.#memoOn = opts.translationMemo ?? true;
  }

  /** The result register: "running"/"pageRequestPending" while busy, then the outcome. */
  get result(): DmaResult {
    return this.#state;
  }

  get busy(): boolean {
    return this.#state === "running" || this.#state === "pageRequestPending";
  }

  /** Bytes of the current (or last) transfer completed so far. */
  get bytesDone(): number {
    return this.#done;
  }

  get program(): DmaProgram | undefined {
    return this.#program;
  }

  /** Programs the next transfer; ignored (false) while a transfer is in progress, as a busy device ignores its registers. */
  setProgram(p: DmaProgram): boolean {
    if (this.busy) return false;
    this.#program = p;
    return true;
  }

  /** Starts the programmed transfer. While busy the trigger is ignored. Returns the result register. */
  trigger(): DmaResult {
    if (this.busy) return this.#state;
    this.#done = 0;
    this.#retries = 0;
    this.#wait = null;
    const bad = this.#validate();
    if (bad !== undefined) {
      this.#finish(bad);
      return this.#state;
    }
    this.#state = "running";
    if (this.mode === "immediate") {
      this.#justValidated = true;
      this.run();
    }
    return this.#state;
  }

  /** Moves one page. False when there was nothing to do (idle, done or blocked). */
  step(): boolean {
    if (this.#state !== "running") return false;
    this.#stepOnce();
    return true;
  }

  /** Steps until the transfer completes or blocks. Re-entrant calls (a response delivered during a step) return at once. */
  run(): DmaResult {
    if (this.#inRun) return this.#state;
    this.#inRun = true;
    try {
      while (this.#state === "running") this.#stepOnce();
    } finally {
      this.#inRun = false;
    }
    return this.#state;
  }

  /** Function Level Reset: drops the transfer and any wait; the result register reads "idle". */
  abort(): void {
    this.#wait = null;
    this.#state = "idle";
    this.#program = undefined;
    this.#done = 0;
    this.#justValidated = false;
  }

  #validate(): DmaResult | undefined {
    const p = this.#program;
    if (p === undefined) return "badProgramming";
    if (!Number.isInteger(p.addr) || p.addr < 0 || !Number.isInteger(p.length) || p.length <= 0 || p.addr + p.length > MAX_ADDR) {
      return "badProgramming";
    }
    if (p.direction === "write" ? p.pattern === undefined || p.pattern.length === 0 : p.buffer === undefined || p.buffer.length < p.length) {
      return "badProgramming";
    }
    if (p.pasid === undefined && (p.priv === true || p.exec === true)) return "badProgramming";
    if (!this.#host.busMasterEnabled()) return "busMasterDisabled";
    return this.#checkPasid(p);
  }

  /** A PASID the function cannot put in a TLP prefix: capability absent or disabled, or an attribute not enabled. */
  #checkPasid(p: DmaProgram): DmaResult | undefined {
    if (p.pasid === undefined) return undefined;
    const ctl = this.#host.pasidControl();
    if (!ctl?.enabled) return "pasidDisabled";
    // 2 ** width once per latched control (a variable power is a Math.pow call; this runs per page).
    if (ctl !== this.#pasidCtl) {
      this.#pasidCtl = ctl;
      this.#pasidLimit = 2 ** ctl.width;
    }
    if (!Number.isInteger(p.pasid) || p.pasid < 0 || p.pasid >= this.#pasidLimit) return "badProgramming";
    if ((p.priv === true && !ctl.priv) || (p.exec === true && !ctl.exec)) return "pasidDisabled";
    return undefined;
  }

  #stepOnce(): void {
    const p = this.#program;
    if (p === undefined) {
      this.#finish("badProgramming");
      return;
    }
    if (this.#justValidated) this.#justValidated = false;
    else {
      // Software may have changed the configuration since the trigger.
      if (!this.#host.busMasterEnabled()) {
        this.#finish("busMasterDisabled");
        return;
      }
      const pasidBad = this.#checkPasid(p);
      if (pasidBad !== undefined) {
        this.#finish(pasidBad);
        return;
      }
    }
    const cur = p.addr + this.#done;
    const chunk = Math.min(p.length - this.#done, PAGE_SIZE - (cur & PAGE_MASK));
    const write = p.direction === "write";
    const pa = this.#translate(p, cur, write);
    if (pa === FAILED) {
      const fail = this.#failure;
      if (fail === "translationFault" && !write && !this.#host.atsEnabled()) this.#host.noteMasterAbort();
      this.#finish(fail);
      return;
    }
    if (pa === NEEDS_PAGE_REQUEST) {
      this.#pageRequest(p, cur, write);
      return;
    }
    // Immediate mode: the pages after this one that the device TLB maps to the host-physical
    // addresses that follow on move with it in one block copy (see #extend).
    // Only after a hit: a page that needed a translation request is most likely one of a stream
    // of misses (a working set larger than the device TLB), where looking ahead finds nothing.
    const run = this.mode === "immediate" && this.#lastHit && chunk < p.length - this.#done ? this.#extend(p, cur, pa, chunk, write) : chunk;
    if (run > chunk && this.#move(p, pa, run, write)) {
      this.#lookupRun(p, cur, chunk, run);
      this.#advance(p, run);
      return;
    }
    // One page, or a run whose block copy failed all the same (memory moves all or nothing; a
    // memory that refuses writes to populated pages): then page by page, as the device moves
    // them, so the pages before the one that fails are moved and counted, and the pages after
    // it are not looked up.
    let off = 0;
    let n = chunk;
    while (off < run) {
      if (off > 0) this.#lookupJoined(p, cur + off);
      if (!this.#move(p, pa + off, n, write)) {
        if (!write) this.#host.noteMasterAbort();
        this.#finish("memoryAbort");
        return;
      }
      this.#advance(p, n);
      off += n;
      n = Math.min(PAGE_SIZE, run - off);
    }
  }

  /** `n` more bytes moved; finishes the transfer when that was the last of them. */
  #advance(p: DmaProgram, n: number): void {
    this.#done += n;
    this.#retries = 0;
    this.stats.bytesMoved += n;
    if (this.#done >= p.length) this.#finish("ok");
  }

  /**
   * The length of the run that starts with the `chunk` bytes at `cur` (translated to `pa`):
   * the following pages join it while the device TLB holds a translation for them that
   * permits the access and lands at the host-physical address right after the run, and
   * while a write's pattern covers the run without wrapping. A device-TLB hit has no effect
   * but its count and recency, and nothing else runs between the pages of an
   * immediate-mode transfer, so the outcome is the page-by-page one. A run found once is
   * kept while the device TLB's generation holds (then every page's entry is the one it
   * was), so a transfer repeated over warm pages peeks at nothing. Pages are only peeked
   * at here (uncounted): each page that joined is looked up once it is moved
   * (#lookupJoined), and one that did not is left to the next step.
   */
  #extend(p: DmaProgram, cur: number, pa: number, chunk: number, write: boolean): number {
    this.#runSlot = -1;
    if (!this.#host.atsEnabled()) return chunk;
    let limit = p.length - this.#done;
    if (write) {
      const plen = p.pattern?.length ?? 0;
      const done = this.#done;
      const cover = plen - (done < plen ? done : done % plen);
      if (cover < limit) limit = cover;
    }
    // Every page of a run in populated memory (regions are whole 4 KiB pages): a run whose block
    // copy would abort is not made, so the memory's counters see the accesses page by page would.
    const rest = p.length - this.#done;
    const tlb = this.#host.deviceTlb;
    const priv = p.priv === true;
    const exec = p.exec === true;
    // The run found last time from this page, if nothing it rests on can have changed: the same
    // requester, access and bounds, the same translation of this page, and no fill,
    // invalidation or flush of the device TLB since (its generation).
    const key = (p.pasid ?? -1) * 8 + (priv ? 4 : 0) + (exec ? 2 : 0) + (write ? 1 : 0);
    const gen = tlb.generation;
    const slot = Math.floor(cur / PAGE_SIZE) & RUN_MEMO_MASK;
    const memo = this.#runMemo;
    const at = slot * RUN_MEMO_FIELDS;
    if (memo[at] === cur && memo[at + 1] === pa && memo[at + 2] === gen && memo[at + 3] === key && memo[at + 4] === limit && memo[at + 5] === rest) {
      this.#runSlot = slot;
      return memo[at + 6] ?? chunk;
    }
    const mem = this.#host.mem;
    if (!mem.isPopulated(pa)) return chunk;
    let len = chunk;
    while (len < rest) {
      // Whole pages only (or the transfer's last bytes): a page is never split between two steps.
      const more = Math.min(PAGE_SIZE, rest - len);
      if (len + more > limit) break;
      const next = cur + len;
      const e = tlb.peek(p.pasid, priv, next);
      if (e === undefined || !permits(e, write, exec, priv) || e.paBase + (next - e.base) !== pa + len || !mem.isPopulated(pa + len)) break;
      len += more;
    }
    memo[at] = cur;
    memo[at + 1] = pa;
    memo[at + 2] = gen;
    memo[at + 3] = key;
    memo[at + 4] = limit;
    memo[at + 5] = rest;
    memo[at + 6] = len;
    // The joined pages' handles are taken when the run moves (#lookupRun).
    memo[at + 7] = -1;
    this.#runSlot = slot;
    return len;
  }

  /**
   * The lookups of the pages `[cur + chunk, cur + run)` that joined the run #extend just
   * answered, in address order, as each page's own step would have made them. When #extend
   * answered from its memo and the handles of that run's pages were taken under the generation
   * the memo holds (still the device TLB's: nothing runs between #extend and here), each hit is
   * accounted on its handle; otherwise each page is looked up and its handle kept for the next time.
   */
  #lookupRun(p: DmaProgram, cur: number, chunk: number, run: number): void {
    const slot = this.#runSlot;
    if (!this.#memoOn || slot < 0) {
      for (let off = chunk; off < run; off += PAGE_SIZE) this.#lookupJoined(p, cur + off);
      return;
    }
    const tlb = this.#host.deviceTlb;
    const memo = this.#runMemo;
    const at = slot * RUN_MEMO_FIELDS;
    const handles = this.#runHandles[slot] ?? [];
    const pages = Math.ceil((run - chunk) / PAGE_SIZE);
    if (memo[at + 7] === pages && memo[at + 2] === tlb.generation && memo[at] === cur && memo[at + 6] === run) {
      let i = 0;
      for (let off = chunk; off < run; off += PAGE_SIZE, i++) {
        const h = handles[i];
        // A handle taken under this generation still has its entry; a lookup stands in if not.
        if (h === undefined || !tlb.hitAgain(h)) tlb.lookup(p.pasid, p.priv === true, cur + off);
      }
      this.stats.deviceTlbHits += pages;
      return;
    }
    const priv = p.priv === true;
    handles.length = 0;
    for (let off = chunk; off < run; off += PAGE_SIZE) {
      const h = tlb.lookupHandle(p.pasid, priv, cur + off);
      this.stats.deviceTlbHits++;
      if (h !== undefined) handles.push(h);
    }
    // Every joined page was peeked at under this generation, so each lookup hit; if one did not, no handles are kept.
    memo[at + 7] = handles.length === pages ? pages : -1;
  }

  /** The lookup a page that joined a run would have made in its own step: the hit counted, its recency refreshed. */
  #lookupJoined(p: DmaProgram, addr: number): void {
    this.#host.deviceTlb.lookup(p.pasid, p.priv === true, addr);
    this.stats.deviceTlbHits++;
  }

  /** The host-physical address of `addr`, or NEEDS_PAGE_REQUEST, or FAILED (with `#failure` set). */
  #translate(p: DmaProgram, addr: number, write: boolean): number {
    const port = this.#host.upstream();
    // Not attached below an IOMMU: nothing completes the request.
    if (port === undefined) return this.#fail("memoryAbort");
    const priv = p.priv === true;
    const exec = p.exec === true;
    if (!this.#host.atsEnabled()) {
      this.#lastHit = false;
      this.stats.translationsRequested++;
      const r = port.translate(requestOf(this.#host.sid, p, priv, exec, addr, write, false));
      return r.ok && permits(r, write, exec, priv) ? r.pa : this.#fail("translationFault");
    }
    const tlb = this.#host.deviceTlb;
    // Page Aligned Request: translation requests carry the 4 KiB page address.
    const page = addr - (addr & PAGE_MASK);
    // Through the memo only after a hit: after a miss this page is most likely one of a stream of
    // misses (a working set larger than the device TLB), where every fill moves the generation and
    // the memo would only add its checks to each page's probe.
    const hit: AtcEntry | undefined = this.#memoOn && this.#lastHit ? this.#lookupMemo(tlb, p.pasid, priv, addr, page) : tlb.lookup(p.pasid, priv, addr);
    if (hit !== undefined && permits(hit, write, exec, priv)) {
      this.stats.deviceTlbHits++;
      this.#lastHit = true;
      return hit.paBase + (addr - hit.base);
    }
    this.#lastHit = false;
    this.stats.translationsRequested++;
    this.stats.atsTranslations++;
    const r = port.translate(requestOf(this.#host.sid, p, priv, exec, page, write, true));
    const trace = this.#host.trace;
    if (trace?.active === true) {
      trace.emit("pci.ats-translate", "DEVICE", this.#ids(p.pasid), { addr: page, write, pa: r.ok ? r.pa : -1, reason: r.ok ? 0 : r.reason });
    } else trace?.skip();
    if (r.ok) {
      tlb.fill(p.pasid, priv, page, r);
      // A completion without the needed permission is the ATS way of saying
      // "not (yet) for this access": ask for it with a page request.
      return permits(r, write, exec, priv) ? this.#paOf(r, page, addr) : NEEDS_PAGE_REQUEST;
    }
    return r.recoverable ? NEEDS_PAGE_REQUEST : this.#fail("translationFault");
  }

  /** `tlb.lookup(pasid, priv, addr)`, through the translation memo (see `#xlHandle`); `page` is addr's 4 KiB page. */
  #lookupMemo(tlb: DeviceTlb, pasid: number | undefined, priv: boolean, addr: number, page: number): AtcEntry | undefined {
    const who = (pasid ?? -1) * 2 + (priv ? 1 : 0);
    // ToUint32 of a page base below 2^53 keeps its low 32 bits: this is the page number mod XL_SLOTS.
    const slot = (page >>> 12) & XL_MASK;
    const gen = tlb.generation;
    if (this.#xlPage[slot] === page && this.#xlWho[slot] === who && this.#xlGen[slot] === gen) {
      const h = this.#xlHandle[slot];
      if (h !== undefined && tlb.hitAgain(h)) return h.value;
    }
    const h = tlb.lookupHandle(pasid, priv, addr);
    if (h === undefined) return undefined;
    this.#xlPage[slot] = page;
    this.#xlWho[slot] = who;
    this.#xlGen[slot] = gen;
    this.#xlHandle[slot] = h;
    return h.value;
  }

  #fail(result: DmaResult): number {
    this.#failure = result;
    return FAILED;
  }

  #paOf(r: TranslateOk, page: number, addr: number): number {
    return r.pa + (addr - page);
  }

  #pageRequest(p: DmaProgram, addr: number, write: boolean): void {
    const pri = this.#host.pri;
    if (pri === undefined || !pri.usable || this.#retries >= this.#maxRetries) {
      this.#finish("translationFault");
      return;
    }
    const token = {};
    this.#wait = token;
    this.#state = "pageRequestPending";
    this.stats.pageRequests++;
    const issued = pri.issue(
      { ...(p.pasid === undefined ? {} : { pasid: p.pasid }), priv: p.priv === true, exec: p.exec === true, addr, read: !write, write },
      (o) => this.#onOutcome(token, o),
    );
    if (issued === "sent") return;
    this.stats.pageRequests--;
    if (issued === "noCredit") {
      pri.onCredit(() => this.#onCredit(token));
      return;
    }
    this.#wait = null;
    this.#finish("translationFault");
  }

  #onOutcome(token: object, o: PageRequestOutcome): void {
    if (token !== this.#wait) return;
    this.#wait = null;
    if (o === "success") {
      this.#retries++;
      this.#state = "running";
      this.#resume();
    } else {
      this.#finish(o === "invalid" ? "pageRequestInvalid" : "priResponseFailure");
    }
  }

  #onCredit(token: object): void {
    if (token !== this.#wait) return;
    this.#wait = null;
    this.#state = "running";
    this.#resume();
  }

  #resume(): void {
    if (this.mode === "immediate") this.run();
    else this.onRunnable?.();
  }

  #move(p: DmaProgram, pa: number, len: number, write: boolean): boolean {
    const mem = this.#host.mem;
    if (write) {
      const pat = p.pattern;
      if (pat === undefined) return false;
      const plen = pat.length;
      if (plen === 0) return false;
      // The phase in the pattern; an integer remainder is a division, so it is taken only once
      // the transfer has gone past one period (never, when the pattern is as long as the transfer).
      const done = this.#done;
      const phase = done < plen ? done : done % plen;
      // A pattern that is exactly this chunk is written as it is (no view to make);
      // one that covers it at its phase, through a view.
      if (phase === 0 && len === plen) return mem.writeBytes(pa, pat);
      if (phase + len <= plen) return mem.writeBytes(pa, this.#chunk(pat, phase, len));
      const data = this.#scratch.subarray(0, len);
      // One period at the right phase (two block copies), then doubling copies
      // (every copy length stays a multiple of the period, so the phase holds).
      let filled = Math.min(len, plen);
      const head = Math.min(filled, plen - phase);
      data.set(pat.subarray(phase, phase + head), 0);
      if (head < filled) data.set(pat.subarray(0, filled - head), head);
      while (filled < len) {
        const n = Math.min(filled, len - filled);
        data.copyWithin(filled, 0, n);
        filled += n;
      }
      return mem.writeBytes(pa, data);
    }
    const buf = p.buffer;
    if (buf === undefined) return false;
    return mem.readBytes(pa, this.#chunk(buf, this.#done, len));
  }

  /** `arr.subarray(start, start + len)`, made once per chunk offset of the array the program names. */
  #chunk(arr: Uint8Array, start: number, len: number): Uint8Array {
    if (arr !== this.#viewsOf) {
      this.#viewsOf = arr;
      this.#views = [];
      this.#viewStarts = [];
    }
    const slot = Math.floor(start / PAGE_SIZE);
    const v = this.#views[slot];
    // The same start and length in the same array: the same bytes (a view has no contents of its own).
    // `length` is read live: a view of a detached buffer reads 0 and is made again (and throws, as before).
    if (v !== undefined && this.#viewStarts[slot] === start && v.length === len) return v;
    const made = arr.subarray(start, start + len);
    if (slot < VIEW_MEMO_PAGES) {
      this.#views[slot] = made;
      this.#viewStarts[slot] = start;
    }
    return made;
  }

  #finish(result: DmaResult): void {
    this.#state = result;
    this.#wait = null;
    this.stats.completed++;
    const p = this.#program;
    // The payload is built only for listeners (once per transfer, but a 4 KiB transfer is short).
    const trace = this.#host.trace;
    if (trace?.active === true) {
      trace.emit("pci.dma-complete", "DEVICE", this.#ids(p?.pasid), {
        result,
        addr: p?.addr ?? 0,
        length: p?.length ?? 0,
        write: p?.direction === "write",
        bytes: this.#done,
      });
    } else trace?.skip();
    this.onComplete?.(result);
  }

  #ids(pasid: number | undefined): { device: string; hpasid?: number } {
    return pasid === undefined ? { device: this.#host.device } : { device: this.#host.device, hpasid: pasid };
  }
}
