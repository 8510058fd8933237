import { Kernel, TraceRecorder } from "@vsva/kernel";
import { type LifecycleRow, replayFreeBeforeUnbind, replayNormalLifecycle } from "@vsva/ioasid/testing";
import type { Scenario, ScenarioResult } from "../scenario.js";

/**
 * Seed 003's guest IOASID tables replayed on the real `@vsva/ioasid` core.
 * VFIO, the IOMMU driver, KVM and VDCM are stand-in subscribers (the real
 * layers arrive with their own packages); every refcount in the table is the
 * one the core holds at that row.
 */
const COLUMNS = ["VFIO", "IOMMU", "KVM", "VDCM", "IOASID"] as const;

function toResult(title: string, rows: readonly LifecycleRow[], rec: TraceRecorder, violations: string[]): ScenarioResult {
  return {
    title,
    columns: COLUMNS,
    rows: rows.map((r) => ({
      step: r.step,
      actor: r.actor === "" || r.actor === "GUEST" ? "VFIO" : r.actor,
      text: r.action,
      ...(r.refcount === null ? {} : { refcount: r.refcount }),
    })),
    events: [...rec.events],
    // The tables fix every step and value: there is nothing for a seed to choose.
    choices: [],
    violations,
  };
}

/** The refcount column seed 003 prints, in order, for the rows that have one. */
function refColumn(rows: readonly LifecycleRow[]): number[] {
  return rows.flatMap((r) => (r.refcount === null ? [] : [r.refcount]));
}

function expectColumn(rows: readonly LifecycleRow[], want: readonly number[], violations: string[]): void {
  const got = refColumn(rows);
  if (got.join(",") !== want.join(",")) violations.push(`refcount column ${got.join(",")} differs from seed 003's ${want.join(",")}`);
}

export const ioasidLifecycle: Scenario = {
  name: "ioasid-lifecycle",
  summary: "seed 003 normal guest lifecycle on the IOASID core (stand-in VFIO/IOMMU/KVM/VDCM): refs 1,2,3,4,3,2,1,0, reclaimed",
  run() {
    const kernel = new Kernel();
    const rec = new TraceRecorder(kernel.trace);
    const rows = replayNormalLifecycle(kernel);
    const violations: string[] = [];
    // 1..4 while setting up, 3,2,1,0 while tearing down, then 1 for the next life cycle's alloc.
    expectColumn(rows, [1, 2, 3, 4, 3, 2, 1, 0, 1], violations);
    if (!rows.some((r) => r.action === "Reclaimed")) violations.push("the IOASID was never reclaimed");
    return toResult("Guest IOASID life cycle (seed 003, normal order)", rows, rec, violations);
  },
};

export const ioasidFreeBeforeUnbind: Scenario = {
  name: "ioasid-free-before-unbind",
  summary: "seed 003 exception table: FREE notified CPU, DEVICE, IOMMU; deferred teardown; reclaimed; late unbind fails cleanly",
  run() {
    const kernel = new Kernel();
    const rec = new TraceRecorder(kernel.trace);
    const rows = replayFreeBeforeUnbind(kernel);
    const violations: string[] = [];
    const order = rows.filter((r) => r.action.includes("nb_handler(FREE)")).map((r) => r.actor);
    if (order.join(",") !== "KVM,VDCM,IOMMU") violations.push(`FREE delivered in order ${order.join(",")}, not CPU (KVM), DEVICE (VDCM), IOMMU`);
    if (!rows.some((r) => r.action === "Reclaimed")) violations.push("the IOASID was never reclaimed");
    if (!(rows.at(-1)?.action.toLowerCase().includes("fail") ?? false)) violations.push("the late unbind did not fail cleanly");
    return toResult("Guest IOASID free before unbind (seed 003, exception table)", rows, rec, violations);
  },
};
