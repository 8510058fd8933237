import { describe, expect, it } from "vitest";
import { Scheduler, TraceBus, TraceRecorder } from "@vsva/kernel";
import type { TimelineRow } from "../timeline.js";
import { refcountSeries, renderRefcountChart } from "./refcount-chart.js";

function twoIoasidRun(): { rows: TimelineRow[]; rec: TraceRecorder } {
  const bus = new TraceBus(new Scheduler());
  const rec = new TraceRecorder(bus);
  bus.emit("kernel.fault-injected", "KERNEL", { ioasid: 5 }, { point: "a", errno: 12, hit: 1 }, 1);
  bus.emit("kernel.fault-injected", "KERNEL", { ioasid: 9 }, { point: "b", errno: 12, hit: 1 }, 1);
  bus.emit("kernel.fault-injected", "KERNEL", { ioasid: 5 }, { point: "c", errno: 12, hit: 2 }, 2);
  bus.emit("kernel.fault-injected", "KERNEL", { ioasid: 5 }, { point: "d", errno: 12, hit: 3 }, 0);
  const [a, b, c, d] = rec.events;
  if (a === undefined || b === undefined || c === undefined || d === undefined) throw new Error("four events were emitted");
  const rows: TimelineRow[] = [
    { step: 1, actor: "USER", text: "set up" },
    { step: 2, actor: "IOASID", text: "alloc 5", seq: a.seq, refcount: 1 },
    { step: 3, actor: "IOASID", text: "alloc 9", seq: b.seq, refcount: 1 },
    { step: 4, actor: "IOASID", text: "get 5", seq: c.seq, refcount: 2 },
    { step: 5, actor: "USER", text: "tear down" },
    { step: 6, actor: "IOASID", text: "free 5", seq: d.seq, refcount: 0 },
  ];
  return { rows, rec };
}

describe("refcountSeries", () => {
  it("splits the Ref column by the IOASID of the event behind each row", () => {
    const { rows, rec } = twoIoasidRun();
    expect(refcountSeries(rows, rec.events)).toEqual([
      { label: "IOASID 5", points: [{ row: 1, refcount: 1 }, { row: 3, refcount: 2 }, { row: 5, refcount: 0 }] },
      { label: "IOASID 9", points: [{ row: 2, refcount: 1 }] },
    ]);
  });

  it("keeps a guest kernel's count of an IOASID apart from the host's count of the same number", () => {
    const host = new TraceBus(new Scheduler());
    const guest = host.forContext("vm1");
    const rec = new TraceRecorder(host, { system: true });
    host.emit("kernel.fault-injected", "KERNEL", { ioasid: 5 }, { point: "a", errno: 12, hit: 1 }, 2);
    guest.emit("kernel.fault-injected", "KERNEL", { ioasid: 5 }, { point: "b", errno: 12, hit: 1 }, 1);
    const rows: TimelineRow[] = rec.events.map((e, i) => ({ step: i + 1, actor: "IOASID", text: e.kind, seq: e.seq, refcount: e.refcount ?? 0 }));
    expect(refcountSeries(rows, rec.events)).toEqual([
      { label: "IOASID 5", points: [{ row: 0, refcount: 2 }] },
      { label: "vm1 IOASID 5", points: [{ row: 1, refcount: 1 }] },
    ]);
  });

  it("keeps rows that name no event (replayed tables) as one Ref series", () => {
    const rows: TimelineRow[] = [
      { step: 1, actor: "IOASID", text: "alloc", refcount: 1 },
      { step: 2, actor: "VFIO", text: "bind" },
      { step: 3, actor: "IOASID", text: "free", refcount: 0 },
    ];
    expect(refcountSeries(rows, [])).toEqual([{ label: "Ref", points: [{ row: 0, refcount: 1 }, { row: 2, refcount: 0 }] }]);
  });
});

describe("renderRefcountChart", () => {
  it("draws one step path per IOASID, one clickable point per counted row, one rule per USER step", () => {
    const { rows, rec } = twoIoasidRun();
    const svg = renderRefcountChart(refcountSeries(rows, rec.events), rows);
    expect(svg.match(/<path class="series"/g)).toHaveLength(2);
    expect([...svg.matchAll(/class="point" data-row="(\d+)"/g)].map((m) => Number(m[1]))).toEqual([1, 3, 5, 2]);
    expect(svg.match(/class="step-rule"/g)).toHaveLength(2);
    // A step chart: only horizontal and vertical moves after the start.
    const d = /<path class="series" d="([^"]+)"/.exec(svg)?.[1] ?? "";
    expect(d).toMatch(/^M[\d.]+ [\d.]+( [HV][\d.]+)+$/);
    expect(svg).toContain("IOASID 5");
  });

  it("draws the count holding its value between the rows that change it", () => {
    const { rows, rec } = twoIoasidRun();
    const svg = renderRefcountChart(refcountSeries(rows, rec.events), rows);
    const d = /<path class="series" d="([^"]+)"/.exec(svg)?.[1] ?? "";
    // Up to 2 at row index 3, down to 0 at row 5: y for 2 is the top, y for 0 the bottom.
    const vs = [...d.matchAll(/V([\d.]+)/g)].map((m) => Number(m[1]));
    expect(vs).toHaveLength(2);
    const [up, down] = vs;
    expect(up).toBeLessThan(down ?? 0);
  });

  it("says so instead of drawing an empty chart when nothing was counted", () => {
    expect(renderRefcountChart([], [{ step: 1, actor: "USER", text: "x" }])).not.toContain("<svg");
  });
});
