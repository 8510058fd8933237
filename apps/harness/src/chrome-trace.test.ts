import { describe, expect, it } from "vitest";
import { Scheduler, TraceBus, TraceRecorder } from "@vsva/kernel";
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
});
