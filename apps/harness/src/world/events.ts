import { HOST_CONTEXT, type TraceEvent } from "@vsva/kernel";
import type { TimelineRow } from "../timeline.js";

/**
 * Turns trace-bus events into timeline rows: the lifecycle-level events of
 * every layer, one row each, in the actor's column. Per-access noise (ATS
 * translations, per-page maps) is left to the --json and --trace outputs.
 */
const NOISE = new Set<string>(["pci.ats-translate", "iommu.map", "iommu.unmap", "mm.fault", "mm.mmap", "ioasid.get", "ioasid.put"]);

/**
 * The column each actor's events go to. A guest kernel's events go to lanes
 * of their own, named context and actor ("vm1 IOMMU"), beside the host's.
 */
export const ACTOR_COLUMNS = ["USER", "MM", "VFIO", "VMM", "DEVICE", "IOMMU", "IOASID", "KVM", "VDCM", "HW", "KERNEL"] as const;

function hex(v: unknown): string {
  return typeof v === "number" ? `0x${v.toString(16)}` : String(v);
}

function summary(e: TraceEvent): string {
  const p = e.payload as Record<string, unknown>;
  const bits: string[] = [];
  for (const key of ["event", "name", "outcome", "result", "code", "type", "op"]) {
    const v = p[key];
    if (typeof v === "string" && v !== "") bits.push(v);
  }
  // KVM's and the VDCM's events carry their VM, PASIDs (and mdev) as IDs only: without them their lanes say nothing of what was translated, or for whom.
  const perVm = e.actor === "KVM" || e.actor === "VDCM";
  const ids = e.ids as Record<string, unknown>;
  if (perVm && typeof ids.vm === "number") bits.push(`VM ${ids.vm}`);
  if (perVm && typeof ids.device === "string") bits.push(ids.device);
  for (const key of ["pasid", "hpasid", "gpasid"]) {
    const v = p[key] ?? (perVm ? ids[key] : undefined);
    if (typeof v === "number") bits.push(`${key}=${v}`);
  }
  if (typeof p.addr === "number") bits.push(`@${hex(p.addr)}`);
  if (typeof p.reason === "number") bits.push(`reason ${hex(p.reason)}`);
  if (p.recorded === false) bits.push("(not recorded)");
  return bits.join(" ");
}

/** The lane of an event: the emitting layer's actor, per kernel context (a guest's driver is not the host's). */
export function laneOf(e: Pick<TraceEvent, "context" | "actor">): string {
  return e.context === HOST_CONTEXT ? e.actor : `${e.context} ${e.actor}`;
}

export function rowsFromEvents(events: readonly TraceEvent[], firstStep: number): TimelineRow[] {
  const rows: TimelineRow[] = [];
  let step = firstStep;
  for (const e of events) {
    if (NOISE.has(e.kind)) continue;
    const actor = laneOf(e);
    const text = `${e.kind} ${summary(e)}`.trim();
    // The Ref column follows IOASIDs, as in the ioasid.rst life-cycle tables; set refcounts stay in the trace.
    const ref = e.refcount !== undefined && !e.kind.startsWith("ioasid.set") ? { refcount: e.refcount } : {};
    rows.push({ step: step++, actor, text, seq: e.seq, ...ref });
  }
  return rows;
}
