import { describe, expect, it } from "vitest";
import { Errno, FaultInjector, Kernel, KernelBug, KernelError, Kref, RateLimitedLog, Scheduler, TraceBus, TraceRecorder, asVmId } from "./index.js";

describe("Kref", () => {
  it("counts references and reports the last put", () => {
    const k = new Kref(1, "ioasid 5");
    k.get();
    expect(k.read()).toBe(2);
    expect(k.put()).toBe(false);
    expect(k.put()).toBe(true);
  });

  it("refuses to go below zero or to be revived at zero", () => {
    const k = new Kref(1);
    k.put();
    expect(() => k.put()).toThrow(KernelBug);
    expect(() => k.get()).toThrow(KernelBug);
    expect(k.getUnlessZero()).toBe(false);
    expect(k.read()).toBe(0);
  });
});

describe("TraceBus", () => {
  it("stamps events with a sequence number and virtual time, and delivers them typed", () => {
    const sched = new Scheduler();
    const bus = new TraceBus(sched);
    const rec = new TraceRecorder(bus);
    sched.advance(42);
    bus.emit("kernel.log", "VFIO", { vm: asVmId(1) }, { level: "warn", message: "bad argsz", suppressed: 0 });
    const [e] = rec.ofKind("kernel.log");
    expect(e).toMatchObject({ seq: 1, time: 42, actor: "VFIO", ids: { vm: 1 }, payload: { message: "bad argsz" } });
    rec.detach();
    bus.emit("kernel.log", "VFIO", {}, { level: "warn", message: "unseen", suppressed: 0 });
    expect(rec.events).toHaveLength(1);
    expect(bus.lastSeq).toBe(2);
  });
});

describe("FaultInjector", () => {
  const path = (fi: FaultInjector) => {
    fi.inject("alloc.table");
    fi.inject("alloc.entry");
    fi.inject("alloc.table");
  };

  it("fails the n-th hit after arming, whatever its point (fail-nth)", () => {
    const fi = new FaultInjector();
    fi.failNth(2);
    expect(() => path(fi)).toThrow(expect.objectContaining({ errno: Errno.ENOMEM, message: "-ENOMEM: fault injected at alloc.entry" }));
    expect(fi.injected).toEqual(["alloc.entry"]);
    // Armed once: the next run passes.
    expect(() => path(fi)).not.toThrow();
  });

  it("lets a sweep find every point on a path", () => {
    const fi = new FaultInjector();
    const failures: string[] = [];
    for (let n = 1; ; n++) {
      fi.failNth(n);
      try {
        path(fi);
        fi.disarm();
        break;
      } catch (e) {
        if (!(e instanceof KernelError)) throw e;
        failures.push(fi.injected.at(-1) ?? "?");
      }
    }
    expect(failures).toEqual(["alloc.table", "alloc.entry", "alloc.table"]);
  });

  it("fails a named point with a chosen errno, for a number of hits", () => {
    const fi = new FaultInjector();
    fi.failPoint("pasid.alloc", { nth: 2, times: 2, errno: Errno.ENOSPC });
    expect(fi.shouldFail("pasid.alloc")).toBe(false);
    expect(() => fi.inject("pasid.alloc")).toThrow(expect.objectContaining({ errno: Errno.ENOSPC }));
    expect(() => fi.inject("pasid.alloc")).toThrow(KernelError);
    expect(() => fi.inject("pasid.alloc")).not.toThrow();
    expect(fi.counts.get("pasid.alloc")).toBe(4);
  });
});

describe("RateLimitedLog", () => {
  it("lets a burst through per interval and counts what it suppressed", () => {
    const sched = new Scheduler();
    const log = new RateLimitedLog(sched, undefined, { intervalNs: 1000, burst: 2 });
    expect(log.warn("bind", "bad pasid")).toBe(true);
    expect(log.warn("bind", "bad pasid")).toBe(true);
    expect(log.warn("bind", "bad pasid")).toBe(false);
    expect(log.warn("other", "independent key")).toBe(true);
    expect(log.suppressed("bind")).toBe(1);
    sched.advance(1000);
    expect(log.warn("bind", "bad pasid")).toBe(true);
    expect(log.lines.at(-1)?.suppressedBefore).toBe(1);
  });

  it("keeps the newest `capacity` lines in order and counts the ones it dropped", () => {
    const sched = new Scheduler();
    const log = new RateLimitedLog(sched, undefined, { burst: 1, capacity: 3 });
    for (let i = 0; i < 8; i++) expect(log.warn(`k${i}`, `m${i}`)).toBe(true);
    expect(log.lines.map((l) => l.message)).toEqual(["m5", "m6", "m7"]);
    expect(log.dropped).toBe(5);
    log.warn("k8", "m8");
    expect(log.lines.map((l) => l.message)).toEqual(["m6", "m7", "m8"]);
    expect(log.dropped).toBe(6);
  });

  it("stays bounded over a long run (a guest hammering one failing call)", () => {
    const sched = new Scheduler();
    const log = new RateLimitedLog(sched, undefined, { intervalNs: 10, burst: 1 });
    for (let i = 0; i < 50_000; i++) {
      log.warn("bind", `bad pasid ${i}`);
      sched.advance(10);
    }
    expect(log.lines.length).toBe(1024);
    expect(log.dropped).toBe(50_000 - 1024);
    expect(log.lines.at(-1)?.message).toBe("bad pasid 49999");
  });

  it("forgets the windows of keys whose interval is over and that owe nothing, but keeps a suppressed count until it is reported", () => {
    const sched = new Scheduler();
    const log = new RateLimitedLog(sched, undefined, { intervalNs: 10, burst: 1 });
    // One key over budget: its suppressed count must survive every sweep.
    log.warn("hot", "first");
    log.warn("hot", "suppressed");
    // Devices come and go, each with its own key (mdev names), one message each.
    for (let i = 0; i < 10_000; i++) {
      log.warn(`mdev${i}.cmd`, `mdev${i}: refused`);
      sched.advance(10);
    }
    expect(log.trackedKeys).toBeLessThan(200);
    expect(log.suppressed("hot")).toBe(1);
    expect(log.warn("hot", "again")).toBe(true);
    expect(log.lines.at(-1)?.suppressedBefore).toBe(1);
    // A key still inside its interval keeps its budget: a swept map must not reset it.
    log.warn("live", "one");
    for (let i = 0; i < 200; i++) log.warn(`burst${i}`, "x");
    expect(log.warn("live", "two")).toBe(false);
  });

  it("a capacity that is not a positive integer is EINVAL", () => {
    expect(() => new RateLimitedLog(new Scheduler(), undefined, { capacity: 0 })).toThrow(KernelError);
  });
});

describe("Kernel", () => {
  it("bundles per-host instances; two kernels share nothing", () => {
    const a = new Kernel();
    const b = new Kernel();
    a.scheduler.advance(5);
    a.faults.failNth(1);
    expect(b.scheduler.now()).toBe(0);
    expect(() => b.faults.inject("x")).not.toThrow();
    const rec = new TraceRecorder(a.trace);
    expect(() => a.faults.inject("x")).toThrow(KernelError);
    expect(rec.ofKind("kernel.fault-injected")[0]?.payload.point).toBe("x");
  });
});
