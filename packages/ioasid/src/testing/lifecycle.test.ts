import { asSpid, Kernel, TraceRecorder } from "@vsva/kernel";
import { describe, expect, it } from "vitest";
import { type LifecycleRow, replayFreeBeforeUnbind, replayNormalLifecycle, setUpGuestLifecycle } from "./lifecycle.js";

const table = (rows: readonly LifecycleRow[]) => rows.map((r) => [r.step, r.actor, r.action, r.refcount]);
const refColumn = (rows: readonly LifecycleRow[]) =>
  rows.flatMap<number | string>((r) => (r.action === "Reclaimed" ? ["reclaimed"] : r.refcount === null ? [] : [r.refcount]));

describe("ioasid.rst: the normal guest IOASID life cycle", () => {
  it("reads 1, 2, 3, 4, 3, 2, 1, 0, reclaimed in the refcount column, then a new life cycle starts at 1", () => {
    expect(refColumn(replayNormalLifecycle())).toEqual([1, 2, 3, 4, 3, 2, 1, 0, "reclaimed", 1]);
  });

  it("replays the table step by step", () => {
    // Rows 1–21 are the table's rows 1–21. At its row 22 the table says only
    // "ioasid_free() 1"; the review put the FREE notification there, so the
    // replay shows it: FREE reaches the IOMMU driver, the one subscriber still
    // holding a reference, whose queued teardown is the table's row 23 put.
    expect(table(replayNormalLifecycle())).toEqual([
      [1, "KVM, VDCM", "ioasid_register_notifier/_mm()", null],
      [2, "VFIO", "ioasid_alloc()", 1],
      [3, "VFIO", "bind_gpasid()", null],
      [4, "IOMMU", "iommu_bind()->ioasid_get()", 2],
      [5, "IOASID", "ioasid_notify(BIND)", null],
      [6, "KVM", "-> ioasid_get()", 3],
      [7, "KVM", "-> vmcs_update_atomic()", null],
      [8, "VDCM", "mdev_write(gpasid)", null],
      [9, "VDCM", "hpasid=", null],
      [10, "VDCM", "find_by_spid(gpasid)", 4],
      [11, "VDCM", "dev_write(hpasid)", null],
      [12, "GUEST", "-------- GUEST STARTS DMA --------", null],
      [13, "GUEST", "-------- GUEST STOPS DMA --------", null],
      [14, "VDCM", "mdev_clear(gpasid)", null],
      [15, "VDCM", "dev_clear(hpasid)", null],
      [16, "VDCM", "ioasid_put()", 3],
      [17, "VFIO", "unbind_gpasid()", null],
      [18, "IOMMU", "iommu_unbind()", null],
      [19, "IOASID", "ioasid_notify(UNBIND)", null],
      [20, "KVM", "-> vmcs_update_atomic()", null],
      [21, "KVM", "-> ioasid_put()", 2],
      [22, "VFIO", "ioasid_free()", null],
      [23, "IOASID", "mark_free_pending", null],
      [24, "IOASID", "ioasid_notify(FREE)", null],
      [25, "IOMMU", "iommu_nb_handler(FREE)", null],
      [26, "VFIO", "ioasid_free() returns", 1],
      [27, "IOMMU", "teardown_pasid_wk()", null],
      [28, "IOMMU", "ioasid_put()", 0],
      [29, "IOASID", "Reclaimed", null],
      [30, "", "-------- New Life Cycle Begin --------", null],
      [31, "VFIO", "ioasid_alloc()", 1],
    ]);
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
    // The seed lists notify(FREE) at 16 and mark_free_pending at 17, both
    // under one lock. The core marks first, so that a handler calling get()
    // already sees FREE_PENDING (the table's note 1). After row 23 "all events
    // can go out of order" (note 2): here each work item runs its put at once.
    expect(table(replayFreeBeforeUnbind())).toEqual([
      [13, "GUEST", "-------- GUEST STARTS DMA --------", null],
      [14, "GUEST", "-------- *GUEST MISBEHAVES!!!* --------", null],
      [15, "VFIO", "ioasid_free()", null],
      [16, "IOASID", "mark_free_pending", null],
      [17, "IOASID", "ioasid_notify(FREE)", null],
      [18, "KVM", "kvm_nb_handler(FREE)", null],
      [19, "KVM", "vmcs_update_atomic()", null],
      [20, "KVM", "ioasid_put_locked()", 3],
      [21, "VDCM", "vdcm_nb_handler(FREE)", null],
      [22, "IOMMU", "iommu_nb_handler(FREE)", null],
      [23, "VFIO", "ioasid_free() returns", 2],
      [24, "VDCM", "vdev_clear_wk(hpasid)", null],
      [25, "VDCM", "ioasid_put()", 1],
      [26, "IOMMU", "teardown_pasid_wk()", null],
      [27, "IOMMU", "ioasid_put()", 0],
      [28, "IOASID", "Reclaimed", null],
      [29, "VFIO", "unbind_gpasid()", null],
      [30, "IOMMU", "iommu_unbind()->ioasid_find() fails: -ENOENT", null],
    ]);
    expect(refColumn(replayFreeBeforeUnbind())).toEqual([3, 2, 1, 0, "reclaimed"]);
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
