import { Work, type Workqueue } from "@vsva/kernel";
import type { PhysMem } from "../mem/phys-mem.js";
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
 */
export class CommandQueue {
  readonly #cmd = new Uint32Array(4);
  readonly #pair = { lo: 0, hi: 0 };
  readonly #work: Work | null;
  readonly stats = { processed: 0, errors: 0 };

  constructor(
    private readonly mem: PhysMem,
    private readonly base: Uint32Array,
    private readonly prod: Uint32Array,
    private readonly cons: Uint32Array,
    private readonly maxLog2: number,
    private readonly hooks: CommandQueueHooks,
    private readonly wq: Workqueue | null,
  ) {
    this.#work = wq === null ? null : new Work("smmu-cmdq", () => this.process());
  }

  get pending(): boolean {
    return this.#work?.pending ?? false;
  }

  /** PROD written, the queue enabled, or an error acknowledged: run now or schedule a run. */
  kick(): void {
    if (!this.hooks.enabled() || this.hooks.stopped()) return;
    if (this.#work !== null && this.wq !== null) this.wq.queueWork(this.#work);
    else this.process();
  }

  /** Consumes commands until the queue is empty or stops on an error; returns how many completed. */
  process(): number {
    const h = this.hooks;
    let n = 0;
    while (h.enabled() && !h.stopped()) {
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
      const code = fetched ? h.execute(d) : CmdqError.ABT;
      if (code !== CmdqError.NONE) {
        CmdqConsReg.set(this.cons, "ERR", code);
        this.stats.errors++;
        h.error(code, c);
        break;
      }
      CmdqConsReg.set(this.cons, "RD", g.next(c));
      this.stats.processed++;
      n++;
    }
    return n;
  }
}
