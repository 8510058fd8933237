import { describe, expect, it } from "vitest";
import {
  asDomainId,
  asGuestPasid,
  asHostPasid,
  asIoasid,
  asSpid,
  asVmId,
  AtomicContext,
  AtomicNotifierChain,
  BlockingNotifierChain,
  Errno,
  errnoName,
  FaultInjector,
  formatBdf,
  KernelBug,
  Kref,
  NOTIFY_BAD,
  NOTIFY_DONE,
  NOTIFY_OK,
  NOTIFY_STOP,
  notifyVetoed,
  RateLimitedLog,
  Scheduler,
  sourceId,
  TraceBus,
  TraceRecorder,
} from "./index.js";
import { errnoOf } from "./testing.js";

describe("branded IDs", () => {
  it("accept every u32 and refuse negatives, fractions and values past 32 bits", () => {
    for (const as of [asIoasid, asSpid, asHostPasid, asGuestPasid, asDomainId, asVmId]) {
      expect(as(0)).toBe(0);
      expect(as(0xffff_ffff)).toBe(0xffff_ffff);
      expect(as(77)).toBe(77);
      for (const bad of [-1, 0x1_0000_0000, 1.5, Number.NaN]) expect(() => as(bad)).toThrow(RangeError);
    }
  });

  it("pack and format a PCIe BDF, refusing fields out of range", () => {
    expect(sourceId(0, 0, 0)).toBe(0);
    expect(sourceId(0xab, 0x1f, 7)).toBe(0xabff);
    expect(sourceId(1, 2, 3)).toBe(0x113);
    expect(formatBdf(sourceId(0, 2, 0))).toBe("00:02.0");
    expect(formatBdf(sourceId(0xab, 0x1f, 7))).toBe("ab:1f.7");
    for (const [b, d, f] of [
      [-1, 0, 0],
      [256, 0, 0],
      [0, -1, 0],
      [0, 32, 0],
      [0, 0, -1],
      [0, 0, 8],
    ] as const) {
      expect(() => sourceId(b, d, f)).toThrow(RangeError);
    }
    expect(sourceId(255, 31, 7)).toBe(0xffff);
  });

  it("name errnos, and fall back to E<n> for unknown ones", () => {
    expect(errnoName(Errno.EINVAL)).toBe("EINVAL");
    expect(errnoName(Errno.ENOTSUPP)).toBe("ENOTSUPP");
    expect(errnoName(9999)).toBe("E9999");
  });
});

describe("Kref edges", () => {
  it("refuses a negative or fractional initial count, accepts 0", () => {
    expect(() => new Kref(-1)).toThrow(KernelBug);
    expect(() => new Kref(0.5)).toThrow(KernelBug);
    expect(new Kref(0).read()).toBe(0);
    expect(new Kref().read()).toBe(1);
  });

  it("getUnlessZero takes a reference on a live object", () => {
    const k = new Kref(1);
    expect(k.getUnlessZero()).toBe(true);
    expect(k.read()).toBe(2);
    expect(k.put()).toBe(false);
    expect(k.put()).toBe(true);
    expect(k.getUnlessZero()).toBe(false);
    expect(k.read()).toBe(0);
  });
});

describe("AtomicContext", () => {
  it("nests, says why in the might-sleep report, and refuses an unbalanced exit", () => {
    const a = new AtomicContext();
    expect(a.inAtomic).toBe(false);
    a.mightSleep("fine");
    a.enter("spin_lock(a)");
    a.enter("rcu");
    expect(a.depth).toBe(2);
    expect(a.inAtomic).toBe(true);
    expect(() => a.mightSleep("kmalloc(GFP_KERNEL)")).toThrow(
      "sleeping function called from invalid context: kmalloc(GFP_KERNEL) inside spin_lock(a) > rcu",
    );
    a.exit();
    expect(() => a.mightSleep("x")).toThrow("x inside spin_lock(a)");
    a.exit();
    expect(a.inAtomic).toBe(false);
    expect(() => a.exit()).toThrow(KernelBug);
    expect(a.depth).toBe(0);
  });
});

describe("notifier chains", () => {
  const block = (priority: number, log: string[], name: string, ret = NOTIFY_OK) => ({
    priority,
    call: (e: string) => {
      log.push(`${name}:${e}`);
      return ret;
    },
  });

  it("call in descending priority, equal priorities in registration order, and stop at NOTIFY_STOP_MASK", () => {
    const atomic = new AtomicContext();
    const chain = new AtomicNotifierChain<string, null>("c", atomic);
    const log: string[] = [];
    const low = block(-5, log, "low");
    chain.register(block(0, log, "zero1"));
    chain.register(low);
    chain.register(block(10, log, "ten"));
    chain.register(block(0, log, "zero2"));
    expect(chain.length).toBe(4);
    expect(chain.has(low)).toBe(true);
    expect(chain.blocks().map((b) => b.priority)).toEqual([10, 0, 0, -5]);
    expect(chain.call("ev", null)).toBe(NOTIFY_OK);
    expect(log).toEqual(["ten:ev", "zero1:ev", "zero2:ev", "low:ev"]);
    chain.unregister(low);
    expect(chain.has(low)).toBe(false);
    expect(chain.length).toBe(3);
    expect(errnoOf(() => chain.unregister(low))).toBe(Errno.ENOENT);
    expect(errnoOf(() => chain.register({ priority: 0.5, call: () => NOTIFY_OK }))).toBe(Errno.EINVAL);
    expect(chain.length).toBe(3);
    log.length = 0;
    chain.register(block(5, log, "stop", NOTIFY_STOP));
    expect(chain.call("x", null)).toBe(NOTIFY_STOP);
    expect(log).toEqual(["ten:x", "stop:x"]);
  });

  it("an empty chain returns NOTIFY_DONE; a blocking chain may not be called in atomic context", () => {
    const atomic = new AtomicContext();
    const chain = new BlockingNotifierChain<string, null>("b", atomic);
    expect(chain.call("x", null)).toBe(NOTIFY_DONE);
    expect(() => atomic.run("lock", () => chain.call("x", null))).toThrow(KernelBug);
  });

  it("notifyVetoed is true for NOTIFY_BAD only", () => {
    expect(notifyVetoed(NOTIFY_BAD)).toBe(true);
    expect(notifyVetoed(NOTIFY_STOP)).toBe(false);
    expect(notifyVetoed(NOTIFY_OK)).toBe(false);
    expect(notifyVetoed(NOTIFY_DONE)).toBe(false);
  });
});

describe("FaultInjector edges", () => {
  it("counts every hit, arms and disarms, and validates its specs", () => {
    const f = new FaultInjector();
    expect(f.armed).toBe(false);
    f.inject("a");
    f.inject("b");
    f.inject("a");
    expect(f.totalHits).toBe(3);
    expect([...f.counts]).toEqual([
      ["a", 2],
      ["b", 1],
    ]);
    for (const n of [0, -1, 1.5]) expect(errnoOf(() => f.failNth(n))).toBe(Errno.EINVAL);
    expect(errnoOf(() => f.failPoint("a", { nth: 0 }))).toBe(Errno.EINVAL);
    expect(errnoOf(() => f.failPoint("a", { nth: 1.5 }))).toBe(Errno.EINVAL);
    expect(errnoOf(() => f.failPoint("a", { times: 0 }))).toBe(Errno.EINVAL);
    expect(errnoOf(() => f.failPoint("a", { times: Number.NaN }))).toBe(Errno.EINVAL);
    expect(f.armed).toBe(false);
    f.failNth(1);
    expect(f.armed).toBe(true);
    f.disarm();
    expect(f.armed).toBe(false);
    f.failPoint("a");
    expect(f.armed).toBe(true);
    f.disarm();
    expect(f.armed).toBe(false);
    expect(errnoOf(() => f.inject("a"))).toBe(0);
    f.resetCounters();
    expect(f.totalHits).toBe(0);
    expect(f.counts.size).toBe(0);
  });

  it("fails a point from its nth hit for `times` hits, then disarms itself; failNth fails one hit once", () => {
    const f = new FaultInjector();
    f.failPoint("p", { nth: 2, times: 2, errno: Errno.EIO });
    expect(errnoOf(() => f.inject("p"))).toBe(0);
    expect(errnoOf(() => f.inject("q"))).toBe(0);
    expect(errnoOf(() => f.inject("p"))).toBe(Errno.EIO);
    expect(f.armed).toBe(true);
    expect(errnoOf(() => f.inject("p", Errno.EBUSY))).toBe(Errno.EIO);
    expect(f.armed).toBe(false);
    expect(errnoOf(() => f.inject("p"))).toBe(0);
    f.failNth(2);
    expect(errnoOf(() => f.inject("x"))).toBe(0);
    expect(errnoOf(() => f.inject("y", Errno.EBUSY))).toBe(Errno.EBUSY);
    expect(f.armed).toBe(false);
    expect(errnoOf(() => f.inject("z"))).toBe(0);
    expect(f.injected).toEqual(["p", "p", "y"]);
    f.resetCounters();
    expect(f.injected).toEqual([]);
  });

  it("traces each injection with its point, errno and hit number", () => {
    const s = new Scheduler();
    const bus = new TraceBus(s);
    const rec = new TraceRecorder(bus);
    const f = new FaultInjector(bus);
    f.inject("p");
    f.failPoint("p", { nth: 2 });
    f.inject("p");
    expect(errnoOf(() => f.inject("p"))).toBe(Errno.ENOMEM);
    expect(rec.ofKind("kernel.fault-injected").map((e) => e.payload)).toEqual([{ point: "p", errno: Errno.ENOMEM, hit: 3 }]);
  });
});

describe("RateLimitedLog edges", () => {
  it("keeps only emitted lines, opens a new window after the interval, and reports 0 suppressed for an unknown key", () => {
    const s = new Scheduler();
    const log = new RateLimitedLog(s, undefined, { intervalNs: 100, burst: 1 });
    expect(log.lines).toEqual([]);
    expect(log.suppressed("never")).toBe(0);
    s.advance(1000);
    expect(log.warn("k", "one")).toBe(true);
    expect(log.warn("k", "two")).toBe(false);
    expect(log.suppressed("k")).toBe(1);
    s.advance(99);
    expect(log.warn("k", "three")).toBe(false);
    s.advance(1);
    expect(log.warn("k", "four", "VFIO")).toBe(true);
    expect(log.suppressed("k")).toBe(0);
    expect(log.lines).toEqual([
      { time: 1000, actor: "KERNEL", key: "k", message: "one", suppressedBefore: 0 },
      { time: 1100, actor: "VFIO", key: "k", message: "four", suppressedBefore: 2 },
    ]);
  });
});

describe("TraceBus and TraceRecorder edges", () => {
  it("numbers events nobody hears, filters by kind and actor, clears, and unsubscribes only the one", () => {
    const s = new Scheduler();
    const bus = new TraceBus(s);
    expect(bus.active).toBe(false);
    bus.emit("kernel.log", "KERNEL", {}, { level: "info", message: "m", suppressed: 0 });
    bus.skip();
    expect(bus.lastSeq).toBe(2);
    const a = new TraceRecorder(bus);
    const b = new TraceRecorder(bus);
    expect(bus.active).toBe(true);
    bus.emit("kernel.log", "VFIO", {}, { level: "info", message: "m", suppressed: 0 });
    bus.emit("kernel.fault-injected", "KERNEL", {}, { point: "p", errno: 12, hit: 1 });
    expect(a.ofKind("kernel.log").map((e) => e.seq)).toEqual([3]);
    expect(a.ofKind("kernel.fault-injected").map((e) => e.seq)).toEqual([4]);
    expect(a.byActor("KERNEL").map((e) => e.kind)).toEqual(["kernel.fault-injected"]);
    expect(a.byActor("VFIO").map((e) => e.kind)).toEqual(["kernel.log"]);
    a.detach();
    bus.emit("kernel.log", "KERNEL", {}, { level: "info", message: "m", suppressed: 0 });
    expect(a.events).toHaveLength(2);
    expect(b.events).toHaveLength(3);
    b.clear();
    expect(b.events).toEqual([]);
    b.detach();
    expect(bus.active).toBe(false);
  });
});
