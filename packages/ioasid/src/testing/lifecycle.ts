import {
  Errno,
  errnoName,
  type Ioasid,
  isKernelError,
  Kernel,
  NOTIFY_DONE,
  NOTIFY_OK,
  type Spid,
  Work,
} from "@vsva/kernel";
import { IoasidCore } from "../core.js";
import { type IoasidEvent, type IoasidNotifierBlock, type IoasidNotifyData, IoasidPriority, type IoasidSet } from "../types.js";

/**
 * Stand-in subscribers for the guest IOASID life cycle of the ioasid.rst
 * proposal ("IOASID extensions for guest SVA", iommu list, 2020) (VFIO, the
 * IOMMU driver, KVM, VDCM), written against the public IoasidCore API only,
 * and replays of its two tables. Each stand-in does what its column of the
 * table does and writes a row as it goes; rows for the core's own steps
 * (mark_free_pending, notifications, reclaim) come from the trace bus, so the
 * printed table is what the code did, in the order it did it.
 */
export interface LifecycleRow {
  /** Row number in this replay (1-based, or from the first step of the replayed part). */
  readonly step: number;
  readonly actor: string;
  readonly action: string;
  /** The IOASID's refcount after this row, where the ioasid.rst table shows one. */
  readonly refcount: number | null;
}

/** A row as the replays' tests compare them: step, actor, action, refcount. */
export type LifecycleTableRow = readonly [step: number, actor: string, action: string, refcount: number | null];

/** The rows as {@link LifecycleTableRow}s. */
export function lifecycleTable(rows: readonly LifecycleRow[]): LifecycleTableRow[] {
  return rows.map((r) => [r.step, r.actor, r.action, r.refcount] as const);
}

/** The Ref column as the ioasid.rst tables print it: the refcounts in order, "reclaimed" where the ID went back to the pool. */
export function lifecycleRefColumn(rows: readonly LifecycleRow[]): (number | string)[] {
  return rows.flatMap<number | string>((r) => (r.action === "Reclaimed" ? ["reclaimed"] : r.refcount === null ? [] : [r.refcount]));
}

/**
 * The normal guest life-cycle table as every replay with the stand-in
 * IOMMU driver makes it (`@vsva/ioasid`'s, and the KVM and VDCM packages'
 * with their real subscribers in place of the stand-ins). Rows 1–21 are the
 * table's rows 1–21. At its row 22 the table says only "ioasid_free() 1";
 * the review put the FREE notification there, so the replay shows it: FREE
 * reaches the IOMMU driver, the one subscriber still holding a reference,
 * whose queued teardown is the table's row 23 put.
 */
export const NORMAL_LIFECYCLE_TABLE: readonly LifecycleTableRow[] = [
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
];

/**
 * The exception table (free before unbind), numbered from its step 13 as
 * ioasid.rst does, as every replay makes it. The document lists
 * notify(FREE) at 16 and mark_free_pending at 17, both under one lock; the
 * core marks first, so that a handler calling get() already sees
 * FREE_PENDING (the table's note 1). After row 23 "all events can go out of
 * order" (note 2): here each work item runs its put at once.
 */
export const FREE_BEFORE_UNBIND_TABLE: readonly LifecycleTableRow[] = [
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
];

export class LifecycleLog {
  readonly rows: LifecycleRow[] = [];
  #next: number;

  constructor(
    readonly core: IoasidCore,
    kernel: Kernel,
    firstStep = 1,
  ) {
    this.#next = firstStep;
    kernel.trace.subscribe((e) => {
      if (e.kind === "ioasid.free") this.row("IOASID", "mark_free_pending");
      else if (e.kind === "ioasid.notify" && e.payload.event !== "ALLOC") this.row("IOASID", `ioasid_notify(${e.payload.event})`);
      else if (e.kind === "ioasid.reclaim") this.row("IOASID", "Reclaimed");
    });
  }

  /** Restarts numbering, e.g. at 13 where the ioasid.rst exception table starts. */
  restart(step: number): void {
    this.rows.length = 0;
    this.#next = step;
  }

  row(actor: string, action: string, refOf?: Ioasid): void {
    this.rows.push({ step: this.#next++, actor, action, refcount: refOf === undefined ? null : this.core.refcount(refOf) });
  }

  /**
   * A row for a call that may set off other rows (a put that reclaims): the
   * row comes first, as the call does, and shows the refcount after it.
   */
  during(actor: string, action: string, id: Ioasid, fn: () => void): void {
    const at = this.rows.length;
    this.rows.push({ step: this.#next++, actor, action, refcount: null });
    fn();
    const row = this.rows[at];
    if (row !== undefined) this.rows[at] = { ...row, refcount: this.core.refcount(id) };
  }
}

/** VFIO: owns the VM's IOASID set (mm token), allocates and frees host PASIDs, relays bind/unbind. */
export class VfioStandIn {
  readonly set: IoasidSet;

  constructor(
    private readonly core: IoasidCore,
    private readonly log: LifecycleLog,
    private readonly iommu: IommuStandIn,
    mm: object,
    quota = 8,
  ) {
    this.set = core.allocSet(mm, quota, "mm");
  }

  allocPasid(): Ioasid {
    const id = this.core.alloc(this.set, 1, this.core.capacity);
    this.log.row("VFIO", "ioasid_alloc()", id);
    return id;
  }

  bindGpasid(hpasid: Ioasid, gpasid: Spid): number {
    this.log.row("VFIO", "bind_gpasid()");
    return this.iommu.bind(this.set, hpasid, gpasid);
  }

  unbindGpasid(hpasid: Ioasid): number {
    this.log.row("VFIO", "unbind_gpasid()");
    return this.iommu.unbind(this.set, hpasid);
  }

  freePasid(hpasid: Ioasid): void {
    this.log.row("VFIO", "ioasid_free()");
    this.core.free(this.set, hpasid);
    this.log.row("VFIO", "ioasid_free() returns", hpasid);
  }
}

/**
 * The host IOMMU driver: a system-wide notifier at IOMMU priority. Binding
 * takes a reference, held until FREE; attaching the guest PASID as SPID is
 * what emits BIND. On FREE it queues the teardown (which needs thread
 * context: PASID entry, flushes), which drops the reference.
 */
export class IommuStandIn implements IoasidNotifierBlock {
  readonly priority = IoasidPriority.IOMMU;
  readonly #held = new Set<number>();
  readonly #bound = new Set<number>();

  constructor(
    private readonly core: IoasidCore,
    private readonly log: LifecycleLog,
  ) {
    core.registerNotifier(null, this);
  }

  bind(set: IoasidSet, hpasid: Ioasid, gpasid: Spid): number {
    try {
      this.core.get(set, hpasid);
    } catch (e) {
      if (!isKernelError(e)) throw e;
      this.log.row("IOMMU", `iommu_bind()->ioasid_get() fails: -${errnoName(e.errno)}`);
      return -e.errno;
    }
    this.#held.add(hpasid);
    this.log.row("IOMMU", "iommu_bind()->ioasid_get()", hpasid);
    this.core.attachSpid(set, hpasid, gpasid);
    this.#bound.add(hpasid);
    return 0;
  }

  unbind(set: IoasidSet, hpasid: Ioasid): number {
    try {
      this.core.find(set, hpasid);
    } catch (e) {
      if (!isKernelError(e)) throw e;
      this.log.row("IOMMU", `iommu_unbind()->ioasid_find() fails: -${errnoName(e.errno)}`);
      return -e.errno;
    }
    if (!this.#bound.has(hpasid)) return -Errno.EINVAL;
    this.log.row("IOMMU", "iommu_unbind()");
    this.#bound.delete(hpasid);
    this.core.detachSpid(set, hpasid);
    return 0;
  }

  call(event: IoasidEvent, data: IoasidNotifyData): number {
    if (event !== "FREE" || !this.#held.has(data.id)) return NOTIFY_DONE;
    this.log.row("IOMMU", "iommu_nb_handler(FREE)");
    this.core.queueWork(
      new Work("teardown_pasid_wk", () => {
        this.log.row("IOMMU", "teardown_pasid_wk()");
        if (this.#bound.delete(data.id)) this.core.detachSpid(data.set, data.id);
        this.#held.delete(data.id);
        this.log.during("IOMMU", "ioasid_put()", data.id, () => this.core.put(data.set, data.id));
      }),
    );
    return NOTIFY_OK;
  }
}

/** KVM: a per-VM notifier registered by mm token at CPU priority; keeps the VMCS PASID translation table. */
export class KvmStandIn implements IoasidNotifierBlock {
  readonly priority = IoasidPriority.CPU;
  /** guest PASID -> host PASID, what ENQCMD translation uses. */
  readonly pasidTable = new Map<number, Ioasid>();
  readonly #held = new Set<number>();

  constructor(
    private readonly core: IoasidCore,
    private readonly log: LifecycleLog,
    readonly mm: object,
  ) {
    core.registerNotifierMm(mm, this);
  }

  call(event: IoasidEvent, data: IoasidNotifyData): number {
    if (event === "BIND" && data.spid !== null) {
      this.core.get(data.set, data.id);
      this.#held.add(data.id);
      this.log.row("KVM", "-> ioasid_get()", data.id);
      this.pasidTable.set(data.spid, data.id);
      this.log.row("KVM", "-> vmcs_update_atomic()");
      return NOTIFY_OK;
    }
    if (!this.#held.has(data.id)) return NOTIFY_DONE;
    if (event === "UNBIND") {
      if (data.spid !== null) this.pasidTable.delete(data.spid);
      this.log.row("KVM", "-> vmcs_update_atomic()");
    } else if (event === "FREE") {
      this.log.row("KVM", "kvm_nb_handler(FREE)");
      if (data.spid !== null) this.pasidTable.delete(data.spid);
      this.log.row("KVM", "vmcs_update_atomic()");
    } else {
      return NOTIFY_DONE;
    }
    this.#held.delete(data.id);
    this.log.during("KVM", event === "FREE" ? "ioasid_put_locked()" : "-> ioasid_put()", data.id, () => this.core.put(data.set, data.id));
    return NOTIFY_OK;
  }
}

/**
 * VDCM: a per-set notifier at DEVICE priority. A guest write of a PASID to the
 * mdev is translated by SPID (taking a reference) and programmed into the
 * physical work queue; FREE queues the clearing, which drops the reference.
 */
export class VdcmStandIn implements IoasidNotifierBlock {
  readonly priority = IoasidPriority.DEVICE;
  /** host PASID -> guest PASID programmed in the device. */
  readonly programmed = new Map<number, number>();

  constructor(
    private readonly core: IoasidCore,
    private readonly log: LifecycleLog,
    set: IoasidSet,
  ) {
    core.registerNotifier(set, this);
  }

  mdevWrite(set: IoasidSet, gpasid: Spid): number {
    this.log.row("VDCM", "mdev_write(gpasid)");
    this.log.row("VDCM", "hpasid=");
    let hpasid: Ioasid;
    try {
      hpasid = this.core.findBySpid(set, gpasid);
    } catch (e) {
      if (!isKernelError(e)) throw e;
      this.log.row("VDCM", `find_by_spid(gpasid) fails: -${errnoName(e.errno)}`);
      return -e.errno;
    }
    this.log.row("VDCM", "find_by_spid(gpasid)", hpasid);
    this.programmed.set(hpasid, gpasid);
    this.log.row("VDCM", "dev_write(hpasid)");
    return 0;
  }

  mdevClear(set: IoasidSet, gpasid: Spid): void {
    this.log.row("VDCM", "mdev_clear(gpasid)");
    for (const [hpasid, g] of this.programmed) {
      if (g !== gpasid) continue;
      this.log.row("VDCM", "dev_clear(hpasid)");
      this.programmed.delete(hpasid);
      this.log.during("VDCM", "ioasid_put()", hpasid as Ioasid, () => this.core.put(set, hpasid as Ioasid));
    }
  }

  call(event: IoasidEvent, data: IoasidNotifyData): number {
    if (event !== "FREE" || !this.programmed.has(data.id)) return NOTIFY_DONE;
    this.log.row("VDCM", "vdcm_nb_handler(FREE)");
    this.core.queueWork(
      new Work("vdev_clear_wk", () => {
        this.log.row("VDCM", "vdev_clear_wk(hpasid)");
        this.programmed.delete(data.id);
        this.log.during("VDCM", "ioasid_put()", data.id, () => this.core.put(data.set, data.id));
      }),
    );
    return NOTIFY_OK;
  }
}

/** One VM's cast, wired as at step 1 of the ioasid.rst tables, and the guest PASID it uses. */
export interface GuestLifecycle {
  readonly kernel: Kernel;
  readonly core: IoasidCore;
  readonly log: LifecycleLog;
  readonly mm: object;
  readonly iommu: IommuStandIn;
  readonly kvm: KvmStandIn;
  readonly vfio: VfioStandIn;
  readonly vdcm: VdcmStandIn;
}

/** Builds a host with the four stand-ins registered (step 1 of the table). */
export function setUpGuestLifecycle(kernel: Kernel = new Kernel()): GuestLifecycle {
  const core = new IoasidCore({ scheduler: kernel.scheduler, trace: kernel.trace, faults: kernel.faults, log: kernel.log });
  const log = new LifecycleLog(core, kernel);
  const mm = { name: "guest mm" };
  const iommu = new IommuStandIn(core, log);
  // KVM registers by mm before VFIO has created the set: its block waits on the pending list.
  const kvm = new KvmStandIn(core, log, mm);
  const vfio = new VfioStandIn(core, log, iommu, mm);
  const vdcm = new VdcmStandIn(core, log, vfio.set);
  log.row("KVM, VDCM", "ioasid_register_notifier/_mm()");
  return { kernel, core, log, mm, iommu, kvm, vfio, vdcm };
}

/** Steps 2–11 of both tables: allocate, bind (BIND reaches KVM), program the mdev by SPID. */
function setUpToDma(g: GuestLifecycle, gpasid: Spid): Ioasid {
  const hpasid = g.vfio.allocPasid();
  g.vfio.bindGpasid(hpasid, gpasid);
  g.vdcm.mdevWrite(g.vfio.set, gpasid);
  return hpasid;
}

/**
 * The ioasid.rst normal guest life cycle, replayed: the refcount column reads
 * 1, 2, 3, 4, 3, 2, 1, 0, then Reclaimed, then a new life cycle's alloc at 1.
 * Where the table's row 22 says only "ioasid_free()", the replay shows what
 * the reviewer asked to be called out there: FREE is notified at that step
 * (reaching the IOMMU driver, the one subscriber still holding a reference),
 * and the IOMMU's queued teardown is the put of row 23.
 */
export function replayNormalLifecycle(kernel?: Kernel, gpasid = 101 as Spid): LifecycleRow[] {
  const g = setUpGuestLifecycle(kernel);
  const hpasid = setUpToDma(g, gpasid);
  g.log.row("GUEST", "-------- GUEST STARTS DMA --------");
  g.log.row("GUEST", "-------- GUEST STOPS DMA --------");
  g.vdcm.mdevClear(g.vfio.set, gpasid);
  g.vfio.unbindGpasid(hpasid);
  g.vfio.freePasid(hpasid);
  g.kernel.scheduler.drain();
  g.log.row("", "-------- New Life Cycle Begin --------");
  g.vfio.allocPasid();
  return [...g.log.rows];
}

/**
 * The ioasid.rst exception table: the guest frees before it unbinds. FREE reaches
 * KVM (CPU), VDCM (DEVICE) and the IOMMU driver (IOMMU) in that order; KVM
 * drops its reference in the handler, VDCM and the IOMMU queue work that the
 * scheduler then runs; the ID is reclaimed; the late unbind fails cleanly
 * with ENOENT. Rows are numbered from 13 as in the seed, whose setup up to
 * there is the normal one.
 */
export function replayFreeBeforeUnbind(kernel?: Kernel, gpasid = 101 as Spid): LifecycleRow[] {
  const g = setUpGuestLifecycle(kernel);
  // Steps 1–12 are identical to the normal table; the exception table starts at 13.
  const hpasid = setUpToDma(g, gpasid);
  g.log.restart(13);
  g.log.row("GUEST", "-------- GUEST STARTS DMA --------");
  g.log.row("GUEST", "-------- *GUEST MISBEHAVES!!!* --------");
  g.vfio.freePasid(hpasid);
  while (g.kernel.scheduler.step()) {
    // each step runs one queued work item: VDCM's clear, then the IOMMU's teardown
  }
  g.vfio.unbindGpasid(hpasid);
  return [...g.log.rows];
}
