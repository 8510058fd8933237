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

/** What every context of one system shares: the clock, the run queues, the counters. */
interface SchedulerState {
  readonly atomic: AtomicContext;
  readonly stats: SchedulerStats;
  now: number;
  seq: number;
  /** Ready items in run order. */
  ready: Work[];
  /** Delayed items, unordered (few at a time); scanned on advance. */
  readonly delayed: Set<Work>;
  /** Workqueues by context and name. */
  readonly queues: Map<string, Workqueue>;
  /** Contexts given out by {@link Scheduler.forContext}. */
  readonly contexts: Set<string>;
}

export class Scheduler {
  #s: SchedulerState = {
    atomic: new AtomicContext(),
    stats: { ran: 0, queued: 0, cancelled: 0 },
    now: 0,
    seq: 0,
    ready: [],
    delayed: new Set<Work>(),
    queues: new Map<string, Workqueue>(),
    contexts: new Set<string>(),
  };
  #context = "";

  /**
   * The same scheduler seen from another context (a guest kernel): one
   * clock and one run order for the whole system, so host and guests step
   * on the same timeline, deterministically. Only workqueue names are per
   * context, so a guest's driver can create the queue its host twin did.
   * EEXIST if the context was given out before.
   */
  forContext(context: string): Scheduler {
    if (this.#s.contexts.has(context)) throw new KernelError(Errno.EEXIST, `context ${context} already exists on this scheduler`);
    this.#s.contexts.add(context);
    const view = new Scheduler();
    view.#s = this.#s;
    view.#context = context;
    return view;
  }

  /** Whether `other` is this scheduler or a context view of it (one clock). */
  sharesClockWith(other: Scheduler): boolean {
    return other.#s === this.#s;
  }

  get atomic(): AtomicContext {
    return this.#s.atomic;
  }

  get stats(): SchedulerStats {
    return this.#s.stats;
  }

  now(): number {
    return this.#s.now;
  }

  createWorkqueue(name: string): Workqueue {
    const key = `${this.#context}\u0000${name}`;
    if (this.#s.queues.has(key)) throw new KernelError(Errno.EEXIST, `workqueue ${name} already exists`);
    const wq = new Workqueue(name, this);
    this.#s.queues.set(key, wq);
    return wq;
  }

  /** Items pending, ready or delayed. */
  pending(): number {
    return this.#s.ready.length + this.#s.delayed.size;
  }

  /** @internal */
  enqueue(wq: Workqueue, w: Work, delayNs: number): boolean {
    if (w.pending) return false;
    w.setPending(true);
    w.queue = wq;
    w.seq = this.#s.seq++;
    this.#s.stats.queued++;
    if (delayNs === 0) {
      w.deadline = -1;
      this.#s.ready.push(w);
    } else {
      w.deadline = this.#s.now + delayNs;
      this.#s.delayed.add(w);
    }
    return true;
  }

  /** @internal */
  cancel(w: Work): boolean {
    if (!w.pending) return false;
    w.setPending(false);
    w.queue = null;
    this.#s.delayed.delete(w);
    const i = this.#s.ready.indexOf(w);
    if (i >= 0) this.#s.ready.splice(i, 1);
    this.#s.stats.cancelled++;
    return true;
  }

  /** Runs one ready item; false when none is ready. Work runs in process context, never atomic. */
  step(): boolean {
    const w = this.#s.ready.shift();
    if (w === undefined) return false;
    this.#s.atomic.mightSleep(`running work ${w.name}`);
    w.setPending(false);
    w.queue = null;
    this.#s.stats.ran++;
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
    this.#s.now += ns;
    const due = [...this.#s.delayed].filter((w) => w.deadline <= this.#s.now);
    due.sort((a, b) => a.deadline - b.deadline || a.seq - b.seq);
    for (const w of due) {
      this.#s.delayed.delete(w);
      w.deadline = -1;
      w.seq = this.#s.seq++;
      this.#s.ready.push(w);
    }
  }

  /** Drains, then jumps the clock to each next deadline, until nothing is pending or `maxItems` ran. */
  runUntilIdle(maxItems = 1_000_000): number {
    let n = 0;
    for (;;) {
      while (n < maxItems && this.step()) n++;
      if (n >= maxItems || this.#s.delayed.size === 0) return n;
      let next = Infinity;
      for (const w of this.#s.delayed) next = Math.min(next, w.deadline);
      this.advance(next - this.#s.now);
    }
  }

  /** @internal */
  flushWork(w: Work): void {
    this.#s.atomic.mightSleep(`flush_work(${w.name})`);
    if (w.running) {
      throw new KernelError(Errno.EBUSY, `work ${w.name} flushing itself would deadlock`);
    }
    if (w.pending && w.deadline >= 0) this.advance(w.deadline - this.#s.now);
    while (w.pending) {
      if (!this.step()) break;
    }
  }

  /** @internal */
  flushQueue(wq: Workqueue): void {
    this.#s.atomic.mightSleep(`flush_workqueue(${wq.name})`);
    const mine = () => this.#s.ready.some((w) => w.queue === wq) || [...this.#s.delayed].some((w) => w.queue === wq);
    while (mine()) {
      const delayed = [...this.#s.delayed].filter((w) => w.queue === wq);
      if (!this.#s.ready.some((w) => w.queue === wq) && delayed.length > 0) {
        this.advance(Math.min(...delayed.map((w) => w.deadline)) - this.#s.now);
      }
      if (!this.step()) break;
    }
  }
}
