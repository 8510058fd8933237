import { describe, expect, it } from "vitest";
import {
  AtomicContext,
  AtomicNotifierChain,
  BlockingNotifierChain,
  Errno,
  KernelBug,
  NOTIFY_DONE,
  NOTIFY_OK,
  NOTIFY_STOP,
  type NotifierBlock,
  Scheduler,
  Work,
} from "./index.js";

const block = (priority: number, log: string[], name: string, ret = NOTIFY_OK): NotifierBlock<string, number> => ({
  priority,
  call: (ev) => {
    log.push(`${name}:${ev}`);
    return ret;
  },
});

describe("notifier chains", () => {
  it("call higher priorities first and equal priorities in registration order", () => {
    const log: string[] = [];
    const chain = new AtomicNotifierChain<string, number>("test", new AtomicContext());
    chain.register(block(1, log, "iommu"));
    chain.register(block(3, log, "cpu"));
    chain.register(block(2, log, "device-a"));
    chain.register(block(2, log, "device-b"));
    chain.call("FREE", 0);
    expect(log).toEqual(["cpu:FREE", "device-a:FREE", "device-b:FREE", "iommu:FREE"]);
  });

  it("stop at a handler returning NOTIFY_STOP", () => {
    const log: string[] = [];
    const chain = new BlockingNotifierChain<string, number>("test", new AtomicContext());
    chain.register(block(2, log, "first", NOTIFY_STOP));
    chain.register(block(1, log, "second"));
    expect(chain.call("x", 0)).toBe(NOTIFY_STOP);
    expect(log).toEqual(["first:x"]);
  });

  it("refuse double registration and unknown unregistration", () => {
    const chain = new BlockingNotifierChain<string, number>("test", new AtomicContext());
    const nb = block(0, [], "a");
    chain.register(nb);
    expect(() => chain.register(nb)).toThrow(expect.objectContaining({ errno: Errno.EEXIST }));
    chain.unregister(nb);
    expect(() => chain.unregister(nb)).toThrow(expect.objectContaining({ errno: Errno.ENOENT }));
    expect(chain.call("x", 0)).toBe(NOTIFY_DONE);
  });

  it("run atomic handlers in atomic context: they may queue work but not sleep", () => {
    const sched = new Scheduler();
    const wq = sched.createWorkqueue("teardown");
    const chain = new AtomicNotifierChain<string, Work>("ioasid", sched.atomic);
    let tornDown = false;
    const work = new Work("teardown", () => (tornDown = true));
    chain.register({ priority: 1, call: (_ev, w) => (wq.queueWork(w), NOTIFY_OK) });
    chain.call("FREE", work);
    expect(tornDown).toBe(false);
    sched.drain();
    expect(tornDown).toBe(true);

    const sleeper = { priority: 0, call: () => (wq.flush(), NOTIFY_OK) };
    chain.register(sleeper);
    expect(() => chain.call("FREE", new Work("again", () => undefined))).toThrow(KernelBug);
    expect(sched.atomic.depth).toBe(0);
  });

  it("let a handler unregister itself during the call", () => {
    const log: string[] = [];
    const chain = new BlockingNotifierChain<string, number>("test", new AtomicContext());
    const once: NotifierBlock<string, number> = {
      priority: 1,
      call: (ev) => {
        log.push(ev);
        chain.unregister(once);
        return NOTIFY_OK;
      },
    };
    chain.register(once);
    chain.register(block(0, log, "stays"));
    chain.call("a", 0);
    chain.call("b", 0);
    expect(log).toEqual(["a", "stays:a", "stays:b"]);
  });
});
