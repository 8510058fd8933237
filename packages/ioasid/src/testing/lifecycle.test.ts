import { asSpid, Kernel, TraceRecorder } from "@vsva/kernel";
import { describe, expect, it } from "vitest";
import { FREE_BEFORE_UNBIND_TABLE, NORMAL_LIFECYCLE_TABLE, lifecycleRefColumn, lifecycleTable, replayFreeBeforeUnbind, replayNormalLifecycle, setUpGuestLifecycle } from "./lifecycle.js";

describe("ioasid.rst: the normal guest IOASID life cycle", () => {
  it("reads 1, 2, 3, 4, 3, 2, 1, 0, reclaimed in the refcount column, then a new life cycle starts at 1", () => {
    expect(lifecycleRefColumn(replayNormalLifecycle())).toEqual([1, 2, 3, 4, 3, 2, 1, 0, "reclaimed", 1]);
  });

  it("replays the table step by step", () => {
    // Where the replay's rows differ from the document's (its row 22), NORMAL_LIFECYCLE_TABLE says why.
    expect(lifecycleTable(replayNormalLifecycle())).toEqual(NORMAL_LIFECYCLE_TABLE);
  });

  it("traces one reclaim at refcount 0 and never a negative refcount", () => {
    const kernel = new Kernel();
    const rec = new TraceRecorder(kernel.trace);
    replayNormalLifecycle(kernel);
    const reclaim = rec.ofKind("ioasid.reclaim");
    expect(reclaim).toHaveLength(1);
    expect(reclaim[0]?.refcount).toBe(0);
    // Every per-ID event carries the refcount after it; they never go negative and end at 0 before the new cycle.
    const refs = rec.events.filter((e) => e.ids.ioasid === 1 && e.refcount !== undefined).map((e) => e.refcount);
    expect(refs.every((r) => r !== undefined && r >= 0)).toBe(true);
  });
});

describe("ioasid.rst: free before unbind (the exception table)", () => {
  it("delivers FREE in priority order CPU, DEVICE, IOMMU, runs the deferred work by stepping the scheduler, and fails the late unbind cleanly", () => {
    // Where the order differs from the document's (its rows 16 and 17), FREE_BEFORE_UNBIND_TABLE says why.
    expect(lifecycleTable(replayFreeBeforeUnbind())).toEqual(FREE_BEFORE_UNBIND_TABLE);
    expect(lifecycleRefColumn(replayFreeBeforeUnbind())).toEqual([3, 2, 1, 0, "reclaimed"]);
  });

  it("holds the ID FREE_PENDING until the work runs: no new reference, no reallocation", () => {
    const g = setUpGuestLifecycle();
    const hpasid = g.vfio.allocPasid();
    g.vfio.bindGpasid(hpasid, asSpid(101));
    g.vdcm.mdevWrite(g.vfio.set, asSpid(101));
    g.vfio.freePasid(hpasid);
    expect(g.core.state(hpasid)).toBe("FREE_PENDING");
    expect(g.kvm.pasidTable.size).toBe(0);
    expect(g.vdcm.mdevWrite(g.vfio.set, asSpid(101))).toBeLessThan(0);
    expect(g.vfio.allocPasid()).not.toBe(hpasid);
    expect(g.kernel.scheduler.step()).toBe(true);
    expect(g.core.state(hpasid)).toBe("FREE_PENDING");
    expect(g.kernel.scheduler.step()).toBe(true);
    expect(g.core.state(hpasid)).toBe("IDLE");
    expect(g.kernel.scheduler.step()).toBe(false);
    // No UNBIND went out after FREE: KVM saw BIND then FREE only.
    expect(g.vfio.unbindGpasid(hpasid)).toBeLessThan(0);
  });
});
