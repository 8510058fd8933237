import { describe, expect, it } from "vitest";
import { Kernel, Scheduler, TraceBus, TraceRecorder } from "@vsva/kernel";
import { toChromeTrace } from "./chrome-trace.js";

describe("toChromeTrace", () => {
  it("gives each actor a named track and turns refcounts into a counter track", () => {
    const sched = new Scheduler();
    const bus = new TraceBus(sched);
    const rec = new TraceRecorder(bus);
    bus.emit("kernel.log", "VFIO", {}, { level: "warn", message: "a", suppressed: 0 });
    bus.emit("kernel.fault-injected", "KERNEL", { ioasid: 5 }, { point: "p", errno: 12, hit: 1 }, 3);
    const trace = toChromeTrace(rec.events, "t");
    const names = trace.traceEvents.filter((e) => e.name === "thread_name").map((e) => e.args.name);
    expect(names).toEqual(["VFIO", "KERNEL"]);
    const counter = trace.traceEvents.find((e) => e.ph === "C");
    expect(counter).toMatchObject({ name: "refcount ioasid 5", ts: 2, args: { refs: 3 } });
    // Valid JSON round trip, as Perfetto reads it.
    const back = JSON.parse(JSON.stringify(trace)) as typeof trace;
    expect(back.traceEvents).toHaveLength(trace.traceEvents.length);
  });

  it("puts each kernel context in a process of its own, so guest and host lanes sit side by side", () => {
    const host = new Kernel();
    const vm1 = new Kernel({ system: host, context: "vm1" });
    const rec = new TraceRecorder(host.trace, { system: true });
    host.log.warn("a", "host", "IOMMU");
    vm1.log.warn("b", "guest", "IOMMU");
    const trace = toChromeTrace(rec.events, "t");
    const procs = trace.traceEvents.filter((e) => e.name === "process_name").map((e) => [e.pid, e.args.name]);
    expect(procs).toEqual([[1, "vsva: t [host]"], [2, "vsva: t [vm1]"]]);
    const instants = trace.traceEvents.filter((e) => e.ph === "i").map((e) => [e.pid, e.tid]);
    expect(instants[0]![0]).not.toBe(instants[1]![0]);
    expect(instants[0]![1]).not.toBe(instants[1]![1]); // two IOMMU lanes, one per context
  });
});
