import { Errno, KernelError, Work, type Workqueue } from "@vsva/kernel";
import type {
  DevFeature,
  DomainAllocRequest,
  DriverDomain,
  IommuCap,
  IommuDevice,
  IommuCoreUplink,
  IommuOps,
  PageResponse,
  SvaBindingOps,
  SvaMm,
} from "@vsva/iommu-core";
import { SmmuNestingDomain, SmmuS1Domain, SmmuS2Domain } from "./domain.js";
import { type IoPageFaultHandler, PageRequests } from "./prq.js";
import { SmmuHardware, type SmmuHardwareOptions, type SmmuMaster } from "./smmu.js";
import { SmmuBlockedDomain, SmmuIdentityDomain } from "./static-domains.js";
import { NativeSva } from "./sva.js";

/** The hardware's options with the unit name optional (default "smmu0"). */
export interface ArmSmmuV3Options extends Omit<SmmuHardwareOptions, "name"> {
  readonly name?: string;
}

/**
 * The Arm SMMUv3 driver for one unit (drivers/iommu/arm/arm-smmu-v3), as
 * iommu-core's {@link IommuOps}. `init()` brings the unit up; `shutdown()`
 * takes it down and gives back every page. Everything it knows it learned
 * from IDR0–IDR5; everything it does reaches the unit through its registers
 * and the stream table, CD tables and queues it writes in memory.
 *
 * Paging domains are stage 1 when the unit has it (like Linux), stage 2
 * otherwise or when asked for a nesting parent. Interrupts: the host wires
 * the unit's event-queue, PRI-queue and GERROR interrupts to
 * {@link eventInterrupt}, {@link pageRequestInterrupt} and {@link gerrorInterrupt}.
 */
export class ArmSmmuV3 implements IommuOps {
  readonly name = "arm-smmu-v3";
  readonly pasidBits: number;
  readonly hw: SmmuHardware;
  readonly sva: NativeSva;
  readonly prq: PageRequests;
  /** The core's side of the contract, set when the core registers this driver. */
  #uplink: IommuCoreUplink | null = null;
  /** Recoverable faults of bound PASIDs go to the core (`iommu_report_device_fault`). */
  readonly #toCore: IoPageFaultHandler = { report: (dev, fault) => this.#uplink?.reportDeviceFault(dev, fault) ?? false };
  readonly #wq: Workqueue;
  readonly #prqWork: Work;
  readonly #evtWork: Work;

  /** Reads the ID registers. ENODEV for a unit this driver cannot drive. */
  constructor(o: ArmSmmuV3Options) {
    this.hw = new SmmuHardware({ ...o, name: o.name ?? "smmu0" });
    const c = this.hw.caps;
    this.pasidBits = c.s1 ? c.ssidBits : 0;
    this.prq = new PageRequests(this.hw, (m, ssid) => this.#route(m, ssid));
    this.sva = new NativeSva(this.hw, (m, ssid) => this.drainPageRequests(m, ssid), (m, ssid) => this.#quiesceStalls(m, ssid));
    this.#wq = o.kernel.scheduler.createWorkqueue(`${this.hw.name}-irq`);
    this.#prqWork = new Work(`${this.hw.name}-priq`, () => this.processPageRequests());
    this.#evtWork = new Work(`${this.hw.name}-evtq`, () => this.processEvents());
  }

  /** Brings the unit up (see SmmuHardware.start). ENOMEM/ETIMEDOUT/EIO with everything undone. */
  init(): void {
    this.hw.start();
  }

  /** Takes the unit down. Cannot fail; devices still probed are released first. */
  shutdown(): void {
    if (!this.hw.started) return;
    for (const m of [...this.hw.masters]) this.releaseDevice(m.dev);
    this.hw.stop();
  }

  // --------------------------------------------------------------- IommuOps

  capable(cap: IommuCap): boolean {
    const c = this.hw.caps;
    switch (cap) {
      case "cache-coherency":
        return c.coherent;
      case "noexec":
        // Stage-1 and stage-2 leaves carry XN.
        return true;
      case "nesting":
        // A nesting parent is a stage-2 domain; what it can offer a guest is empty (the 2020 vSVA VFIO series: no SMMUv3 nesting format).
        return c.s1 && c.s2;
    }
  }

  /** `arm_smmu_probe_device`. ENODEV (StreamID beyond the table), EBUSY, ENOMEM. */
  probeDevice(dev: IommuDevice): void {
    this.hw.kernel.faults.inject("smmu.probe-device");
    this.hw.addMaster(dev);
  }

  releaseDevice(dev: IommuDevice): void {
    if (!this.hw.hasMaster(dev)) return;
    const m = this.hw.master(dev);
    this.prq.stalls.terminateMaster(m);
    this.prq.forgetMaster(m);
    this.sva.forgetMaster(m);
    this.hw.removeMaster(dev);
  }

  /** sva needs stage 1 and SubstreamIDs on both sides; iopf needs PRI too. No aux domains on SMMUv3. */
  devFeatures(dev: IommuDevice): ReadonlySet<DevFeature> {
    const c = this.hw.caps;
    const out = new Set<DevFeature>();
    if (dev.pasidWidth > 0 && c.ssidBits > 0 && c.s1) out.add("sva");
    // arm_smmu_master_iopf_supported: PRI, or a master whose transactions stall.
    const stalls = this.hw.hasMaster(dev) && this.hw.master(dev).stallEnabled;
    if ((c.pri || stalls) && dev.pasidWidth > 0) out.add("iopf");
    return out;
  }

  /** The core has checked `devFeatures`; the tables a feature needs already exist per device. ENODEV for a device not probed here. */
  enableFeature(dev: IommuDevice, _feature: DevFeature): void {
    this.hw.master(dev);
  }

  disableFeature(_dev: IommuDevice, _feature: DevFeature): void {
    // CD tables and the PRI queue live as long as the device and the unit.
  }

  domainAlloc(req: DomainAllocRequest): DriverDomain {
    const hw = this.hw;
    hw.kernel.faults.inject("smmu.domain-alloc");
    switch (req.type) {
      case "blocked":
        return new SmmuBlockedDomain(hw);
      case "identity":
        return new SmmuIdentityDomain(hw);
      default:
        if (req.nestingParent) {
          if (!this.capable("nesting")) throw new KernelError(Errno.EINVAL, `${hw.name} cannot nest`);
          return new SmmuNestingDomain(hw);
        }
        return hw.caps.s1 ? new SmmuS1Domain(hw) : new SmmuS2Domain(hw);
    }
  }

  svaBind(dev: IommuDevice, mm: SvaMm): SvaBindingOps {
    return this.sva.bind(dev, mm);
  }

  /**
   * Answers a fault a handler took: CMD_RESUME for a master whose
   * transactions stall (retry on success, abort otherwise), PRI_RESP for
   * the others. Cannot fail: a response for nothing pending is logged and dropped.
   */
  pageResponse(dev: IommuDevice, response: PageResponse): void {
    const m = this.hw.hasMaster(dev) ? this.hw.master(dev) : null;
    const sent = m !== null && (m.stallEnabled ? this.prq.stalls.respond(m, response) : this.prq.respond(m, response));
    if (!sent) {
      this.hw.warn("page-response", `no page request group ${response.grpid} pending for ${dev.toString()} PASID ${response.pasid ?? "none"}`);
    }
  }

  // ------------------------------------------------------- interrupts, queues

  /** `IommuOps.connect`: the core this driver reports recoverable faults to. */
  connect(uplink: IommuCoreUplink): void {
    this.#uplink = uplink;
  }


  /** The PRI-queue interrupt: the queue is processed from a work item (the threaded handler). */
  pageRequestInterrupt(): void {
    this.#wq.queueWork(this.#prqWork);
  }

  /** The event-queue interrupt. */
  eventInterrupt(): void {
    this.#wq.queueWork(this.#evtWork);
  }

  /** GERROR: command-queue errors are handled where commands are issued; the rest is logged. */
  gerrorInterrupt(): void {
    this.hw.warn("gerror", "global error interrupt");
  }

  processPageRequests(): number {
    return this.prq.process();
  }

  processEvents(): number {
    return this.prq.processEvents();
  }

  /**
   * After a SubstreamID's CD is cleared (`arm_smmu_sva_unbind` then the
   * fault-queue flush): pending groups are denied, then whatever the PRI
   * and event queues still hold is consumed; requests for the gone CD find
   * no binding and are denied.
   */
  drainPageRequests(m: SmmuMaster, ssid: number): void {
    this.prq.forget(m, ssid);
    this.prq.process();
    this.prq.processEvents();
  }

  /**
   * Before a SubstreamID's CD is cleared or quietened: stalls the unit has
   * reported are brought in from the event queue, and every stall of that
   * context is aborted, so no transaction stays held for a context that is
   * about to go (and none is retried against the next one).
   */
  #quiesceStalls(m: SmmuMaster, ssid: number): void {
    if (!m.stallEnabled) return;
    this.prq.processEvents();
    this.prq.stalls.abortSsid(m, ssid);
  }

  #route(m: SmmuMaster, ssid: number | undefined): IoPageFaultHandler | null {
    if (ssid === undefined) return null;
    return this.sva.isBound(m, ssid) ? this.#toCore : null;
  }
}
