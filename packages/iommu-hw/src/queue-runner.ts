import { Errno, KernelError, Work, type Workqueue } from "@vsva/kernel";

/** Whether a queue may run: enabled by software and not stopped on an error. */
export interface QueueGate {
  enabled(): boolean;
  stopped(): boolean;
}

/**
 * What the VT-d invalidation queue and the SMMUv3 command queue share about
 * running: a run happens inside the producer write or, given a work queue,
 * in a work item (so the window between submission and completion can be
 * explored); a run asked for while one is going (a trap that writes the
 * producer register) is folded into it; fetches are numbered; and one entry
 * the trap deferred stops the queue until it is completed.
 */
export class QueueRunner<D extends { readonly seq: number }> {
  readonly #work: Work | null;
  #busy = false;
  #rerun = false;
  #fetches = 0;
  #deferred: D | null = null;

  constructor(
    name: string,
    private readonly wq: Workqueue | null,
    private readonly gate: QueueGate,
    private readonly run: () => number,
  ) {
    this.#work = wq === null ? null : new Work(name, () => this.process());
  }

  /** Whether a deferred run is pending. */
  get pending(): boolean {
    return this.#work?.pending ?? false;
  }

  /** The entry the queue is stopped at, or null. */
  get deferred(): D | null {
    return this.#deferred;
  }

  /** The number of the next fetch. */
  nextSeq(): number {
    return ++this.#fetches;
  }

  /** Stops the queue at `d` until {@link take} completes it. */
  defer(d: D): void {
    this.#deferred = d;
  }

  /** Drops a deferred entry with everything else not consumed (the queue was disabled). */
  drop(): void {
    this.#deferred = null;
  }

  /** Takes the deferred entry `seq` to complete it: ENOENT (naming `what`) if that is not the one deferred. */
  take(seq: number, what: string): D {
    const d = this.#deferred;
    if (d?.seq !== seq) throw new KernelError(Errno.ENOENT, `no ${what} ${seq} is deferred`);
    this.#deferred = null;
    return d;
  }

  /** Software advanced the producer, enabled the queue or cleared its error: run now or schedule a run. */
  kick(): void {
    if (!this.gate.enabled() || this.gate.stopped()) return;
    if (this.#work !== null && this.wq !== null) this.wq.queueWork(this.#work);
    else this.process();
  }

  /** Runs until `run` finds nothing more to do, folding in runs asked for meanwhile; returns how many entries were consumed. */
  process(): number {
    if (this.#busy) {
      this.#rerun = true;
      return 0;
    }
    this.#busy = true;
    let n = 0;
    try {
      do {
        this.#rerun = false;
        n += this.run();
      } while (this.#rerunAsked());
    } finally {
      this.#busy = false;
    }
    return n;
  }

  /** Read through a method: a run can set it behind the compiler's back. */
  #rerunAsked(): boolean {
    return this.#rerun;
  }
}
