import { AtomicContext } from "./atomic.js";
import { Errno } from "./errno.js";
import { KernelError } from "./error.js";

/**
 * A deterministic scheduler: one thread, a virtual clock in nanoseconds, and
 * work queues whose items run only when the owner steps or drains it. There
 * are no real timers anywhere; delayed work becomes ready when the clock is
 * advanced past its deadline. Ready items run in the order they became ready
 * (ties broken by queueing order), so the same inputs give the same trace.
 */
export class Work {
  /** Set while queued (or waiting for its delay); cleared just before it runs, as in Linux. */
  #pending = false;
  #running = false;
  /** @internal deadline in virtual ns, or -1 when not delayed */
  deadline = -1;
  /** @internal ordering key among ready items */
  seq = 0;
  /** @internal the queue it is pending on */
  queue: Workqueue | null = null;

  constructor(
    readonly name: string,
    private readonly fn: () => void,
  ) {}

  get pending(): boolean {
    return this.#pending;
  }

  get running(): boolean {
    return this.#running;
  }

  /** @internal */
  setPending(p: boolean): void {
    this.#pending = p;
  }

  /** @internal */
  execute(): void {
    this.#running = true;
    try {
      this.fn();
    } finally {
      this.#running = false;
    }
  }
}

export class Workqueue {
  /** @internal */
  constructor(
    readonly name: string,
    private readonly sched: Scheduler,
  ) {}

  /** Queues `w` to run at the next step; false if it was already pending (as `queue_work`). */
  queueWork(w: Work): boolean {
    return this.sched.enqueue(this, w, 0);
  }

  /** Queues `w` to become ready `delayNs` of virtual time from now. */
  queueDelayedWork(w: Work, delayNs: number): boolean {
    if (!Number.isFinite(delayNs) || delayNs < 0) {
      throw new KernelError(Errno.EINVAL, `delay ${delayNs} ns is not a finite non-negative time`);
    }
    return this.sched.enqueue(this, w, delayNs);
  }

  /** Removes `w` if pending; returns whether it was. */
  cancelWork(w: Work): boolean {
    return this.sched.cancel(w);
  }

  /** Runs work until `w` is neither pending nor running (may sleep). */
  flushWork(w: Work): void {
    this.sched.flushWork(w);
  }

  /** Runs every item pending on this queue, including delayed ones (may sleep). */
  flush(): void {
    this.sched.flushQueue(this);
  }
}

export interface SchedulerStats {
  ran: number;
  queued: number;
  cancelled: number;
}

export class Scheduler {
  readonly atomic = new AtomicContext();
  readonly stats: SchedulerStats = { ran: 0, queued: 0, cancelled: 0 };
  #now = 0;
  #seq = 0;
  /** Ready items in run order. */
  #ready: Work[] = [];
  /** Delayed items, unordered (few at a time); scanned on advance. */
  readonly #delayed = new Set<Work>();
  readonly #queues = new Map<string, Workqueue>();

  now(): number {
    return this.#now;
  }

  createWorkqueue(name: string): Workqueue {
    if (this.#queues.has(name)) throw new KernelError(Errno.EEXIST, `workqueue ${name} already exists`);
    const wq = new Workqueue(name, this);
    this.#queues.set(name, wq);
    return wq;
  }

  /** Items pending, ready or delayed. */
  pending(): number {
    return this.#ready.length + this.#delayed.size;
  }

  /** @internal */
  enqueue(wq: Workqueue, w: Work, delayNs: number): boolean {
    if (w.pending) return false;
    w.setPending(true);
    w.queue = wq;
    w.seq = this.#seq++;
    this.stats.queued++;
    if (delayNs === 0) {
      w.deadline = -1;
      this.#ready.push(w);
    } else {
      w.deadline = this.#now + delayNs;
      this.#delayed.add(w);
    }
    return true;
  }

  /** @internal */
  cancel(w: Work): boolean {
    if (!w.pending) return false;
    w.setPending(false);
    w.queue = null;
    this.#delayed.delete(w);
    const i = this.#ready.indexOf(w);
    if (i >= 0) this.#ready.splice(i, 1);
    this.stats.cancelled++;
    return true;
  }

  /** Runs one ready item; false when none is ready. Work runs in process context, never atomic. */
  step(): boolean {
    const w = this.#ready.shift();
    if (w === undefined) return false;
    this.atomic.mightSleep(`running work ${w.name}`);
    w.setPending(false);
    w.queue = null;
    this.stats.ran++;
    w.execute();
    return true;
  }

  /** Runs ready items (including any they queue) until none is ready; does not move the clock. */
  drain(): number {
    let n = 0;
    while (this.step()) n++;
    return n;
  }

  /** Moves the clock forward; delayed items whose deadline passed become ready (in deadline order). */
  advance(ns: number): void {
    if (!Number.isFinite(ns) || ns < 0) throw new KernelError(Errno.EINVAL, `cannot advance the clock by ${ns} ns`);
    this.#now += ns;
    const due = [...this.#delayed].filter((w) => w.deadline <= this.#now);
    due.sort((a, b) => a.deadline - b.deadline || a.seq - b.seq);
    for (const w of due) {
      this.#delayed.delete(w);
      w.deadline = -1;
      w.seq = this.#seq++;
      this.#ready.push(w);
    }
  }

  /** Drains, then jumps the clock to each next deadline, until nothing is pending or `maxItems` ran. */
  runUntilIdle(maxItems = 1_000_000): number {
    let n = 0;
    for (;;) {
      while (n < maxItems && this.step()) n++;
      if (n >= maxItems || this.#delayed.size === 0) return n;
      let next = Infinity;
      for (const w of this.#delayed) next = Math.min(next, w.deadline);
      this.advance(next - this.#now);
    }
  }

  /** @internal */
  flushWork(w: Work): void {
    this.atomic.mightSleep(`flush_work(${w.name})`);
    if (w.running) {
      throw new KernelError(Errno.EBUSY, `work ${w.name} flushing itself would deadlock`);
    }
    if (w.pending && w.deadline >= 0) this.advance(w.deadline - this.#now);
    while (w.pending) {
      if (!this.step()) break;
    }
  }

  /** @internal */
  flushQueue(wq: Workqueue): void {
    this.atomic.mightSleep(`flush_workqueue(${wq.name})`);
    const mine = () => this.#ready.some((w) => w.queue === wq) || [...this.#delayed].some((w) => w.queue === wq);
    while (mine()) {
      const delayed = [...this.#delayed].filter((w) => w.queue === wq);
      if (!this.#ready.some((w) => w.queue === wq) && delayed.length > 0) {
        this.advance(Math.min(...delayed.map((w) => w.deadline)) - this.#now);
      }
      if (!this.step()) break;
    }
  }
}
