import { describe, expect, it } from "vitest";
import { Errno, KernelBug, Scheduler, Work } from "./index.js";
import { errnoOf } from "./testing.js";

function recorder() {
  const log: string[] = [];
  const work = (name: string, fn: () => void = () => undefined) =>
    new Work(name, () => {
      log.push(name);
      fn();
    });
  return { log, work };
}

describe("Scheduler ordering", () => {
  it("makes delayed items ready in deadline order, ties in queueing order", () => {
    const s = new Scheduler();
    const wq = s.createWorkqueue("wq");
    const { log, work } = recorder();
    wq.queueDelayedWork(work("late"), 200);
    wq.queueDelayedWork(work("tie1"), 100);
    wq.queueDelayedWork(work("tie2"), 100);
    wq.queueDelayedWork(work("early"), 50);
    s.advance(99);
    expect(s.drain()).toBe(1);
    expect(log).toEqual(["early"]);
    s.advance(101);
    expect(s.drain()).toBe(3);
    expect(log).toEqual(["early", "tie1", "tie2", "late"]);
    expect(s.now()).toBe(200);
  });

  it("refuses to move the clock backwards or by a non-finite amount, and accepts 0", () => {
    const s = new Scheduler();
    for (const ns of [-1, Number.NaN, Infinity]) expect(errnoOf(() => s.advance(ns))).toBe(Errno.EINVAL);
    s.advance(0);
    expect(s.now()).toBe(0);
    const wq = s.createWorkqueue("wq");
    expect(errnoOf(() => wq.queueDelayedWork(new Work("w", () => undefined), -5))).toBe(Errno.EINVAL);
    expect(errnoOf(() => s.createWorkqueue("wq"))).toBe(Errno.EEXIST);
  });

  it("counts pending, queued, ran and cancelled items", () => {
    const s = new Scheduler();
    const wq = s.createWorkqueue("wq");
    const { work } = recorder();
    const a = work("a");
    const b = work("b");
    const c = work("c");
    expect(wq.queueWork(a)).toBe(true);
    expect(wq.queueWork(a)).toBe(false);
    wq.queueDelayedWork(b, 10);
    wq.queueWork(c);
    expect(s.pending()).toBe(3);
    expect(wq.cancelWork(c)).toBe(true);
    expect(wq.cancelWork(c)).toBe(false);
    expect(s.pending()).toBe(2);
    expect(s.runUntilIdle()).toBe(2);
    expect(s.pending()).toBe(0);
    expect(s.stats).toEqual({ ran: 2, queued: 3, cancelled: 1 });
  });

  it("cancelling a delayed item leaves the ready ones alone", () => {
    const s = new Scheduler();
    const wq = s.createWorkqueue("wq");
    const { log, work } = recorder();
    const delayed = work("delayed");
    wq.queueWork(work("r1"));
    wq.queueWork(work("r2"));
    wq.queueDelayedWork(delayed, 10);
    expect(wq.cancelWork(delayed)).toBe(true);
    expect(delayed.pending).toBe(false);
    s.runUntilIdle();
    expect(log).toEqual(["r1", "r2"]);
    expect(s.now()).toBe(0);
  });

  it("runUntilIdle runs at most maxItems ready items", () => {
    const s = new Scheduler();
    const wq = s.createWorkqueue("wq");
    const { log, work } = recorder();
    for (const n of ["a", "b", "c"]) wq.queueWork(work(n));
    expect(s.runUntilIdle(2)).toBe(2);
    expect(log).toEqual(["a", "b"]);
    expect(s.pending()).toBe(1);
  });

  it("runUntilIdle stops after maxItems without moving the clock further", () => {
    const s = new Scheduler();
    const wq = s.createWorkqueue("wq");
    const { log, work } = recorder();
    wq.queueWork(work("a"));
    wq.queueDelayedWork(work("b"), 100);
    expect(s.runUntilIdle(1)).toBe(1);
    expect(s.now()).toBe(0);
    expect(s.pending()).toBe(1);
    expect(s.runUntilIdle()).toBe(1);
    expect(log).toEqual(["a", "b"]);
    expect(s.now()).toBe(100);
  });

  it("shows a work item as running only while its function runs, also when it throws", () => {
    const s = new Scheduler();
    const wq = s.createWorkqueue("wq");
    const seen: boolean[] = [];
    const w: Work = new Work("w", () => {
      seen.push(w.running, w.pending);
      throw new Error("boom");
    });
    wq.queueWork(w);
    expect(() => s.step()).toThrow("boom");
    expect(seen).toEqual([true, false]);
    expect(w.running).toBe(false);
  });
});

describe("Scheduler flush", () => {
  it("flushWork runs items ahead of a ready item until it has run, even after the clock moved", () => {
    const s = new Scheduler();
    const wq = s.createWorkqueue("wq");
    const { log, work } = recorder();
    s.advance(1000);
    const b = work("b");
    wq.queueWork(work("a"));
    wq.queueWork(b);
    wq.queueWork(work("c"));
    wq.flushWork(b);
    expect(log).toEqual(["a", "b"]);
    expect(b.pending).toBe(false);
    expect(s.now()).toBe(1000);
    // A flush of an idle item does nothing.
    wq.flushWork(b);
    expect(log).toEqual(["a", "b"]);
  });

  it("flushWork of a delayed item jumps the clock to its deadline; of one already ready, not at all", () => {
    const s = new Scheduler();
    const wq = s.createWorkqueue("wq");
    const { log, work } = recorder();
    s.advance(50);
    const d = work("d");
    wq.queueDelayedWork(d, 100);
    wq.queueDelayedWork(work("later"), 500);
    wq.flushWork(d);
    expect(log).toEqual(["d"]);
    expect(s.now()).toBe(150);
    // Delayed, then made ready by the clock: flushing it must not move the clock back.
    const e = work("e");
    wq.queueDelayedWork(e, 10);
    s.advance(20);
    wq.flushWork(e);
    expect(log).toEqual(["d", "e"]);
    expect(s.now()).toBe(170);
  });

  it("a work item flushing itself is refused (it would deadlock), and flushing in atomic context is a bug", () => {
    const s = new Scheduler();
    const wq = s.createWorkqueue("wq");
    let errno = 0;
    const w: Work = new Work("self", () => {
      errno = errnoOf(() => wq.flushWork(w));
    });
    wq.queueWork(w);
    s.drain();
    expect(errno).toBe(Errno.EBUSY);
    expect(() => s.atomic.run("lock", () => wq.flushWork(w))).toThrow(KernelBug);
    expect(() => s.atomic.run("lock", () => wq.flush())).toThrow(KernelBug);
  });

  it("flush runs this queue's ready and delayed items, moving the clock to the delayed one, and leaves an idle queue's neighbours alone", () => {
    const s = new Scheduler();
    const mine = s.createWorkqueue("mine");
    const other = s.createWorkqueue("other");
    const { log, work } = recorder();
    other.queueWork(work("o1"));
    mine.flush();
    expect(log).toEqual([]);
    expect(s.pending()).toBe(1);
    mine.queueDelayedWork(work("m-late"), 300);
    mine.queueDelayedWork(work("m-soon"), 100);
    other.queueDelayedWork(work("o-late"), 1000);
    mine.flush();
    // One global ready list: o1 was ahead of mine, so it runs on the way.
    expect(log).toEqual(["o1", "m-soon", "m-late"]);
    expect(s.now()).toBe(300);
    expect(s.pending()).toBe(1);
    other.flush();
    expect(log.at(-1)).toBe("o-late");
    expect(s.now()).toBe(1000);
  });

  it("flush runs this queue's ready items before moving the clock, then each delayed one at its own deadline", () => {
    const s = new Scheduler();
    const mine = s.createWorkqueue("mine");
    const at: [string, number][] = [];
    const timed = (name: string) => new Work(name, () => at.push([name, s.now()]));
    mine.queueDelayedWork(timed("late"), 300);
    mine.queueDelayedWork(timed("soon"), 100);
    mine.queueWork(timed("now"));
    mine.flush();
    expect(at).toEqual([
      ["now", 0],
      ["soon", 100],
      ["late", 300],
    ]);
  });

  it("flush moves the clock to this queue's next deadline, not to another queue's earlier one", () => {
    const s = new Scheduler();
    const mine = s.createWorkqueue("mine");
    const other = s.createWorkqueue("other");
    const at: [string, number][] = [];
    const timed = (name: string) => new Work(name, () => at.push([name, s.now()]));
    other.queueDelayedWork(timed("other"), 100);
    mine.queueDelayedWork(timed("mine"), 300);
    mine.flush();
    // One jump to 300: the other queue's item became due on the way and ran first, at 300.
    expect(at).toEqual([
      ["other", 300],
      ["mine", 300],
    ]);
  });

  it("flush does not run another queue's ready item just because that queue has delayed work", () => {
    const s = new Scheduler();
    const mine = s.createWorkqueue("mine");
    const other = s.createWorkqueue("other");
    const { log, work } = recorder();
    mine.queueWork(work("m1"));
    other.queueWork(work("o1"));
    other.queueDelayedWork(work("o-late"), 100);
    mine.flush();
    expect(log).toEqual(["m1"]);
    expect(s.pending()).toBe(2);
    expect(s.now()).toBe(0);
  });

  it("flush stops when this queue's items are done, leaving later items of other queues", () => {
    const s = new Scheduler();
    const mine = s.createWorkqueue("mine");
    const other = s.createWorkqueue("other");
    const { log, work } = recorder();
    mine.queueWork(work("m1"));
    other.queueWork(work("o1"));
    mine.queueWork(work("m2"));
    other.queueWork(work("o2"));
    mine.flush();
    expect(log).toEqual(["m1", "o1", "m2"]);
    expect(s.pending()).toBe(1);
  });
});
