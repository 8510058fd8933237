import { type Ioasid, type TraceEvent, asIoasid, errnoName } from "@vsva/kernel";
import { IoasidPriority } from "@vsva/ioasid";
import { LifecycleLog, type LifecycleRow } from "@vsva/ioasid/testing";
import { kvmTableRows } from "@vsva/kvm-pasid/testing";
import type { Host } from "../world/host.js";

/**
 * The guest IOASID life-cycle table (the proposed
 * Documentation/driver-api/ioasid.rst, "Guest IOASID Life Cycle (VT-d
 * Example)", vSVA series on the iommu list, 2020) written while the real
 * layers act on a host: VFIO's rows are the VMM's ioctls (the scenario writes
 * them as it makes them), every other row comes from the trace event of the
 * layer that acted, as it acted: the IOASID core's (mark_free_pending,
 * notifications, reclaim, via `@vsva/ioasid/testing`'s LifecycleLog), the
 * VT-d driver's, KVM's (`@vsva/kvm-pasid/testing`'s rows), the VDCM's and
 * the notifier registrations. The Ref column is the IOASID core's count for the followed
 * host PASID right after the row.
 */
export interface LifecycleTableOptions {
  /**
   * Where VFIO's rows come from: `scenario` (default) — the scenario is the
   * VMM and writes them as it makes its ioctls; `vmm` — a real VMM (`@vsva/vmm`)
   * makes them for its guest, and the rows come from its `vmm.vfio-ioctl`
   * announcements and VFIO's own events: the first PASID_REQUEST alloc is
   * the followed PASID; after that PASID is reclaimed, the next alloc is the
   * new life cycle's, and the table ends with it.
   */
  readonly vfio?: "scenario" | "vmm";
  /** `vmm` only: the PASID_REQUEST free is the exception table's (a "returns" row after the notifiers), not the normal table's one row. */
  readonly freeBeforeUnbind?: boolean;
}

export class LifecycleTable {
  readonly log: LifecycleLog;
  readonly #opts: LifecycleTableOptions;
  #id: Ioasid | null = null;
  /** `vmm`: a PASID_REQUEST alloc was announced and VFIO has not answered yet. */
  #allocPending = false;
  /** `vmm`: the row of the announced PASID_REQUEST free, whose refcount is the one after the call. */
  #freeRow: number | null = null;
  #reclaimed = false;
  /** The rows as they were when the table ended by itself (`vmm`: the new life cycle's alloc). */
  #final: LifecycleRow[] | null = null;
  /** The VT-d driver cleared its private data: its next put of the PASID is the release of its reference. */
  #iommuPutNext = false;
  /** The VT-d driver's FREE handler ran: its next PASID teardown is the queued teardown work. */
  #freeNotified = false;
  #open = true;
  #abandoned = false;

  constructor(host: Host, opts: LifecycleTableOptions = {}) {
    this.#opts = opts;
    this.log = new LifecycleLog(host.ioasid, host.kernel);
    host.kernel.trace.subscribe((e) => {
      if (this.#open) this.#on(e);
    });
  }

  /** From now on, rows are about `id` (a host PASID just allocated). */
  follow(id: Ioasid): void {
    this.#id = id;
    this.#iommuPutNext = false;
    this.#freeNotified = false;
    this.#reclaimed = false;
  }

  row(actor: string, action: string, refOf?: Ioasid): void {
    this.log.row(actor, action, refOf);
  }

  /** Stops recording (what follows is teardown, not the table) and gives the rows. */
  close(): LifecycleRow[] {
    this.#open = false;
    return this.#final ?? [...this.log.rows];
  }

  /** The run did not get to the end of the life cycle (its VM was killed): its timeline is the host's rows, not a partial table. */
  abandon(): void {
    this.#abandoned = true;
  }

  get abandoned(): boolean {
    return this.#abandoned;
  }

  /** The rows so far (or as the table ended). */
  get rows(): readonly LifecycleRow[] {
    return this.#final ?? this.log.rows;
  }

  /** `vmm`: VFIO's rows from the VMM's announcements (before the ioctl) and VFIO's events (after it). */
  #onVmm(e: TraceEvent): void {
    switch (e.kind) {
      case "vmm.vfio-ioctl": {
        const op = e.payload.op;
        if (op === "PASID_REQUEST alloc") {
          this.#allocPending = true;
          return;
        }
        if (this.#id === null || e.ids.ioasid !== this.#id) return;
        if (op === "NESTING_OP bind") this.row("VFIO", "bind_gpasid()");
        else if (op === "NESTING_OP unbind") this.row("VFIO", "unbind_gpasid()");
        else {
          this.#freeRow = this.log.rows.length;
          this.row("VFIO", "ioasid_free()");
        }
        return;
      }
      case "vfio.pasid-alloc": {
        if (!this.#allocPending || e.ids.ioasid === undefined) return;
        this.#allocPending = false;
        const id = asIoasid(e.ids.ioasid);
        if (this.#id !== null && !this.#reclaimed) return;
        const next = this.#id !== null;
        if (next) this.row("", "-------- New Life Cycle Begin --------");
        this.follow(id);
        this.row("VFIO", "ioasid_alloc()", id);
        if (next) this.#final = [...this.log.rows];
        return;
      }
      case "vfio.pasid-free": {
        const at = this.#freeRow;
        const id = this.#id;
        if (at === null || id === null) return;
        this.#freeRow = null;
        if (this.#opts.freeBeforeUnbind === true) this.row("VFIO", "ioasid_free() returns", id);
        else {
          const r = this.log.rows[at];
          if (r !== undefined) this.log.rows[at] = { ...r, refcount: this.log.core.refcount(id) };
        }
        return;
      }
      case "ioasid.reclaim":
        if (e.ids.ioasid === this.#id) this.#reclaimed = true;
        return;
      default:
        return;
    }
  }

  #on(e: TraceEvent): void {
    if (this.#final !== null) return;
    if (this.#opts.vfio === "vmm") this.#onVmm(e);
    if (e.kind === "ioasid.notifier.register") {
      // KVM (CPU) and the VDCM (DEVICE) are the per-VM subscribers; by mm token before the VM's set exists, on the set after.
      const who = e.payload.priority === IoasidPriority.CPU ? "KVM" : e.payload.priority === IoasidPriority.DEVICE ? "VDCM" : null;
      if (who !== null && e.payload.scope !== "system") this.row(who, e.payload.scope === "mm-pending" ? "ioasid_register_notifier_mm()" : "ioasid_register_notifier()");
      return;
    }
    const id = this.#id;
    if (id === null) return;
    const about = (e.ids.ioasid ?? e.ids.hpasid) === id;
    switch (e.kind) {
      case "ioasid.data.attach":
        // Only the IOMMU driver keeps private data on a guest PASID: it attaches it right after taking its reference.
        if (!about) return;
        if (e.payload.cleared) this.#iommuPutNext = true;
        else this.row("IOMMU", "iommu_bind()->ioasid_get()", id);
        return;
      case "ioasid.put":
        if (about && this.#iommuPutNext) {
          this.#iommuPutNext = false;
          this.row("IOMMU", "ioasid_put()", id);
        }
        return;
      case "vtd-drv.unbind-gpasid":
        if (about) this.row("IOMMU", "iommu_unbind()");
        return;
      case "vtd-drv.free-notified":
        if (!about) return;
        this.#freeNotified = true;
        this.row("IOMMU", "iommu_nb_handler(FREE)");
        return;
      case "vtd-drv.pasid-teardown":
        if (!about || !this.#freeNotified) return;
        this.#freeNotified = false;
        this.row("IOMMU", "teardown_pasid_wk()");
        return;
      case "iommu.uapi-refused":
        if (e.payload.op === "unbind-gpasid") {
          const errno = `-${errnoName(e.payload.errno)}`;
          // The IOMMU core's ownership check is ioasid_find(): after FREE it is what fails.
          this.row("IOMMU", errnoName(e.payload.errno) === "ENOENT" ? `iommu_unbind()->ioasid_find() fails: ${errno}` : `iommu_unbind() fails: ${errno}`);
        }
        return;
      case "vdcm.program":
        // The guest's write of its PASID, trapped; find_by_spid took the VDCM's reference; the hardware WQ has the host PASID.
        if (!about || e.payload.source !== "guest-pasid") return;
        this.row("VDCM", "mdev_write(gpasid)");
        this.row("VDCM", "hpasid=");
        this.row("VDCM", "find_by_spid(gpasid)", id);
        this.row("VDCM", "dev_write(hpasid)");
        return;
      case "vdcm.free-notified":
        if (about) this.row("VDCM", "vdcm_nb_handler(FREE)");
        return;
      case "vdcm.clear":
        if (!about || !e.payload.ref) return;
        if (e.payload.cause === "FREE") {
          this.row("VDCM", "vdev_clear_wk(hpasid)");
        } else {
          this.row("VDCM", "mdev_clear(gpasid)");
          this.row("VDCM", "dev_clear(hpasid)");
        }
        this.row("VDCM", "ioasid_put()", id);
        return;
      case "kvm.pasid.install":
      case "kvm.pasid.remove":
        if (about) for (const r of kvmTableRows(e)) this.row(r.actor, r.action, r.refcount === null ? undefined : id);
        return;
      default:
        return;
    }
  }
}
