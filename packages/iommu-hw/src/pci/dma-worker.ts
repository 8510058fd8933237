import { Errno, KernelError, Work, type Workqueue } from "@vsva/kernel";
import type { DmaEngine, DmaResult } from "./dma-engine.js";

/**
 * Drives a stepwise {@link DmaEngine} from a work queue: one page per work
 * item, optionally `nsPerPage` of virtual time apart, so a transfer
 * interleaves with everything else the scheduler runs (a guest freeing the
 * PASID half way through, an unbind racing a page request…). A DMA blocked on
 * a page request queues nothing; the engine's `onRunnable` requeues it when
 * the response arrives.
 */
export class DmaWorker {
  readonly #engine: DmaEngine;
  readonly #wq: Workqueue;
  readonly #work: Work;
  readonly #nsPerPage: number;

  constructor(engine: DmaEngine, wq: Workqueue, opts: { readonly name?: string; readonly nsPerPage?: number } = {}) {
    if (engine.mode !== "stepwise") {
      throw new KernelError(Errno.EINVAL, "a DMA worker needs an engine in stepwise mode");
    }
    const ns = opts.nsPerPage ?? 0;
    if (!Number.isFinite(ns) || ns < 0) throw new KernelError(Errno.EINVAL, `nsPerPage must be a non-negative number, got ${ns}`);
    this.#engine = engine;
    this.#wq = wq;
    this.#nsPerPage = ns;
    this.#work = new Work(opts.name ?? "dma", () => {
      if (this.#engine.step() && this.#engine.result === "running") this.#kick();
    });
    engine.onRunnable = () => this.#kick();
  }

  /** Triggers the programmed transfer and queues its first page. */
  start(): DmaResult {
    const r = this.#engine.trigger();
    if (r === "running") this.#kick();
    return r;
  }

  /** The work item, for flush/cancel by the owner. */
  get work(): Work {
    return this.#work;
  }

  #kick(): void {
    if (this.#nsPerPage > 0) this.#wq.queueDelayedWork(this.#work, this.#nsPerPage);
    else this.#wq.queueWork(this.#work);
  }
}
