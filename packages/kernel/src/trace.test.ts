import { describe, expect, it } from "vitest";
import { TraceBus, TraceRecorder } from "./trace.js";

describe("TraceBus.active and skip", () => {
  it("is active only while someone listens", () => {
    const bus = new TraceBus({ now: () => 0 });
    expect(bus.active).toBe(false);
    const rec = new TraceRecorder(bus);
    expect(bus.active).toBe(true);
    rec.detach();
    expect(bus.active).toBe(false);
  });

  it("numbers events the same whether a silent hot path skips or emits", () => {
    const a = new TraceBus({ now: () => 0 });
    const b = new TraceBus({ now: () => 0 });
    a.emit("kernel.log", "KERNEL", {}, { level: "info", message: "x", suppressed: 0 });
    b.skip();
    expect(b.lastSeq).toBe(a.lastSeq);
    const rec = new TraceRecorder(b);
    b.emit("kernel.log", "KERNEL", {}, { level: "info", message: "y", suppressed: 0 });
    expect(rec.events[0]?.seq).toBe(2);
  });
});
