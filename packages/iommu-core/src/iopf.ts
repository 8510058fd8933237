import { type HostPasid, type Kernel, Work, type Workqueue } from "@vsva/kernel";
import type { IommuDevice } from "./device.js";
import type { Mm } from "./mm/mm.js";
import type { PageRequestFault, PageResponse } from "./ops.js";
import "./trace-events.js";

export interface IopfQueueOptions {
  readonly kernel: Kernel;
  /**
   * The mm bound at `pasid` on `dev` (a physical device), or null when no
   * live bond has it (unknown PASID, unbound, released at exit).
   */
  readonly resolve: (dev: IommuDevice, pasid: HostPasid) => Mm | null;
  /** Sends a page-group response through the device's driver. */
  readonly respond: (dev: IommuDevice, response: PageResponse) => void;
  /** Names the workqueue (`<name>_wq`, default `iopf_wq`) when several queues share a scheduler. */
  readonly name?: string;
}

/** PRG index width (PCIe page request message: 9 bits). */
const GRPID_MAX = 0x1ff;

/** The requests of one page request group, collected until its last one. */
class IopfGroup {
  readonly faults: PageRequestFault[] = [];
  /** A request of the group could not be recorded: the group is answered invalid. */
  lost = false;
  work: Work | null = null;

  constructor(
    readonly dev: IommuDevice,
    readonly pasid: HostPasid | undefined,
    readonly grpid: number,
  ) {}
}

function groupKey(dev: IommuDevice, pasid: HostPasid | undefined, grpid: number): string {
  return `${dev.name}/${pasid ?? "-"}/${grpid}`;
}

/**
 * The IO page fault queue (drivers/iommu/io-pgfault.c). A driver reports
 * each page request from its interrupt handler (atomic context); requests
 * are grouped by device, PASID and group index until the last one of the
 * group, then the group is handled in a work item, where faulting pages in
 * may sleep. The group is answered once: success when every fault in it was
 * resolved, invalid otherwise, as Linux's `iopf_handle_group` (which also
 * stops at the first fault that fails).
 *
 * What is answered invalid without touching any mm: a request without PASID,
 * a privileged request (SVA shares user address spaces only), a PASID with no
 * live bond on the device, an mm that is exiting (`mmget_not_zero` fails),
 * and a group one of whose requests could not be recorded (fault point
 * `iommu.iopf-alloc`). Nothing a driver reports can make this throw.
 */
export class IopfQueue {
  readonly workqueue: Workqueue;
  readonly #kernel: Kernel;
  readonly #resolve: IopfQueueOptions["resolve"];
  readonly #respond: IopfQueueOptions["respond"];
  readonly #partial = new Map<string, IopfGroup>();
  readonly #queued = new Set<IopfGroup>();

  constructor(opts: IopfQueueOptions) {
    this.#kernel = opts.kernel;
    this.#resolve = opts.resolve;
    this.#respond = opts.respond;
    this.workqueue = opts.kernel.scheduler.createWorkqueue(`${opts.name ?? "iopf"}_wq`);
  }

  /** Groups still collecting requests (no last request yet). */
  get partialGroups(): number {
    return this.#partial.size;
  }

  /** Complete groups waiting for their work item. */
  get queuedGroups(): number {
    return this.#queued.size;
  }

  /**
   * `iommu_report_device_fault` for a page request on `dev` (a physical
   * device). Safe in atomic context: it only records and queues. Returns
   * false when the request was not usable (bad group index) or could not be
   * recorded; its group is then answered invalid when complete.
   */
  report(dev: IommuDevice, fault: PageRequestFault): boolean {
    const grpid = Number.isInteger(fault.grpid) && fault.grpid >= 0 && fault.grpid <= GRPID_MAX ? fault.grpid : -1;
    if (grpid < 0) {
      this.#trace(dev, fault, false);
      return false;
    }
    const key = groupKey(dev, fault.pasid, grpid);
    let group = this.#partial.get(key);
    if (group === undefined) {
      group = new IopfGroup(dev, fault.pasid, grpid);
      this.#partial.set(key, group);
    }
    const recorded = !this.#kernel.faults.shouldFail("iommu.iopf-alloc");
    if (recorded) group.faults.push(fault);
    else group.lost = true;
    if (fault.last) {
      this.#partial.delete(key);
      const g = group;
      g.work = new Work(`iopf ${key}`, () => {
        this.#handle(g);
      });
      this.#queued.add(g);
      this.workqueue.queueWork(g.work);
    }
    this.#trace(dev, fault, recorded);
    return recorded;
  }

  /**
   * `iopf_queue_flush_dev` for one PASID (or every PASID without `pasid`):
   * partial groups are discarded, as Linux discards them; complete groups not
   * yet handled are answered invalid now, so nothing of the PASID reaches its
   * mm once this returns. Called when a bond ends.
   */
  flush(dev: IommuDevice, pasid?: HostPasid): void {
    this.#kernel.scheduler.atomic.mightSleep("iopf_queue_flush_dev");
    for (const [k, g] of this.#partial) if (g.dev === dev && (pasid === undefined || g.pasid === pasid)) this.#partial.delete(k);
    for (const g of [...this.#queued]) {
      if (g.dev !== dev || (pasid !== undefined && g.pasid !== pasid)) continue;
      if (g.work !== null) this.workqueue.cancelWork(g.work);
      this.#queued.delete(g);
      this.#answer(g, "invalid", "flushed");
    }
  }

  #handle(g: IopfGroup): void {
    if (!this.#queued.delete(g)) return;
    const why = this.#refuse(g);
    const pasid = g.pasid;
    if (why !== null || pasid === undefined) {
      this.#answer(g, "invalid", why ?? "request without PASID");
      return;
    }
    const mm = this.#resolve(g.dev, pasid);
    if (mm === null) {
      this.#answer(g, "invalid", "no bond for the PASID");
      return;
    }
    if (!mm.mmgetNotZero()) {
      this.#answer(g, "invalid", "mm exiting");
      return;
    }
    let failed: PageRequestFault | null = null;
    try {
      for (const f of g.faults) {
        if (mm.handleMmFault(f.addr, { write: f.write, exec: f.exec }) !== 0) {
          failed = f;
          break;
        }
      }
    } finally {
      // The handler's reference may be the last user: exit_mmap then runs here, as in Linux.
      mm.mmput();
    }
    this.#answer(g, failed === null ? "success" : "invalid", failed === null ? "resolved" : `fault at 0x${failed.addr.toString(16)} not resolved`);
  }

  #refuse(g: IopfGroup): string | null {
    if (g.lost) return "request not recorded";
    if (g.pasid === undefined) return "request without PASID";
    if (g.faults.some((f) => f.priv)) return "privileged request";
    return null;
  }

  #answer(g: IopfGroup, code: PageResponse["code"], why: string): void {
    this.#kernel.trace.emit("iopf.response", "IOMMU", { device: g.dev.name, ...(g.pasid === undefined ? {} : { hpasid: g.pasid }) }, {
      grpid: g.grpid,
      faults: g.faults.length,
      code,
      why,
    });
    this.#respond(g.dev, { pasid: g.pasid, grpid: g.grpid, code });
  }

  #trace(dev: IommuDevice, fault: PageRequestFault, queued: boolean): void {
    const addr = typeof fault.addr === "number" ? fault.addr : Number.NaN;
    this.#kernel.trace.emit("iopf.report", "IOMMU", { device: dev.name, ...(fault.pasid === undefined ? {} : { hpasid: fault.pasid }) }, {
      addr,
      grpid: fault.grpid,
      last: fault.last,
      queued,
    });
  }
}
