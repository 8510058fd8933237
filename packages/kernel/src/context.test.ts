import { describe, expect, it } from "vitest";
import { Errno } from "./errno.js";
import { Kernel } from "./kernel.js";
import { Work } from "./scheduler.js";
import { TraceRecorder } from "./trace.js";
import { errnoOf } from "./testing.js";

const log = (k: Kernel, message: string) => k.trace.emit("kernel.log", "KERNEL", {}, { level: "info", message, suppressed: 0 });

describe("kernels in contexts of one system", () => {
  it("step host and guest work on one clock, in one deterministic order", () => {
    const run = () => {
      const host = new Kernel();
      const vm1 = new Kernel({ system: host, context: "vm1" });
      const order: string[] = [];
      const hq = host.scheduler.createWorkqueue("wq");
      const gq = vm1.scheduler.createWorkqueue("wq"); // the guest's twin of the host's queue
      gq.queueDelayedWork(new Work("g-late", () => order.push(`vm1@${vm1.scheduler.now()}`)), 300);
      hq.queueDelayedWork(new Work("h-late", () => order.push(`host@${host.scheduler.now()}`)), 200);
      gq.queueWork(new Work("g-now", () => order.push("vm1-now")));
      hq.queueWork(new Work("h-now", () => order.push("host-now")));
      host.scheduler.runUntilIdle(); // the host steps the guest's work too
      return { order, guestNow: vm1.scheduler.now(), pending: vm1.scheduler.pending() };
    };
    const a = run();
    expect(a).toEqual({ order: ["vm1-now", "host-now", "host@200", "vm1@300"], guestNow: 300, pending: 0 });
    expect(run()).toEqual(a);
  });

  it("stamps every event with its kernel's context and numbers them in one order", () => {
    const host = new Kernel();
    const vm1 = new Kernel({ system: host, context: "vm1" });
    const vm2 = new Kernel({ system: host, context: "vm2" });
    const all = new TraceRecorder(host.trace, { system: true });
    const guestOnly = new TraceRecorder(vm1.trace);
    const hostOnly = new TraceRecorder(host.trace);
    log(host, "a");
    log(vm1, "b");
    vm2.scheduler.advance(5);
    log(vm2, "c");
    expect(all.events.map((e) => [e.seq, e.context, e.time])).toEqual([[1, "host", 0], [2, "vm1", 0], [3, "vm2", 5]]);
    expect(guestOnly.events.map((e) => e.context)).toEqual(["vm1"]);
    expect(hostOnly.events.map((e) => e.context)).toEqual(["host"]);
  });

  it("says a context is traced only when someone listens to it or to the whole system", () => {
    const host = new Kernel();
    const vm1 = new Kernel({ system: host, context: "vm1" });
    const off = host.trace.subscribe(() => undefined);
    expect([host.trace.active, vm1.trace.active]).toEqual([true, false]);
    off();
    const offAll = vm1.trace.subscribeSystem(() => undefined);
    expect([host.trace.active, vm1.trace.active]).toEqual([true, true]);
    offAll();
    expect([host.trace.active, vm1.trace.active]).toEqual([false, false]);
  });

  it("keeps fault injection per kernel and refuses a context name twice", () => {
    const host = new Kernel();
    const vm1 = new Kernel({ system: host, context: "vm1" });
    vm1.faults.failPoint("alloc");
    expect(host.faults.shouldFail("alloc")).toBe(false);
    expect(vm1.faults.shouldFail("alloc")).toBe(true);
    expect(errnoOf(() => new Kernel({ system: host, context: "vm1" }))).toBe(Errno.EEXIST);
    expect(errnoOf(() => new Kernel({ system: host, context: "host" }))).toBe(Errno.EEXIST);
    expect(host.scheduler.sharesClockWith(vm1.scheduler)).toBe(true);
    expect(host.scheduler.sharesClockWith(new Kernel().scheduler)).toBe(false);
  });
});
