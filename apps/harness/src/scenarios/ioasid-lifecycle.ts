import { Kernel, TraceRecorder } from "@vsva/kernel";
import { type LifecycleRow, replayFreeBeforeUnbind, replayNormalLifecycle } from "@vsva/ioasid/testing";
import type { Scenario, ScenarioResult } from "../scenario.js";
import type { TimelineRow } from "../timeline.js";

/**
 * The guest IOASID life-cycle tables of the IOASID documentation proposed
 * with the vSVA work (Documentation/driver-api/ioasid.rst in "IOASID
 * extensions for guest SVA", iommu mailing list, 2020), replayed on the real
 * `@vsva/ioasid` core.
 * VFIO, the IOMMU driver, KVM and VDCM are stand-in subscribers (the real
 * layers arrive with their own packages); every refcount in the table is the
 * one the core holds at that row.
 */
const COLUMNS = ["VFIO", "IOMMU", "KVM", "VDCM", "IOASID"] as const;

/**
 * The replayed table's rows on the timeline, numbered from 1 (the exception
 * table continues the normal table's numbering, from its step 13): the
 * guest's marker lines ("GUEST STARTS DMA") are narrative rows of their own
 * actor, spanning the lanes; the one row both KVM and VDCM act in (each
 * registers its notifier, KVM by mm) is a row in each lane.
 */
function timelineRows(rows: readonly LifecycleRow[]): TimelineRow[] {
  const out: Omit<TimelineRow, "step">[] = [];
  for (const r of rows) {
    const ref = r.refcount === null ? {} : { refcount: r.refcount };
    if (r.actor === "" || r.actor === "GUEST") {
      // "-------- GUEST STARTS DMA --------" is the guest's row: "GUEST: STARTS DMA".
      out.push({ actor: "GUEST", text: r.action.replace(/^-+\s*|\s*-+$/g, "").replace(/\bGUEST /, ""), ...ref });
    } else if (r.actor === "KVM, VDCM") {
      out.push({ actor: "KVM", text: "ioasid_register_notifier_mm()" }, { actor: "VDCM", text: "ioasid_register_notifier()", ...ref });
    } else {
      out.push({ actor: r.actor, text: r.action, ...ref });
    }
  }
  return out.map((r, i) => ({ ...r, step: i + 1 }));
}

function toResult(title: string, rows: readonly LifecycleRow[], rec: TraceRecorder, violations: string[]): ScenarioResult {
  return {
    title,
    columns: COLUMNS,
    rows: timelineRows(rows),
    events: [...rec.events],
    // The tables fix every step and value: there is nothing for a seed to choose.
    choices: [],
    violations,
  };
}

/** The refcount column the ioasid.rst tables print, in order, for the rows that have one. */
function refColumn(rows: readonly LifecycleRow[]): number[] {
  return rows.flatMap((r) => (r.refcount === null ? [] : [r.refcount]));
}

function expectColumn(rows: readonly LifecycleRow[], want: readonly number[], violations: string[]): void {
  const got = refColumn(rows);
  if (got.join(",") !== want.join(",")) violations.push(`refcount column ${got.join(",")} differs from the ioasid.rst table's ${want.join(",")}`);
}

export const ioasidLifecycle: Scenario = {
  name: "ioasid-lifecycle",
  summary: "ioasid.rst normal guest life cycle on the IOASID core (stand-in VFIO/IOMMU/KVM/VDCM): refs 1,2,3,4,3,2,1,0, reclaimed",
  run() {
    const kernel = new Kernel();
    const rec = new TraceRecorder(kernel.trace);
    const rows = replayNormalLifecycle(kernel);
    const violations: string[] = [];
    // 1..4 while setting up, 3,2,1,0 while tearing down, then 1 for the next life cycle's alloc.
    expectColumn(rows, [1, 2, 3, 4, 3, 2, 1, 0, 1], violations);
    if (!rows.some((r) => r.action === "Reclaimed")) violations.push("the IOASID was never reclaimed");
    return toResult("Guest IOASID life cycle (ioasid.rst table, normal order)", rows, rec, violations);
  },
};

export const ioasidFreeBeforeUnbind: Scenario = {
  name: "ioasid-free-before-unbind",
  summary: "ioasid.rst exception table: FREE notified CPU, DEVICE, IOMMU; deferred teardown; reclaimed; late unbind fails cleanly",
  run() {
    const kernel = new Kernel();
    const rec = new TraceRecorder(kernel.trace);
    const rows = replayFreeBeforeUnbind(kernel);
    const violations: string[] = [];
    const order = rows.filter((r) => r.action.includes("nb_handler(FREE)")).map((r) => r.actor);
    if (order.join(",") !== "KVM,VDCM,IOMMU") violations.push(`FREE delivered in order ${order.join(",")}, not CPU (KVM), DEVICE (VDCM), IOMMU`);
    if (!rows.some((r) => r.action === "Reclaimed")) violations.push("the IOASID was never reclaimed");
    if (!(rows.at(-1)?.action.toLowerCase().includes("fail") ?? false)) violations.push("the late unbind did not fail cleanly");
    return toResult("Guest IOASID free before unbind (ioasid.rst exception table)", rows, rec, violations);
  },
};
