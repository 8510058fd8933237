import type { TraceEvent } from "@vsva/kernel";
import "../trace-events.js";

/** One row of KVM's column in the guest IOASID life-cycle tables. */
export interface KvmTableRow {
  readonly actor: "KVM";
  readonly action: string;
  /** The host PASID's IOASID refcount right after KVM's get or put, on the row that shows it; null elsewhere. */
  readonly refcount: number | null;
}

/**
 * The rows KVM's column of the guest IOASID life-cycle tables (the proposed
 * Documentation/driver-api/ioasid.rst, "Guest IOASID Life Cycle (VT-d
 * Example)", vSVA series on the iommu list, 2020) gives one of KvmPasid's
 * trace events, worded as the tables word them. Any other event gives none.
 * KVM writes no table rows itself: a replay that prints its column from these
 * shows what KvmPasid did, in the order it did it.
 */
export function kvmTableRows(e: TraceEvent): KvmTableRow[] {
  const ref = e.refcount ?? null;
  const row = (action: string, refcount: number | null = null): KvmTableRow => ({ actor: "KVM", action, refcount });
  if (e.kind === "kvm.pasid.install") return [row("-> ioasid_get()", ref), row("-> vmcs_update_atomic()")];
  if (e.kind !== "kvm.pasid.remove") return [];
  const cause = e.payload.cause;
  if (cause === "FREE") return [row("kvm_nb_handler(FREE)"), row("vmcs_update_atomic()"), row("ioasid_put_locked()", ref)];
  if (cause === "TEARDOWN") return [row("kvm_destroy_vm: vmcs_update_atomic()"), row("ioasid_put()", ref)];
  return [row("-> vmcs_update_atomic()"), row("-> ioasid_put()", ref)];
}
