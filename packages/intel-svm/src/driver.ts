import { Errno, type Kernel, KernelError, Work, type Workqueue, isKernelError } from "@vsva/kernel";
import type { PhysMem } from "@vsva/iommu-hw";
import type { IoasidCore, IoasidSet } from "@vsva/ioasid";
import type {
  DevFeature,
  DomainAllocRequest,
  DriverDomain,
  IommuCap,
  IommuDevice,
  IommuCoreUplink,
  IommuOps,
  PageAllocator,
  PageResponse,
  SvaBindingOps,
  SvaMm,
} from "@vsva/iommu-core";
import { type DomainEnv, VtdNestingDomain, VtdPagingDomain } from "./domain.js";
import { IoasidFreeHandler } from "./ioasid-notifier.js";
import type { VtdMmio } from "./mmio.js";
import { NestedBinder } from "./nested.js";
import { type IoPageFaultHandler, PageRequestQueue } from "./prq.js";
import { VtdBlockedDomain, VtdIdentityDomain } from "./static-domains.js";
import { NativeSvm } from "./svm.js";
import { type VtdDevice, VtdHardware } from "./unit.js";

export interface IntelIommuOptions {
  /** Unit name in traces and logs (default "dmar0"). */
  readonly name?: string;
  /** The unit's registers. */
  readonly mmio: VtdMmio;
  /** The memory the unit reads (host RAM, or a guest's RAM for a vIOMMU). */
  readonly mem: PhysMem;
  /** Every page the driver puts in memory comes from here. */
  readonly pages: PageAllocator;
  readonly kernel: Kernel;
  readonly ioasid: IoasidCore;
  /** The set aux-domain default PASIDs come from; default a set of the driver's own with `hostPasidQuota`. */
  readonly hostSet?: IoasidSet;
  readonly hostPasidQuota?: number;
  /** See QueuedInvalidationOptions.poll: lets a deferred-invalidation unit progress while the driver waits. */
  readonly poll?: () => void;
}

/**
 * The Intel VT-d driver for one remapping unit (drivers/iommu/intel), as
 * iommu-core's {@link IommuOps}. `init()` brings the unit up; `shutdown()`
 * takes it down and gives back every page. Everything the driver knows it
 * learned from CAP/ECAP; everything it does reaches the unit through its
 * registers and the tables and queues it writes in memory.
 */
export class IntelIommu implements IommuOps {
  readonly name = "intel-iommu";
  readonly pasidBits: number;
  readonly hw: VtdHardware;
  readonly nested: NestedBinder;
  readonly prq: PageRequestQueue;
  readonly native: NativeSvm;
  readonly freeHandler: IoasidFreeHandler;
  readonly #ioasid: IoasidCore;
  readonly #o: IntelIommuOptions;
  #hostSet: IoasidSet | null = null;
  #ownsHostSet = false;
  /** The core's side of the contract, set when the core registers this driver. */
  #uplink: IommuCoreUplink | null = null;
  /** Recoverable faults of bound PASIDs go to the core (`iommu_report_device_fault`). */
  readonly #toCore: IoPageFaultHandler = { report: (dev, fault) => this.#uplink?.reportDeviceFault(dev, fault) ?? false };
  readonly #wq: Workqueue;
  readonly #prqWork: Work;

  /** Reads CAP/ECAP. ENODEV for a unit this driver cannot drive (no scalable mode, no QI...). */
  constructor(o: IntelIommuOptions) {
    this.#o = o;
    this.#ioasid = o.ioasid;
    this.hw = new VtdHardware({
      name: o.name ?? "dmar0",
      mmio: o.mmio,
      mem: o.mem,
      pages: o.pages,
      kernel: o.kernel,
      ...(o.poll === undefined ? {} : { poll: o.poll }),
    });
    this.pasidBits = this.hw.caps.pasidBits;
    this.nested = new NestedBinder(this.hw, o.ioasid);
    this.prq = new PageRequestQueue(this.hw, (d, pasid) => this.#route(d, pasid));
    this.native = new NativeSvm(this.hw, (d, pasid) => this.drainPageRequests(d, pasid));
    this.nested.drain = (d, pasid) => this.drainPageRequests(d, pasid);
    // A FREE teardown is reported to the core, which owns the binding record.
    this.freeHandler = new IoasidFreeHandler(this.hw, o.ioasid, this.nested, (domain, hpasid) => this.#uplink?.gpasidFreed(domain, hpasid));
    this.#wq = o.kernel.scheduler.createWorkqueue(`${this.hw.name}-prq`);
    this.#prqWork = new Work(`${this.hw.name}-prq`, () => this.processPageRequests());
  }

  /**
   * Brings the unit up (root table, invalidation queue, translation), the
   * page-request queue when the unit has PRS, the host IOASID set and the
   * IOASID notifier. ENOMEM/EIO/ENOSPC with everything undone.
   */
  init(): void {
    const hw = this.hw;
    hw.start();
    try {
      if (hw.caps.pageRequests) this.prq.enable();
      if (this.#o.hostSet !== undefined) this.#hostSet = this.#o.hostSet;
      else {
        this.#hostSet = this.#ioasid.allocSet(this, this.#o.hostPasidQuota ?? 256, "none");
        this.#ownsHostSet = true;
      }
      this.#ioasid.registerNotifier(null, this.freeHandler);
    } catch (e) {
      this.#dropHostSet();
      this.prq.disable();
      hw.stop();
      throw e;
    }
  }

  /** Takes the unit down. Devices should be released first; cannot fail. */
  shutdown(): void {
    if (!this.hw.started) return;
    try {
      this.#ioasid.unregisterNotifier(null, this.freeHandler);
    } catch {
      // Not registered: init failed half way.
    }
    for (const d of [...this.hw.devices]) this.hw.removeDevice(d.dev);
    this.hw.stop();
    this.prq.disable();
    this.#dropHostSet();
  }

  // --------------------------------------------------------------- IommuOps

  capable(cap: IommuCap): boolean {
    const c = this.hw.caps;
    switch (cap) {
      case "cache-coherency":
        return c.snoopControl;
      case "noexec":
        // Second-level entries have no execute-disable the driver uses (Linux answers false too).
        return false;
      case "nesting":
        return c.nesting && c.firstLevel && c.secondLevel;
    }
  }

  probeDevice(dev: IommuDevice): void {
    this.hw.kernel.faults.inject("vtd.probe-device");
    this.hw.addDevice(dev);
  }

  releaseDevice(dev: IommuDevice): void {
    if (!this.hw.hasDevice(dev)) return;
    this.hw.removeDevice(dev);
  }

  /** aux and sva need a PASID-capable device; sva and iopf need first level and page requests. */
  devFeatures(dev: IommuDevice): ReadonlySet<DevFeature> {
    const c = this.hw.caps;
    const out = new Set<DevFeature>();
    if (dev.pasidWidth > 0 && c.pasidBits > 0) {
      out.add("aux");
      if (c.firstLevel) out.add("sva");
    }
    if (c.pageRequests && dev.pasidWidth > 0) out.add("iopf");
    return out;
  }

  /** The core has checked `devFeatures`; the tables a feature needs already exist per device. ENODEV for a device not probed here. */
  enableFeature(dev: IommuDevice, _feature: DevFeature): void {
    this.hw.device(dev);
  }

  disableFeature(_dev: IommuDevice, _feature: DevFeature): void {
    // PASID tables and the page-request queue live as long as the device and the unit.
  }

  domainAlloc(req: DomainAllocRequest): DriverDomain {
    this.hw.kernel.faults.inject("vtd.domain-alloc");
    switch (req.type) {
      case "blocked":
        return new VtdBlockedDomain(this.hw);
      case "identity":
        return new VtdIdentityDomain(this.hw);
      default:
        if (req.nestingParent) {
          if (!this.capable("nesting")) throw new KernelError(Errno.EINVAL, `${this.hw.name} cannot nest`);
          return new VtdNestingDomain(this.#env(), this.nested, req.ioasidSet);
        }
        return new VtdPagingDomain(this.#env());
    }
  }

  /** EINVAL for an mm whose tables VT-d's first level cannot walk (anything but x86-64). */
  svaBind(dev: IommuDevice, mm: SvaMm): SvaBindingOps {
    if (mm.format !== undefined && mm.format.arch !== "x86-64") {
      throw new KernelError(Errno.EINVAL, `${mm.name}: VT-d's first level walks x86-64 tables, not ${mm.format.arch}`);
    }
    return this.native.bind(dev, mm);
  }

  /**
   * Answers a page request group a fault handler took (type 9 descriptor).
   * Cannot fail (the core's contract): a response for no pending group is
   * dropped and logged, so it never reaches the device.
   */
  pageResponse(dev: IommuDevice, response: PageResponse): void {
    try {
      this.prq.respond(dev.physical, response.pasid, response.grpid, response.code);
    } catch (e) {
      if (!isKernelError(e)) throw e;
      this.hw.warn("page-response", e.message);
    }
  }

  // ------------------------------------------------------- page requests

  /** `IommuOps.connect`: the core this driver reports recoverable faults and FREE teardowns to. */
  connect(uplink: IommuCoreUplink): void {
    this.#uplink = uplink;
  }


  /** The page-request interrupt: the queue is processed from a work item (the threaded handler). */
  pageRequestInterrupt(): void {
    this.#wq.queueWork(this.#prqWork);
  }

  /** Consumes the page-request queue now; returns the requests handled. */
  processPageRequests(): number {
    return this.prq.process();
  }

  /**
   * `intel_svm_drain_prq`: after a PASID's entry is cleared, every page
   * request for it still in flight is consumed (and answered "invalid": the
   * binding is gone), then an invalidation wait with page-request drain
   * makes sure requests the unit accepted earlier are in the queue, which is
   * consumed again. Groups still waiting for a handler's answer get "invalid".
   */
  drainPageRequests(d: VtdDevice, pasid: number): void {
    if (!this.prq.enabled) return;
    this.prq.forget(d, pasid);
    this.prq.process();
    if (this.hw.caps.pageDrain) this.hw.flushBatch("prq-drain", this.hw.drainDescs(d, pasid), true);
    this.prq.process();
  }

  // ------------------------------------------------------------- internals

  #route(d: VtdDevice, pasid: number | undefined): IoPageFaultHandler | null {
    if (pasid === undefined) return null;
    const svm = this.nested.svmOf(pasid);
    if (svm !== undefined && !svm.defunct && svm.devs.has(d.dev)) return this.#toCore;
    return this.native.isBound(d, pasid) ? this.#toCore : null;
  }

  #env(): DomainEnv {
    if (this.#hostSet === null) throw new KernelError(Errno.ENODEV, `${this.hw.name} is not initialised`);
    return { hw: this.hw, ioasid: this.#ioasid, hostSet: this.#hostSet };
  }

  #dropHostSet(): void {
    if (this.#hostSet !== null && this.#ownsHostSet) this.#ioasid.setPut(this.#hostSet);
    this.#hostSet = null;
    this.#ownsHostSet = false;
  }
}
