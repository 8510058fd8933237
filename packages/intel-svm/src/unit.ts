import { Errno, type Kernel, KernelBug, KernelError, isKernelError } from "@vsva/kernel";
import { PasidEntry, type PhysMem, Pgtt, PrsReg, RegOffset } from "@vsva/iommu-hw";
import type { IommuDevice, PageAllocator } from "@vsva/iommu-core";
import { type VtdCaps, checkCaps, readCaps } from "./caps.js";
import { ContextTables } from "./context.js";
import { contextCacheDevice, devTlb, devTlbPasid, fenceWait, iotlbDomain, pasidCachePasid, piotlbPasid } from "./descriptors.js";
import { DomainIds } from "./did.js";
import { globalCommand } from "./gcmd.js";
import type { VtdMmio } from "./mmio.js";
import { PasidTable } from "./pasid-table.js";
import { QueuedInvalidation } from "./qi.js";
import "./trace-events.js";

/** Per physical device: its requester ID and PASID table (`device_domain_info`). */
export interface VtdDevice {
  readonly dev: IommuDevice;
  readonly sid: number;
  /**
   * PFSID for device-TLB invalidations: with ECAP.DIT the source ID of the
   * device's physical function (`pci_dev_id(pci_physfn())`, which is the
   * device itself unless it is an SR-IOV VF; the model has no VFs), 0
   * without (drivers/iommu/intel/iommu.c: iommu_enable_dev_iotlb()).
   */
  readonly pfsid: number;
  readonly table: PasidTable;
  /**
   * DID of the domain the device's requests without PASID use (its RID_PASID
   * entry), which context-cache invalidations of the device carry
   * (`info->domain->iommu_did` in intel_iommu_enable_pasid()); 0 before any.
   */
  ridPasidDid: number;
}

export interface VtdHardwareOptions {
  readonly name: string;
  readonly mmio: VtdMmio;
  /** The memory the unit reads its tables and queues from. */
  readonly mem: PhysMem;
  readonly pages: PageAllocator;
  readonly kernel: Kernel;
  /** See {@link QueuedInvalidationOptions.poll}. */
  readonly poll?: () => void;
}

/** Whole address space for a device-TLB range. */
export const ALL_ORDER = 52;

/**
 * One VT-d unit as the driver holds it (`struct intel_iommu`): its
 * capabilities, root and context tables, invalidation queue, domain IDs and
 * the devices behind it with their PASID tables, plus the PASID-entry
 * programming rules shared by every kind of domain (linux-anchor §4: setup
 * refuses a present entry with EBUSY and flushes in caching mode; teardown
 * clears the entry and flushes the PASID cache, the IOTLB and the device TLB).
 */
export class VtdHardware {
  readonly name: string;
  readonly caps: VtdCaps;
  readonly mmio: VtdMmio;
  readonly mem: PhysMem;
  readonly pages: PageAllocator;
  readonly kernel: Kernel;
  readonly qi: QueuedInvalidation;
  readonly dids: DomainIds;
  readonly #devices = new Map<IommuDevice, VtdDevice>();
  #ctx: ContextTables | null = null;

  /** Reads and checks the capabilities. ENODEV for a unit this driver cannot run. */
  constructor(o: VtdHardwareOptions) {
    this.name = o.name;
    this.mmio = o.mmio;
    this.mem = o.mem;
    this.pages = o.pages;
    this.kernel = o.kernel;
    this.caps = readCaps(o.mmio);
    checkCaps(this.caps, o.name);
    this.dids = new DomainIds(this.caps.domainIds);
    this.qi = new QueuedInvalidation({ name: o.name, mmio: o.mmio, mem: o.mem, pages: o.pages, log: o.kernel.log, ...(o.poll === undefined ? {} : { poll: o.poll }) });
  }

  /**
   * Brings the unit up: root table (SRTP, scalable mode), queued
   * invalidation, then translation. Each step is one global command (A1.5).
   * ENOMEM/EIO with everything undone.
   */
  start(): void {
    this.kernel.faults.inject("vtd.init");
    const ctx = new ContextTables(this.mem, this.pages);
    try {
      ctx.install(this.mmio);
      this.qi.enable();
      try {
        globalCommand(this.mmio, "TE");
      } catch (e) {
        this.qi.disable();
        throw e;
      }
    } catch (e) {
      ctx.free();
      throw e;
    }
    this.#ctx = ctx;
    this.kernel.trace.emit("vtd-drv.start", "IOMMU", {}, { unit: this.name, pasidBits: this.caps.pasidBits, nesting: this.caps.nesting });
  }

  /** Translation off, queue off, tables freed. Devices must be gone. Cannot fail. */
  stop(): void {
    const ctx = this.#ctx;
    if (ctx === null) return;
    try {
      globalCommand(this.mmio, "TE", false);
    } catch (e) {
      this.warn("stop", String(e));
    }
    this.qi.disable();
    ctx.free();
    this.#ctx = null;
  }

  get started(): boolean {
    return this.#ctx !== null;
  }

  // ------------------------------------------------------------------ devices

  /** The state of a physical device (or a sub-device's parent). ENODEV when not probed here. */
  device(dev: IommuDevice): VtdDevice {
    const d = this.#devices.get(dev.physical);
    if (d === undefined) throw new KernelError(Errno.ENODEV, `${dev.toString()} is not behind ${this.name}`);
    return d;
  }

  hasDevice(dev: IommuDevice): boolean {
    return this.#devices.has(dev.physical);
  }

  get devices(): IterableIterator<VtdDevice> {
    return this.#devices.values();
  }

  /**
   * Takes a physical device on: its PASID table (sized to the smaller of its
   * and the unit's PASID width) and its scalable-mode context entry. EBUSY,
   * ENOMEM with nothing left behind.
   */
  addDevice(dev: IommuDevice): void {
    const ctx = this.#context();
    if (dev.isSubDevice) throw new KernelBug(`${dev.toString()}: sub-devices are not probed`);
    if (this.#devices.has(dev)) throw new KernelError(Errno.EBUSY, `${dev.toString()} is already probed on ${this.name}`);
    const bits = Math.min(dev.pasidWidth, this.caps.pasidBits);
    const table = new PasidTable(this.mem, this.pages, bits);
    try {
      ctx.set(dev.sid, {
        pasidDir: table.dir,
        pdts: table.pdts,
        deviceTlb: this.caps.deviceTlb,
        pageRequests: this.caps.pageRequests && bits > 0,
      });
    } catch (e) {
      table.free();
      throw e;
    }
    this.#devices.set(dev, { dev, sid: dev.sid, pfsid: this.caps.deviceTlbThrottling ? dev.sid : 0, table, ridPasidDid: 0 });
    // A context entry going from not-present to present needs no flush unless
    // the unit caches not-present entries, which it tags with DID 0
    // (domain_context_mapping_one()).
    if (this.caps.cachingMode) this.#flush("context", [contextCacheDevice(0, dev.sid)]);
  }

  /** Clears the context entry, flushes the context cache and frees the PASID table. Cannot fail. */
  removeDevice(dev: IommuDevice): void {
    const d = this.#devices.get(dev);
    if (d === undefined) return;
    this.#ctx?.clear(d.sid);
    // With the DID the context was used with. Linux v5.10 reads it with
    // context_domain_id(), which in scalable mode picks up RID_PASID bits
    // (0); later kernels use the device's domain ID, as here
    // (drivers/iommu/intel/iommu.c: domain_context_clear_one()).
    this.#flush("context", [contextCacheDevice(d.ridPasidDid, d.sid)]);
    this.#devices.delete(dev);
    d.table.free();
  }

  // ------------------------------------------------------------ PASID entries

  /**
   * Writes a PASID entry on a physical device. EBUSY when present already
   * (every `intel_pasid_setup_*`); ENOMEM when its PASID table cannot be had.
   * In caching mode the unit may hold the not-present entry, so the PASID
   * cache and the PASID's IOTLB entries are flushed.
   */
  setupPasid(d: VtdDevice, pasid: number, entry: Uint32Array): void {
    if (d.table.isPresent(pasid)) throw new KernelError(Errno.EBUSY, `PASID ${pasid} of ${d.dev.toString()} is already set up`);
    if (pasid !== 0 && this.#context().enablePasid(d.sid)) this.#flush("context", [contextCacheDevice(d.ridPasidDid, d.sid)]);
    d.table.write(pasid, entry);
    if (pasid === 0) d.ridPasidDid = PasidEntry.get(entry, "DID");
    if (this.caps.cachingMode) {
      const did = PasidEntry.get(entry, "DID");
      this.#flush("pasid-setup", [pasidCachePasid(did, pasid), piotlbPasid(did, pasid)]);
    } else if (this.caps.writeBufferFlush) {
      this.#flushWriteBuffer();
    }
  }

  /**
   * Clears a PASID entry and makes the unit and the device forget it
   * (`intel_pasid_tear_down_entry` plus what seed 000's review asked for):
   * PASID-cache invalidation, then PASID-based IOTLB for first-level and
   * nested entries or domain-selective IOTLB for second-level-only ones
   * (type 6 does not reach them, A3.6), then the device TLB, skipped in
   * caching mode where the vIOMMU's device TLB is the host's concern.
   * Cannot fail: a queue error is logged.
   */
  tearDownPasid(d: VtdDevice, pasid: number): void {
    const e = d.table.read(pasid);
    if (e === null || PasidEntry.get(e, "P") === 0) return;
    const did = PasidEntry.get(e, "DID");
    const pgtt = PasidEntry.get(e, "PGTT");
    d.table.clear(pasid);
    const descs = [pasidCachePasid(did, pasid), pgtt === Pgtt.SECOND_LEVEL ? iotlbDomain(did) : piotlbPasid(did, pasid)];
    if (this.caps.deviceTlb && !this.caps.cachingMode) descs.push(pasid === 0 ? devTlb(d, 0, ALL_ORDER) : devTlbPasid(d, pasid, 0, ALL_ORDER));
    this.#flush("pasid-teardown", descs);
    this.kernel.trace.emit("vtd-drv.pasid-teardown", "IOMMU", { device: d.dev.name, hpasid: pasid, domain: did }, { unit: this.name, pgtt });
  }

  /**
   * The hardware part of a page-request drain for (device, PASID) (VT-d spec
   * 7.10, drivers/iommu/intel/svm.c: intel_svm_drain_prq()): a fence, a
   * PASID-based IOTLB and a PASID-based device-TLB invalidation, after which
   * the caller submits a wait with PD. The IOTLB one carries the DID of the
   * device's domain, as Linux's does.
   */
  drainDescs(d: VtdDevice, pasid: number): Uint32Array[] {
    const descs = [fenceWait(), piotlbPasid(d.ridPasidDid, pasid)];
    if (this.caps.deviceTlb) descs.push(devTlbPasid(d, pasid, 0, 0));
    return descs;
  }

  /** Submits a batch whose failure the caller cannot act on (teardown paths): logged, rate-limited. */
  flushBatch(what: string, descs: readonly Uint32Array[], drain = false): void {
    this.#flush(what, descs, drain);
  }

  /** Pages the unit's tables hold beyond device PASID tables (root + context tables). */
  get contextPages(): number {
    return this.#ctx === null ? 0 : 1 + this.#ctx.tablePages;
  }

  /** Clears PRS bits software has handled (RW1C). */
  clearPrs(ppr: boolean, pro: boolean): void {
    const v = PrsReg.alloc();
    PrsReg.set(v, "PPR", ppr ? 1 : 0);
    PrsReg.set(v, "PRO", pro ? 1 : 0);
    this.mmio.mmioWrite32(RegOffset.PRS, v[0] ?? 0);
  }

  warn(key: string, message: string): boolean {
    return this.kernel.log.warn(`${this.name}.${key}`, `${this.name}: ${message}`, "IOMMU");
  }

  #context(): ContextTables {
    if (this.#ctx === null) throw new KernelError(Errno.ENODEV, `${this.name} is not started`);
    return this.#ctx;
  }

  #flush(what: string, descs: readonly Uint32Array[], drain = false): void {
    try {
      this.qi.submit(descs, drain);
    } catch (e) {
      if (!isKernelError(e)) throw e;
      this.warn(`flush-${what}`, `${what} flush failed: ${e.message}`);
    }
  }

  #flushWriteBuffer(): void {
    try {
      globalCommand(this.mmio, "WBF");
    } catch (e) {
      this.warn("wbf", String(e));
    }
  }
}
