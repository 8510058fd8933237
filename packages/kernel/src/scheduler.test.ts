import { describe, expect, it } from "vitest";
import { Errno, KernelBug, Scheduler, Work } from "./index.js";

describe("Scheduler", () => {
  it("runs queued work only when stepped, in queueing order", () => {
    const s = new Scheduler();
    const wq = s.createWorkqueue("events");
    const log: string[] = [];
    const a = new Work("a", () => log.push("a"));
    const b = new Work("b", () => log.push("b"));
    expect(wq.queueWork(a)).toBe(true);
    expect(wq.queueWork(b)).toBe(true);
    expect(log).toEqual([]);
    expect(s.step()).toBe(true);
    expect(log).toEqual(["a"]);
    expect(s.drain()).toBe(1);
    expect(log).toEqual(["a", "b"]);
    expect(s.step()).toBe(false);
  });

  it("refuses to queue work that is already pending, as queue_work does", () => {
    const s = new Scheduler();
    const wq = s.createWorkqueue("events");
    let runs = 0;
    const w = new Work("w", () => runs++);
    expect(wq.queueWork(w)).toBe(true);
    expect(wq.queueWork(w)).toBe(false);
    s.drain();
    expect(runs).toBe(1);
    expect(w.pending).toBe(false);
  });

  it("makes delayed work ready only when the virtual clock passes its deadline", () => {
    const s = new Scheduler();
    const wq = s.createWorkqueue("events");
    const log: string[] = [];
    wq.queueDelayedWork(new Work("late", () => log.push("late")), 200);
    wq.queueDelayedWork(new Work("early", () => log.push("early")), 100);
    expect(s.drain()).toBe(0);
    s.advance(150);
    s.drain();
    expect(log).toEqual(["early"]);
    expect(s.runUntilIdle()).toBe(1);
    expect(log).toEqual(["early", "late"]);
    expect(s.now()).toBe(200);
  });

  it("cancels and flushes work", () => {
    const s = new Scheduler();
    const wq = s.createWorkqueue("events");
    let ran = false;
    const w = new Work("w", () => (ran = true));
    wq.queueWork(w);
    expect(wq.cancelWork(w)).toBe(true);
    expect(wq.cancelWork(w)).toBe(false);
    s.drain();
    expect(ran).toBe(false);
    wq.queueDelayedWork(w, 1000);
    wq.flushWork(w);
    expect(ran).toBe(true);
  });

  it("treats flushing from atomic context as a sleeping-in-atomic bug", () => {
    const s = new Scheduler();
    const wq = s.createWorkqueue("events");
    const w = new Work("w", () => undefined);
    wq.queueWork(w);
    expect(() => s.atomic.run("spinlock", () => wq.flushWork(w))).toThrow(KernelBug);
  });

  it("rejects a negative delay and a duplicate queue name with kernel errnos", () => {
    const s = new Scheduler();
    const wq = s.createWorkqueue("events");
    expect(() => wq.queueDelayedWork(new Work("w", () => undefined), -1)).toThrow(expect.objectContaining({ errno: Errno.EINVAL }));
    expect(() => s.createWorkqueue("events")).toThrow(expect.objectContaining({ errno: Errno.EEXIST }));
  });

  it("is deterministic: the same program gives the same order", () => {
    const run = () => {
      const s = new Scheduler();
      const wq = s.createWorkqueue("q");
      const out: number[] = [];
      for (let i = 0; i < 20; i++) wq.queueDelayedWork(new Work(`w${i}`, () => out.push(i)), (i * 37) % 5);
      s.runUntilIdle();
      return out;
    };
    expect(run()).toEqual(run());
  });
});
