import { Errno, Scheduler } from "@vsva/kernel";
import { errnoOf } from "@vsva/kernel/testing";
import { describe, expect, it } from "vitest";
import { QueueRunner } from "./queue-runner.js";

interface Entry {
  readonly seq: number;
  readonly at: number;
}

/** A queue of `items` entries; `onRun` is called inside each run (a trap, say). */
function queue(items: number, wq: ConstructorParameters<typeof QueueRunner>[1] = null) {
  const state = { enabled: true, stopped: false, consumed: 0, runs: 0, onRun: (): void => undefined };
  const runner: QueueRunner<Entry> = new QueueRunner<Entry>(
    "test-queue",
    wq,
    { enabled: () => state.enabled, stopped: () => state.stopped },
    () => {
      state.runs++;
      state.onRun();
      let n = 0;
      while (state.consumed < items && runner.deferred === null) {
        state.consumed++;
        n++;
      }
      return n;
    },
  );
  return { runner, state };
}

describe("QueueRunner (the run/defer logic the VT-d invalidation queue and SMMUv3 command queue share)", () => {
  it("runs inside kick() without a work queue, and not at all while disabled or stopped", () => {
    const { runner, state } = queue(3);
    state.enabled = false;
    runner.kick();
    state.enabled = true;
    state.stopped = true;
    runner.kick();
    expect(state.runs).toBe(0);
    state.stopped = false;
    runner.kick();
    expect(state.consumed).toBe(3);
  });

  it("with a work queue, kick() only schedules: the window stays open until the scheduler runs", () => {
    const sched = new Scheduler();
    const { runner, state } = queue(2, sched.createWorkqueue("q"));
    runner.kick();
    expect(runner.pending).toBe(true);
    expect(state.consumed).toBe(0);
    sched.runUntilIdle();
    expect(runner.pending).toBe(false);
    expect(state.consumed).toBe(2);
  });

  it("a run asked for during a run is folded into it, not nested", () => {
    const { runner, state } = queue(1);
    let depth = 0;
    let maxDepth = 0;
    state.onRun = () => {
      depth++;
      maxDepth = Math.max(maxDepth, depth);
      if (state.runs === 1) expect(runner.process()).toBe(0);
      depth--;
    };
    expect(runner.process()).toBe(1);
    expect(state.runs).toBe(2);
    expect(maxDepth).toBe(1);
  });

  it("numbers fetches, holds one deferred entry, and completes only that one (ENOENT otherwise)", () => {
    const { runner } = queue(0);
    const a = runner.nextSeq();
    const b = runner.nextSeq();
    expect(b).toBe(a + 1);
    runner.defer({ seq: b, at: 64 });
    expect(errnoOf(() => runner.take(a, "descriptor"))).toBe(Errno.ENOENT);
    expect(runner.deferred?.seq).toBe(b);
    expect(runner.take(b, "descriptor").at).toBe(64);
    expect(runner.deferred).toBeNull();
    expect(errnoOf(() => runner.take(b, "descriptor"))).toBe(Errno.ENOENT);
    runner.defer({ seq: runner.nextSeq(), at: 0 });
    runner.drop();
    expect(runner.deferred).toBeNull();
  });
});
