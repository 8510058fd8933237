import type { Workqueue } from "@vsva/kernel";
import { QueueRunner } from "../queue-runner.js";
import type { PhysMem } from "@vsva/pgtable";
import type { RegisterFile } from "../mmio/register-file.js";
import { IqaReg, IqercdReg, IqhReg, IqtReg, RegOffset } from "./regs.js";
import { Iqei } from "./inv-exec.js";

/** What the queue engine needs from the unit. */
export interface QueueHooks {
  /** GSTS.QIES. */
  enabled(): boolean;
  /** FSTS.IQE: the queue is stopped until software clears it. */
  stopped(): boolean;
  /** Records IQERCD and sets FSTS.IQE. */
  error(iqei: number, head: number): void;
  /** Runs one descriptor; 0 or an IQEI code. */
  execute(desc: Uint32Array, wide: boolean): number;
  /**
   * A descriptor was fetched (the trap point): "pass" executes it, "handled"
   * moves past it, "defer" stops the queue at it. `seq` numbers fetches.
   */
  fetched(desc: Uint32Array, seq: number, slot: number, addr: number): "pass" | "handled" | "defer";
}

/** A descriptor the trap deferred: the queue is stopped at `head` until it completes. */
interface Deferred {
  readonly seq: number;
  readonly head: number;
  readonly desc: Uint32Array;
  readonly wide: boolean;
}

/**
 * The invalidation queue (VT-d §10.4 IQA/IQH/IQT): a ring of 128- or 256-bit descriptors at
 * IQA, consumed by hardware from IQH up to the tail software writes to IQT.
 *
 * A tail beyond the queue or not 256-bit aligned with DW=1, a descriptor that
 * cannot be fetched, or one that is invalid, stops the queue with IQH on the
 * offending descriptor, FSTS.IQE set and the reason in IQERCD. Nothing more
 * is consumed until software clears IQE (after fixing the descriptor or the
 * tail), when processing resumes from IQH.
 *
 * Processing is immediate (inside the IQT write) or, given a work queue,
 * deferred to a work item, so the window between submission and completion
 * can be explored. Each fetched descriptor passes the unit's trap point
 * first, which may defer it: IQH stays on it and nothing after it is
 * consumed until {@link complete}.
 */
export class InvalidationQueue {
  readonly #iqa: Uint32Array;
  readonly #iqh: Uint32Array;
  readonly #iqt: Uint32Array;
  readonly #iqercd: Uint32Array;
  readonly #desc = new Uint32Array(8);
  readonly #pair = { lo: 0, hi: 0 };
  readonly #runner: QueueRunner<Deferred>;
  readonly stats = { processed: 0, errors: 0 };

  constructor(
    regs: RegisterFile,
    private readonly mem: PhysMem,
    private readonly hooks: QueueHooks,
    wq: Workqueue | null,
  ) {
    this.#iqh = regs.define(RegOffset.IQH, IqhReg);
    this.#iqt = regs.define(RegOffset.IQT, IqtReg);
    this.#iqa = regs.define(RegOffset.IQA, IqaReg);
    this.#iqercd = regs.define(RegOffset.IQERCD, IqercdReg);
    this.#runner = new QueueRunner("vtd-invalidation-queue", wq, hooks, () => this.#run());
  }

  get head(): number {
    return IqhReg.get(this.#iqh, "QH") * 16;
  }

  /** Whether a deferred run is pending. */
  get pending(): boolean {
    return this.#runner.pending;
  }

  /** IQH is reset to 0 whenever queued invalidation is disabled; a deferred descriptor is dropped with the rest. */
  resetHead(): void {
    IqhReg.set(this.#iqh, "QH", 0);
    this.#runner.drop();
  }

  /** The fetch number of the descriptor the queue is stopped at, or null. */
  get deferredSeq(): number | null {
    return this.#runner.deferred?.seq ?? null;
  }

  /**
   * Finishes the deferred descriptor `seq`: "pass" executes it now (an
   * invalid one stops the queue with IQE, as it would have at fetch),
   * "handled" only moves past it. Then the queue goes on as after an IQT
   * write. ENOENT if `seq` is not the deferred descriptor (never deferred,
   * completed already, or dropped when QIE was cleared).
   */
  complete(seq: number, outcome: "pass" | "handled"): void {
    const d = this.#runner.take(seq, "invalidation descriptor");
    if (outcome === "pass") {
      const code = this.hooks.execute(d.desc, d.wide);
      if (code !== 0) {
        this.#stop(code, d.head);
        return;
      }
    }
    const size = 4096 * 2 ** IqaReg.get(this.#iqa, "QS");
    IqhReg.set(this.#iqh, "QH", ((d.head + (d.wide ? 32 : 16)) % size) / 16);
    this.stats.processed++;
    this.kick();
  }

  /** Software advanced the tail or cleared IQE: run now or schedule a run. */
  kick(): void {
    this.#runner.kick();
  }

  /**
   * Consumes descriptors until the queue is empty, stops on an error or at a
   * deferred descriptor; returns how many were processed. A call made while
   * it runs (a trap that writes IQT or FSTS) is folded into the running one.
   */
  process(): number {
    return this.#runner.process();
  }

  #run(): number {
    const h = this.hooks;
    if (!h.enabled() || h.stopped() || this.#runner.deferred !== null) return 0;
    const wide = IqaReg.get(this.#iqa, "DW") === 1;
    const bytes = wide ? 32 : 16;
    const size = 4096 * 2 ** IqaReg.get(this.#iqa, "QS");
    const base = IqaReg.getAddr(this.#iqa, "IQA");
    const tail = IqtReg.get(this.#iqt, "QT") * 16;
    let head = this.head;
    if (tail >= size) return this.#stop(Iqei.TAIL_INVALID, head);
    if (wide && tail % 32 !== 0) return this.#stop(Iqei.TAIL_MISALIGNED, head);
    // A head left misaligned by a DW change, or beyond a shrunk queue, cannot reach the tail.
    if (head >= size || head % bytes !== 0) return this.#stop(Iqei.TAIL_INVALID, head);
    let n = 0;
    const d = this.#desc;
    while (head !== tail) {
      d.fill(0);
      const dw = bytes / 4;
      let fetched = true;
      for (let i = 0; i < dw; i += 2) {
        const pair = this.#pair;
        if (!this.mem.read64(base + head + i * 4, pair)) {
          fetched = false;
          break;
        }
        d[i] = pair.lo;
        d[i + 1] = pair.hi;
      }
      if (!fetched) return n + this.#stop(Iqei.FETCH_ERROR, head);
      const seq = this.#runner.nextSeq();
      const verdict = h.fetched(d, seq, head / bytes, base + head);
      if (verdict === "defer") {
        this.#runner.defer({ seq, head, desc: Uint32Array.from(d), wide });
        return n;
      }
      const code = verdict === "pass" ? h.execute(d, wide) : 0;
      if (code !== 0) return n + this.#stop(code, head);
      head = (head + bytes) % size;
      IqhReg.set(this.#iqh, "QH", head / 16);
      n++;
      this.stats.processed++;
    }
    return n;
  }

  #stop(iqei: number, head: number): 0 {
    IqercdReg.set(this.#iqercd, "IQEI", iqei);
    this.stats.errors++;
    this.hooks.error(iqei, head);
    return 0;
  }
}
