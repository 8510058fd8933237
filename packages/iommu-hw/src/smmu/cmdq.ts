import type { Workqueue } from "@vsva/kernel";
import { QueueRunner } from "../queue-runner.js";
import type { PhysMem } from "@vsva/pgtable";
import { QueueGeometry } from "./queues.js";
import { CmdqConsReg, CmdqError, CmdqProdReg } from "./regs.js";
import { CMD_BYTES } from "./structures.js";

export interface CommandQueueHooks {
  /** CR0ACK.CMDQEN. */
  enabled(): boolean;
  /** GERROR.CMDQ_ERR is active (GERROR ≠ GERRORN): the queue is stopped. */
  stopped(): boolean;
  /** Sets CONS.ERR was done; raise GERROR.CMDQ_ERR. */
  error(code: number, cons: number): void;
  /** Runs one command; CmdqError code. */
  execute(cmd: Uint32Array): number;
  /**
   * A command was fetched (the trap point): "pass" executes it, "handled"
   * moves past it, "defer" stops the queue at it. `seq` numbers fetches.
   */
  fetched(cmd: Uint32Array, seq: number, slot: number, addr: number): "pass" | "handled" | "defer";
}

/** A command the trap deferred: CONS stays on it until it completes. */
interface Deferred {
  readonly seq: number;
  readonly cons: number;
  readonly cmd: Uint32Array;
}

/**
 * The command queue (SMMUv3 spec §3.5): 16-byte commands consumed from
 * CONS up to the PROD software writes. A command that cannot be fetched
 * (CERROR_ABT) or is illegal (CERROR_ILL) stops the queue with CONS on it,
 * CONS.ERR set and GERROR.CMDQ_ERR raised. Nothing more is consumed until
 * software acknowledges through GERRORN; it may first fix the command in
 * memory (Linux turns it into a CMD_SYNC) or move CONS past it, and the
 * queue resumes from CONS.
 *
 * Processing is immediate (inside the PROD write) or deferred to a work
 * item, so the window between submission and completion is observable.
 * Each fetched command passes the unit's trap point first, which may defer
 * it: CONS stays on it and nothing after it is consumed until
 * {@link complete}.
 */
export class CommandQueue {
  readonly #cmd = new Uint32Array(4);
  readonly #pair = { lo: 0, hi: 0 };
  readonly #runner: QueueRunner<Deferred>;
  readonly stats = { processed: 0, errors: 0 };

  constructor(
    private readonly mem: PhysMem,
    private readonly base: Uint32Array,
    private readonly prod: Uint32Array,
    private readonly cons: Uint32Array,
    private readonly maxLog2: number,
    private readonly hooks: CommandQueueHooks,
    wq: Workqueue | null,
  ) {
    this.#runner = new QueueRunner("smmu-cmdq", wq, hooks, () => this.#run());
  }

  get pending(): boolean {
    return this.#runner.pending;
  }

  /** PROD written, the queue enabled, or an error acknowledged: run now or schedule a run. */
  kick(): void {
    this.#runner.kick();
  }

  /** The fetch number of the command the queue is stopped at, or null. */
  get deferredSeq(): number | null {
    return this.#runner.deferred?.seq ?? null;
  }

  /** CMDQEN cleared: a deferred command is dropped with everything else not consumed. */
  disabled(): void {
    this.#runner.drop();
  }

  /**
   * Finishes the deferred command `seq`: "pass" executes it now (an illegal
   * one stops the queue with CMDQ_ERR, as it would have at fetch),
   * "handled" only moves CONS past it. Then the queue goes on as after a
   * PROD write. ENOENT if `seq` is not the deferred command.
   */
  complete(seq: number, outcome: "pass" | "handled"): void {
    const d = this.#runner.take(seq, "command");
    if (outcome === "pass") {
      const code = this.hooks.execute(d.cmd);
      if (code !== CmdqError.NONE) {
        this.#fail(code, d.cons);
        return;
      }
    }
    CmdqConsReg.set(this.cons, "RD", QueueGeometry.of(this.base, this.maxLog2).next(d.cons));
    this.stats.processed++;
    this.kick();
  }

  #fail(code: number, cons: number): void {
    CmdqConsReg.set(this.cons, "ERR", code);
    this.stats.errors++;
    this.hooks.error(code, cons);
  }

  /**
   * Consumes commands until the queue is empty, stops on an error or at a
   * deferred command; returns how many completed. A call made while it runs
   * (a trap that writes PROD) is folded into the running one.
   */
  process(): number {
    return this.#runner.process();
  }

  #run(): number {
    const h = this.hooks;
    let n = 0;
    while (h.enabled() && !h.stopped() && this.#runner.deferred === null) {
      const g = QueueGeometry.of(this.base, this.maxLog2);
      const p = CmdqProdReg.get(this.prod, "WR");
      const c = CmdqConsReg.get(this.cons, "RD");
      if (g.empty(p, c)) break;
      const at = g.base + g.index(c) * CMD_BYTES;
      const d = this.#cmd;
      let fetched = true;
      for (let i = 0; i < 4; i += 2) {
        if (!this.mem.read64(at + i * 4, this.#pair)) {
          fetched = false;
          break;
        }
        d[i] = this.#pair.lo;
        d[i + 1] = this.#pair.hi;
      }
      let code: number = CmdqError.ABT;
      if (fetched) {
        const seq = this.#runner.nextSeq();
        const verdict = h.fetched(d, seq, g.index(c), at);
        if (verdict === "defer") {
          this.#runner.defer({ seq, cons: c, cmd: Uint32Array.from(d) });
          break;
        }
        code = verdict === "pass" ? h.execute(d) : CmdqError.NONE;
      }
      if (code !== CmdqError.NONE) {
        this.#fail(code, c);
        break;
      }
      CmdqConsReg.set(this.cons, "RD", g.next(c));
      this.stats.processed++;
      n++;
    }
    return n;
  }
}
