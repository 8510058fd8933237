import { Errno, type Kernel, KernelBug, KernelError, type SourceId, type TraceIds, type TraceKind, type TracePayload, isKernelError } from "@vsva/kernel";
import { IoasidCore } from "@vsva/ioasid";
import { IommuDevice } from "./device.js";
import { BlockedDomain, IdentityDomain, type IommuDomain, NestedDomain, PagingDomain } from "./domain.js";
import { IommuGroup } from "./group.js";
import { IopfQueue } from "./iopf.js";
import { Iommu } from "./iommu.js";
import { type DevFeature, type DomainAllocRequest, IOMMU_PROT_KNOWN, type IommuOps, IommuProt, type NestingParentOps, type PageRequestFault, type DeviceFaultHandler } from "./ops.js";
import { iommuPgsize, pgsizesFromBitmap } from "./pgsize.js";
import { IommuSva } from "./sva.js";
import "./trace-events.js";
import { type CacheInvalidateInfo, decodeCacheInvalidateInfo } from "./uapi/cache-invalidate.js";
import { InvGranularity } from "./uapi/constants.js";
import { type GpasidBindData, type UapiDecodeOptions, decodeGpasidBindData } from "./uapi/gpasid-bind.js";
import type { NestingInfo } from "./uapi/nesting-info.js";

export interface IommuCoreOptions {
  readonly kernel: Kernel;
  /**
   * The domain each group starts in (`iommu.passthrough`): "dma" translates
   * through a DMA-API paging domain, "identity" passes through, "none" leaves
   * groups unattached until a user attaches them (the v5.10 no-default case).
   */
  readonly defaultDomain?: "dma" | "identity" | "none";
  /**
   * The host's IOASID namespace, where SVA takes its PASIDs. Pass the one
   * VFIO and KVM use so all PASIDs come from one space; without it the core
   * makes a private one (fine for tests of the core alone).
   */
  readonly ioasid?: IoasidCore;
  /** PASIDs SVA may hold at once (the quota of its IOASID set). Default 1024. */
  readonly svaPasidQuota?: number;
  /** Names this core's workqueues when several cores share a kernel (default "iommu"). */
  readonly name?: string;
}

export interface ProbeOptions {
  readonly name: string;
  readonly sid: SourceId;
  /** PASID capability width in bits (0 = no PASID capability). */
  readonly pasidWidth?: number;
  /** Devices with the same key share a group (no ACS isolation between them); default: the device alone. */
  readonly isolation?: string;
}

export interface EnableFeatureOptions {
  /** `iommu_sva_device_init(dev, features, max_pasid)` of the 2017 SVA API series (Brucker, "iommu/process" RFCv2): 0 or absent = the PCI limit. */
  readonly maxPasid?: number;
}

type IommuTraceKind = Extract<TraceKind, `iommu.${string}`>;

type NestingParent = PagingDomain & { readonly driver: NestingParentOps };

/**
 * The IOMMU core of one kernel (drivers/iommu/iommu.c): registers IOMMUs,
 * probes devices into groups with default domains, allocates and attaches
 * domains with the kernel's rules, and does the shared work of map/unmap and
 * of the nesting UAPI so drivers only implement primitives.
 */
export class IommuCore {
  readonly kernel: Kernel;
  readonly ioasid: IoasidCore;
  /** Shared virtual addressing: binds mms to devices (`iommu_sva_bind_device`). */
  readonly sva: IommuSva;
  /** The IO page fault queue page requests go through. */
  readonly iopf: IopfQueue;
  readonly #defaultDomain: "dma" | "identity" | "none";
  readonly #iommus: Iommu[] = [];
  readonly #groups = new Map<string, IommuGroup>();
  readonly #devices = new Set<IommuDevice>();
  readonly #faultHandlers = new Map<IommuDevice, DeviceFaultHandler>();
  /** The IO page fault queue as a device fault handler (`iommu_queue_iopf`). */
  readonly #iopfHandler: DeviceFaultHandler = (dev, fault) => this.reportPageRequest(dev, fault);
  #nextIommuId = 1;
  #nextGroupId = 0;
  #nextDomainId = 1;
  #liveDomains = 0;

  constructor(opts: IommuCoreOptions) {
    this.kernel = opts.kernel;
    this.#defaultDomain = opts.defaultDomain ?? "dma";
    const name = opts.name ?? "iommu";
    const k = opts.kernel;
    this.ioasid = opts.ioasid ?? new IoasidCore({ scheduler: k.scheduler, trace: k.trace, faults: k.faults, log: k.log, name: `${name}-pasid` });
    this.iopf = new IopfQueue({
      kernel: k,
      name: `${name}-iopf`,
      resolve: (dev, pasid) => this.sva.faultTarget(dev, pasid),
      respond: (dev, response) => {
        // The device may have gone since its request was queued; nobody is left to answer.
        if (this.#devices.has(dev)) dev.iommu?.ops.pageResponse(dev, response);
      },
    });
    this.sva = new IommuSva({
      kernel: k,
      ioasid: this.ioasid,
      iopf: this.iopf,
      isProbed: (dev) => this.#devices.has(dev),
      ...(opts.svaPasidQuota === undefined ? {} : { pasidQuota: opts.svaPasidQuota }),
    });
  }

  /**
   * `iommu_report_device_fault` for a page request, from the driver's page
   * request handler (atomic context is fine: the request is queued and handled
   * in a work item, and answered through the driver's `pageResponse`). `dev`
   * is the physical device that sent it. Never throws for what the hardware
   * reported; returns false when the request was refused (its group is
   * answered invalid) or `dev` is not a device of this core (dropped).
   */
  reportPageRequest(dev: IommuDevice, fault: PageRequestFault): boolean {
    if (!this.#devices.has(dev) || dev.isSubDevice) return false;
    return this.iopf.report(dev, fault);
  }

  /**
   * `iommu_register_device_fault_handler`: recoverable faults of `dev` (a
   * physical device of this core) go to `handler`. Enabling SVA registers the
   * IO page fault queue; VFIO can register its own to forward guest faults.
   * EBUSY when one is registered; ENODEV for a device not probed here; EINVAL
   * for a sub-device (faults come from the physical device).
   */
  registerDeviceFaultHandler(dev: IommuDevice, handler: DeviceFaultHandler): void {
    if (!this.#devices.has(dev)) throw new KernelError(Errno.ENODEV, `${dev.name} is not a device of this IOMMU core`);
    if (dev.isSubDevice) throw new KernelError(Errno.EINVAL, `${dev.name} is a sub-device; faults come from ${dev.physical.name}`);
    if (this.#faultHandlers.has(dev)) throw new KernelError(Errno.EBUSY, `${dev.name} already has a fault handler`);
    this.#faultHandlers.set(dev, handler);
  }

  /** Removes `dev`'s fault handler, if any; cannot fail. */
  unregisterDeviceFaultHandler(dev: IommuDevice): void {
    this.#faultHandlers.delete(dev);
  }

  /** `iommu_report_device_fault`, reached by drivers through their uplink. */
  reportDeviceFault(dev: IommuDevice, fault: PageRequestFault): boolean {
    const handler = this.#faultHandlers.get(dev);
    return handler === undefined ? false : handler(dev, fault);
  }

  get iommus(): readonly Iommu[] {
    return this.#iommus;
  }

  get devices(): ReadonlySet<IommuDevice> {
    return this.#devices;
  }

  /** Domains allocated and not yet freed: a leak check for teardown. */
  get liveDomains(): number {
    return this.#liveDomains;
  }

  groups(): IommuGroup[] {
    return [...this.#groups.values()];
  }

  /** `iommu_device_register`. */
  registerIommu(name: string, ops: IommuOps): Iommu {
    if (this.#iommus.some((i) => i.name === name)) throw new KernelError(Errno.EEXIST, `IOMMU ${name} is already registered`);
    const iommu = new Iommu(this.#nextIommuId++, name, ops);
    this.#iommus.push(iommu);
    ops.connect({ reportDeviceFault: (dev, fault) => this.reportDeviceFault(dev, fault) });
    return iommu;
  }

  // ---------------------------------------------------------------- devices

  /**
   * Puts a physical device behind `iommu`: driver probe, group membership, and
   * for a new group its default domain. On any failure everything done is
   * undone and the error returned (ENODEV, ENOMEM...).
   */
  probeDevice(iommu: Iommu, opts: ProbeOptions): IommuDevice {
    const width = opts.pasidWidth ?? 0;
    if (!Number.isInteger(width) || width < 0 || width > 20) throw new KernelError(Errno.EINVAL, `PASID width ${width} outside 0..20`);
    if ([...this.#devices].some((d) => !d.isSubDevice && d.sid === opts.sid && d.iommu === iommu)) {
      throw new KernelError(Errno.EEXIST, `requester ID ${opts.sid} is already probed on ${iommu.name}`);
    }
    this.kernel.faults.inject("iommu.probe-device");
    const dev = new IommuDevice(opts.name, opts.sid, width, null);
    iommu.ops.probeDevice(dev);
    dev.iommu = iommu;
    const key = `${iommu.id}:${opts.isolation ?? `sid-${opts.sid}`}`;
    let group = this.#groups.get(key);
    const newGroup = group === undefined;
    try {
      if (group === undefined) {
        this.kernel.faults.inject("iommu.group-alloc");
        group = new IommuGroup(this.#nextGroupId++, iommu, key);
        group.devices.push(dev);
        dev.group = group;
        this.#setupDefaultDomain(group);
        this.#groups.set(key, group);
      } else {
        group.devices.push(dev);
        dev.group = group;
        if (group.domain !== null) this.#attachDevTo(group.domain, dev);
      }
    } catch (e) {
      if (group !== undefined) {
        group.devices.splice(group.devices.indexOf(dev), 1);
        if (newGroup) this.#teardownDefaultDomain(group);
      }
      dev.group = null;
      dev.iommu = null;
      iommu.ops.releaseDevice(dev);
      throw e;
    }
    this.#devices.add(dev);
    this.#trace("iommu.probe", { device: dev.name }, { iommu: iommu.name, group: group.id });
    return dev;
  }

  /**
   * A sub-device (mdev) of a physical device. It is attached only as aux
   * (through {@link attachSubDevice}) and binds PASIDs on its parent.
   */
  addSubDevice(parent: IommuDevice, name: string): IommuDevice {
    if (!this.#devices.has(parent)) throw new KernelError(Errno.ENODEV, `${parent.name} is not probed`);
    this.kernel.faults.inject("iommu.subdev-alloc");
    const dev = new IommuDevice(name, parent.sid, parent.pasidWidth, parent);
    dev.iommu = parent.iommu;
    this.#devices.add(dev);
    return dev;
  }

  /**
   * Takes a device away (hot-unplug, driver unbind). Cannot fail: whatever is
   * still bound or attached is torn down first, as the kernel must when a
   * device disappears under a careless user.
   */
  releaseDevice(dev: IommuDevice): void {
    if (!this.#devices.has(dev)) return;
    const children = [...this.#devices].filter((d) => d.parent === dev);
    for (const c of children) this.releaseDevice(c);
    this.#unbindAllOf(dev);
    this.sva.releaseDevice(dev);
    if (dev.isSubDevice) {
      if (dev.auxDomain !== null) this.detachSubDevice(dev.auxDomain, dev);
      this.#devices.delete(dev);
      return;
    }
    this.iopf.flush(dev);
    for (const f of [...dev.features]) this.#disableFeature(dev, f);
    const group = dev.group;
    const iommu = dev.iommu;
    if (group !== null) {
      if (group.domain !== null) this.#detachDevFrom(group.domain, dev);
      group.devices.splice(group.devices.indexOf(dev), 1);
      if (group.devices.length === 0) {
        if (group.domain !== null && group.domain !== group.defaultDomain) {
          // The user's domain loses its last device; the user still frees it.
          group.domain.groups.delete(group);
        }
        this.#teardownDefaultDomain(group);
        this.#groups.delete(group.isolation);
      }
    }
    iommu?.ops.releaseDevice(dev);
    this.#faultHandlers.delete(dev);
    this.#devices.delete(dev);
    this.#trace("iommu.release", { device: dev.name }, { iommu: iommu?.name ?? "", group: group?.id ?? -1 });
  }

  /**
   * `iommu_dev_enable_feature`. For "sva" this also fixes the device's PASID
   * limit (the 2017 SVA API series): min(2^pasidWidth, 2^iommu.pasidBits, maxPasid if given).
   * ENODEV: the device or its IOMMU lacks the feature (no PASID capability);
   * EINVAL: a sub-device (features belong to the physical device) or a bad
   * limit; EBUSY: already enabled.
   */
  enableFeature(dev: IommuDevice, feature: DevFeature, opts: EnableFeatureOptions = {}): void {
    const iommu = this.#iommuOf(dev);
    if (dev.isSubDevice) throw new KernelError(Errno.EINVAL, `${dev.name} is a sub-device; enable features on ${dev.physical.name}`);
    if (dev.features.has(feature)) throw new KernelError(Errno.EBUSY, `${feature} already enabled on ${dev.name}`);
    if (!iommu.ops.devFeatures(dev).has(feature)) throw new KernelError(Errno.ENODEV, `${dev.name} does not support ${feature}`);
    let maxPasids = 0;
    if (feature === "sva") {
      if (dev.pasidWidth === 0 || iommu.ops.pasidBits === 0) throw new KernelError(Errno.ENODEV, `${dev.name} has no PASID support`);
      const want = opts.maxPasid ?? 0;
      if (!Number.isInteger(want) || want < 0) throw new KernelError(Errno.EINVAL, `max PASID ${want}`);
      maxPasids = Math.min(2 ** dev.pasidWidth, 2 ** iommu.ops.pasidBits, want === 0 ? Infinity : want);
    }
    iommu.ops.enableFeature(dev, feature);
    dev.features.add(feature);
    if (feature === "sva") dev.maxPasids = maxPasids;
    // Recoverable faults of SVA (or IOPF) devices go to the IO page fault queue
    // (iommu_queue_iopf), unless someone (VFIO) registered a handler first.
    if ((feature === "sva" || feature === "iopf") && !this.#faultHandlers.has(dev)) this.#faultHandlers.set(dev, this.#iopfHandler);
  }

  /** EBUSY while PASIDs are bound on the device or sub-devices are aux-attached; ENODEV when not enabled. */
  disableFeature(dev: IommuDevice, feature: DevFeature): void {
    if (!dev.features.has(feature)) throw new KernelError(Errno.ENODEV, `${feature} is not enabled on ${dev.name}`);
    if (feature === "sva" && (this.#boundOn(dev) || this.sva.hasBonds(dev))) throw new KernelError(Errno.EBUSY, `${dev.name} still has PASIDs bound`);
    if (feature === "aux" && [...this.#devices].some((d) => d.parent === dev && d.auxDomain !== null)) {
      throw new KernelError(Errno.EBUSY, `${dev.name} still has aux-attached sub-devices`);
    }
    this.#disableFeature(dev, feature);
  }

  // ---------------------------------------------------------------- domains

  /**
   * Allocates a domain on the IOMMU behind `dev`. ENODEV: a nesting parent on
   * an IOMMU that cannot nest (as DOMAIN_ATTR_NESTING was refused in v5.10);
   * ENOMEM; EINVAL when the driver returns a different kind or a bad geometry.
   */
  domainAlloc(dev: IommuDevice, req: DomainAllocRequest): IommuDomain {
    return this.#domainAlloc(this.#iommuOf(dev), req);
  }

  /** `iommu_domain_free`. The domain must be detached everywhere: freeing an attached domain is a kernel bug. */
  domainFree(domain: IommuDomain): void {
    if (domain.freed) throw new KernelBug(`domain ${domain.id} freed twice`);
    if (domain.type === "nested") throw new KernelBug(`nested domain ${domain.id} is freed by unbinding, not domainFree`);
    if (domain.attached) throw new KernelBug(`domain ${domain.id} freed while attached`);
    if (domain instanceof PagingDomain) for (const n of [...domain.nested.values()]) this.#dropNested(n);
    domain.driver.free();
    domain.freed = true;
    this.#liveDomains--;
    this.#trace("iommu.domain-free", { domain: domain.id }, { type: domain.type });
  }

  /** `iommu_attach_device`: the device must be alone in its group (EINVAL otherwise). */
  attachDevice(domain: IommuDomain, dev: IommuDevice): void {
    if (dev.isSubDevice) throw new KernelError(Errno.EINVAL, `${dev.name} is a sub-device; attach it with attachSubDevice`);
    const group = this.#groupOf(dev);
    if (group.devices.length !== 1) throw new KernelError(Errno.EINVAL, `${dev.name} shares group ${group.id}; attach the group`);
    this.attachGroup(domain, group);
  }

  detachDevice(domain: IommuDomain, dev: IommuDevice): void {
    this.detachGroup(domain, this.#groupOf(dev));
  }

  /**
   * `iommu_attach_group`: every device of the group moves to `domain`, or none
   * does (a failure part way re-attaches the ones already moved).
   * EINVAL: a domain of another IOMMU, a freed domain, or a nested domain (its
   * first level is reached by PASID only); EBUSY: the group is already owned
   * by a domain other than its default one.
   */
  attachGroup(domain: IommuDomain, group: IommuGroup): void {
    if (domain.freed) throw new KernelError(Errno.EINVAL, `domain ${domain.id} was freed`);
    if (domain.iommu !== group.iommu) throw new KernelError(Errno.EINVAL, `domain ${domain.id} belongs to ${domain.iommu.name}, group ${group.id} to ${group.iommu.name}`);
    if (domain.type === "nested") throw new KernelError(Errno.EINVAL, `nested domain ${domain.id} cannot translate requests without PASID`);
    if (group.ownedByOther || (group.defaultDomain === null && group.domain !== null)) {
      throw new KernelError(Errno.EBUSY, `group ${group.id} is owned by domain ${group.domain?.id ?? 0}`);
    }
    this.#switchGroup(group, domain);
    this.#trace("iommu.attach", { domain: domain.id }, { group: group.id, type: domain.type });
  }

  /**
   * `iommu_detach_group`: back to the default domain, or unattached without
   * one. PASIDs bound through the domain on the group's devices are unbound
   * first (teardown cannot fail). Detaching a domain the group is not attached
   * to is a kernel bug.
   */
  detachGroup(domain: IommuDomain, group: IommuGroup): void {
    if (group.domain !== domain) throw new KernelBug(`detaching domain ${domain.id} from group ${group.id}, which is in ${group.domain?.id ?? "no domain"}`);
    if (domain === group.defaultDomain) return;
    if (domain instanceof PagingDomain) {
      for (const dev of group.devices) this.#unbindAllOf(dev, domain);
    }
    const to = group.defaultDomain;
    if (to === null) {
      for (const dev of group.devices) this.#detachDevFrom(domain, dev);
      domain.groups.delete(group);
      group.domain = null;
    } else {
      // Re-attaching the default domain can only fail on an allocation the
      // default domain already made; a failure here is a driver bug.
      try {
        this.#switchGroup(group, to);
      } catch (e) {
        throw new KernelBug(`re-attaching the default domain of group ${group.id} failed: ${String(e)}`);
      }
    }
    this.#trace("iommu.detach", { domain: domain.id }, { group: group.id, to: to?.id ?? null });
  }

  /**
   * `iommu_aux_attach_device`: a sub-device gets its own paging domain on its
   * parent. EINVAL: not a sub-device, parent without "aux" enabled (an mdev
   * that is not IOMMU-backed), a non-paging or foreign domain; EBUSY: already
   * attached.
   */
  attachSubDevice(domain: IommuDomain, sub: IommuDevice): void {
    if (!sub.isSubDevice) throw new KernelError(Errno.EINVAL, `${sub.name} is not a sub-device`);
    if (!sub.physical.hasFeature("aux")) throw new KernelError(Errno.EINVAL, `${sub.physical.name} has no aux domain support enabled`);
    if (!(domain instanceof PagingDomain) || domain.freed) throw new KernelError(Errno.EINVAL, `aux attach needs a live paging domain`);
    if (domain.iommu !== sub.iommu) throw new KernelError(Errno.EINVAL, `domain ${domain.id} is not on ${sub.name}'s IOMMU`);
    if (sub.auxDomain !== null) throw new KernelError(Errno.EBUSY, `${sub.name} is attached to domain ${sub.auxDomain.id}`);
    domain.driver.attachDev(sub);
    sub.auxDomain = domain;
    domain.subDevices.add(sub);
    this.#trace("iommu.attach", { domain: domain.id, device: sub.name }, { group: -1, type: domain.type });
  }

  detachSubDevice(domain: IommuDomain, sub: IommuDevice): void {
    if (sub.auxDomain !== domain) throw new KernelBug(`${sub.name} is not aux-attached to domain ${domain.id}`);
    if (domain instanceof PagingDomain) this.#unbindAllOf(sub, domain);
    this.#detachDevFrom(domain, sub);
    domain.subDevices.delete(sub);
    sub.auxDomain = null;
    this.#trace("iommu.detach", { domain: domain.id, device: sub.name }, { group: -1, to: null });
  }

  // ------------------------------------------------------------- map/unmap

  /**
   * `iommu_map`: validates, splits the range into the largest page sizes the
   * domain supports that alignment allows, and on a failure part way unmaps
   * what it mapped before returning the error, so a failed map leaves nothing.
   * EINVAL: not a paging domain; size zero; iova, paddr or size not aligned to
   * the smallest page; range outside the aperture; unknown prot bits or
   * neither read nor write. Driver errors (ENOMEM, EEXIST) pass through.
   */
  map(domain: IommuDomain, iova: number, paddr: number, size: number, prot: number): void {
    const d = this.#pagingOf(domain, "map");
    this.#checkRange(d, iova, size);
    if (!Number.isSafeInteger(paddr) || paddr < 0 || paddr % d.minPageSize !== 0) {
      throw new KernelError(Errno.EINVAL, `paddr 0x${paddr.toString(16)} is not aligned to 0x${d.minPageSize.toString(16)}`);
    }
    if (!Number.isSafeInteger(paddr + size)) throw new KernelError(Errno.EINVAL, `paddr + size overflows`);
    if (!Number.isInteger(prot) || (prot & ~IOMMU_PROT_KNOWN) !== 0 || (prot & (IommuProt.READ | IommuProt.WRITE)) === 0) {
      throw new KernelError(Errno.EINVAL, `prot 0x${prot.toString(16)}`);
    }
    let mapped = 0;
    while (mapped < size) {
      const { pgsize, count } = iommuPgsize(d.pgsizes, iova + mapped, paddr + mapped, size - mapped);
      const r = d.driver.mapPages(iova + mapped, paddr + mapped, pgsize, count, prot);
      mapped += r.mapped;
      if (r.error !== null) {
        if (mapped > 0) this.#unmapRange(d, iova, mapped);
        throw r.error;
      }
      if (r.mapped !== pgsize * count) throw new KernelBug(`driver ${d.iommu.ops.name} mapped ${r.mapped} of ${pgsize * count} bytes without an error`);
    }
    d.driver.syncMap(iova, size);
    this.#trace("iommu.map", { domain: d.id }, { iova, paddr, size, prot });
  }

  /**
   * `iommu_unmap`: returns the bytes unmapped, which stop at the first hole.
   * EINVAL for the same argument errors as map (upstream returns 0 there).
   */
  unmap(domain: IommuDomain, iova: number, size: number): number {
    const d = this.#pagingOf(domain, "unmap");
    this.#checkRange(d, iova, size);
    const unmapped = this.#unmapRange(d, iova, size);
    this.#trace("iommu.unmap", { domain: d.id }, { iova, size, unmapped });
    return unmapped;
  }

  /** `iommu_iova_to_phys`: identity returns iova, blocked and unmapped return null. */
  iovaToPhys(domain: IommuDomain, iova: number): number | null {
    switch (domain.type) {
      case "identity":
        return iova;
      case "dma":
      case "unmanaged":
        return domain.driver.iovaToPhys(iova);
      case "nested":
        return domain.parent.driver.iovaToPhys(iova);
      case "blocked":
        return null;
    }
  }

  // ------------------------------------------------------------ nesting UAPI

  /** Nesting info of a nesting parent (Yi Liu's vSVA VFIO series, v7, 2020); ENODEV for any other domain, as the v7 VT-d patch. */
  nestingInfo(domain: IommuDomain): NestingInfo {
    const p = this.#nestingParentOf(domain, Errno.ENODEV);
    return p.driver.nestingInfo();
  }

  /**
   * `iommu_uapi_sva_bind_gpasid`: binds a guest first level at a host PASID on
   * `dev` over `domain` (the second level). Returns the nested domain.
   *
   * Errors, after the UAPI decoder's: EINVAL when the domain is not a nesting
   * parent, `dev` is not attached to it (for a sub-device: aux-attached), SVA is
   * not enabled on the physical device or the hpasid is beyond its limit;
   * EBUSY when this requester already has the PASID bound (v11 VT-d bind_gpasid review, 2020: Kevin and
   * Eric: binding a PASID twice to one device is meaningless, refuse it here)
   * or when the PASID is bound to a different first level; ENOMEM.
   *
   * Sub-devices of one physical device share its PASID table, so the driver is
   * called only for the first requester on a physical device; the others are
   * counted (Jacob's `sdev->users`, kept in the core because the driver is not
   * mdev-aware).
   */
  bindGpasid(domain: IommuDomain, dev: IommuDevice, user: Uint8Array, opts: UapiDecodeOptions = {}): NestedDomain {
    return this.#uapi("bind-gpasid", dev, () => {
      const data = decodeGpasidBindData(user, opts);
      return this.bindGpasidData(domain, dev, data);
    });
  }

  /** The in-kernel form of {@link bindGpasid}, for an already validated request. */
  bindGpasidData(domain: IommuDomain, dev: IommuDevice, data: GpasidBindData): NestedDomain {
    const parent = this.#nestingParentOf(domain, Errno.EINVAL);
    if (dev.domain !== parent) throw new KernelError(Errno.EINVAL, `${dev.name} is not attached to domain ${parent.id}`);
    const phys = dev.physical;
    if (!phys.hasFeature("sva")) throw new KernelError(Errno.EINVAL, `SVA is not enabled on ${phys.name}`);
    if (data.hpasid >= phys.maxPasids) throw new KernelError(Errno.EINVAL, `hpasid ${data.hpasid} beyond ${phys.name}'s ${phys.maxPasids} PASIDs`);
    let nested = parent.nested.get(data.hpasid);
    if (nested !== undefined) {
      if (nested.bound.get(phys)?.has(dev) === true) throw new KernelError(Errno.EBUSY, `PASID ${data.hpasid} is already bound on ${dev.name}`);
      if (!sameBinding(nested.data, data)) throw new KernelError(Errno.EBUSY, `PASID ${data.hpasid} is bound to another first level`);
    }
    this.kernel.faults.inject("iommu.bind-gpasid");
    const fresh = nested === undefined;
    nested ??= new NestedDomain(this.#nextDomainId++, parent, data);
    const requesters = nested.bound.get(phys);
    const driverCalled = requesters === undefined;
    if (driverCalled) parent.driver.bindGpasid(phys, data);
    if (requesters === undefined) nested.bound.set(phys, new Set([dev]));
    else requesters.add(dev);
    if (fresh) {
      parent.nested.set(data.hpasid, nested);
      this.#liveDomains++;
    }
    this.#trace("iommu.bind-gpasid", this.#pasidIds(nested, dev), { users: nested.users, driverCalled });
    return nested;
  }

  /**
   * `iommu_uapi_sva_unbind_gpasid`: the same struct identifies the binding.
   * EINVAL when it is not bound for this requester (upstream returns EINVAL;
   * the v11 VT-d bind_gpasid review thread (2020) wanted in-kernel unbind to be void, which
   * {@link releaseDevice} and {@link detachGroup} are: they cannot fail).
   */
  unbindGpasid(domain: IommuDomain, dev: IommuDevice, user: Uint8Array, opts: UapiDecodeOptions = {}): void {
    this.#uapi("unbind-gpasid", dev, () => {
      const data = decodeGpasidBindData(user, opts);
      this.unbindGpasidPasid(domain, dev, data.hpasid);
    });
  }

  unbindGpasidPasid(domain: IommuDomain, dev: IommuDevice, hpasid: number): void {
    const parent = this.#nestingParentOf(domain, Errno.EINVAL);
    const nested = parent.nested.get(hpasid as NestedDomain["hpasid"]);
    if (nested?.bound.get(dev.physical)?.has(dev) !== true) throw new KernelError(Errno.EINVAL, `PASID ${hpasid} is not bound on ${dev.name}`);
    this.#unbindOne(nested, dev);
  }

  /**
   * `iommu_uapi_cache_invalidate`: validates the user's struct, then checks
   * what the caller may touch: `dev` attached to the nesting parent, and any
   * PASID it names bound on `dev` through this domain (EINVAL otherwise, so a
   * guest cannot flush another VM's PASID).
   */
  cacheInvalidate(domain: IommuDomain, dev: IommuDevice, user: Uint8Array, opts: UapiDecodeOptions = {}): CacheInvalidateInfo {
    return this.#uapi("cache-invalidate", dev, () => {
      const info = decodeCacheInvalidateInfo(user, opts);
      const parent = this.#nestingParentOf(domain, Errno.EINVAL);
      if (dev.domain !== parent) throw new KernelError(Errno.EINVAL, `${dev.name} is not attached to domain ${parent.id}`);
      const pasid = info.granularity === InvGranularity.PASID ? info.pasidInfo.pasid : info.granularity === InvGranularity.ADDR ? info.addrInfo.pasid : undefined;
      if (pasid !== undefined && parent.nested.get(pasid)?.bound.get(dev.physical)?.has(dev) !== true) {
        throw new KernelError(Errno.EINVAL, `PASID ${pasid} is not bound on ${dev.name}`);
      }
      parent.driver.cacheInvalidate(dev.physical, info);
      this.#trace("iommu.cache-invalidate", { domain: parent.id, device: dev.name, ...(pasid === undefined ? {} : { hpasid: pasid }) }, {
        cache: info.cache,
        granularity: info.granularity,
      });
      return info;
    });
  }

  // --------------------------------------------------------------- internals

  #iommuOf(dev: IommuDevice): Iommu {
    if (dev.iommu === null || !this.#devices.has(dev)) throw new KernelError(Errno.ENODEV, `${dev.name} is not behind an IOMMU of this kernel`);
    return dev.iommu;
  }

  #groupOf(dev: IommuDevice): IommuGroup {
    if (dev.group === null || !this.#devices.has(dev)) throw new KernelError(Errno.ENODEV, `${dev.name} has no IOMMU group`);
    return dev.group;
  }

  #pagingOf(domain: IommuDomain, what: string): PagingDomain {
    if (!(domain instanceof PagingDomain)) throw new KernelError(Errno.EINVAL, `${what} on a ${domain.type} domain`);
    if (domain.freed) throw new KernelError(Errno.EINVAL, `${what} on freed domain ${domain.id}`);
    return domain;
  }

  #nestingParentOf(domain: IommuDomain, errno: Errno): NestingParent {
    if (!(domain instanceof PagingDomain) || domain.freed || domain.driver.kind !== "nesting-parent") {
      throw new KernelError(errno, `domain ${domain.id} (${domain.type}) is not a nesting parent`);
    }
    return domain as NestingParent;
  }

  #checkRange(d: PagingDomain, iova: number, size: number): void {
    const min = d.minPageSize;
    if (!Number.isSafeInteger(size) || size <= 0) throw new KernelError(Errno.EINVAL, `size ${size}`);
    if (!Number.isSafeInteger(iova) || iova < 0) throw new KernelError(Errno.EINVAL, `iova ${iova}`);
    if (iova % min !== 0 || size % min !== 0) {
      throw new KernelError(Errno.EINVAL, `iova 0x${iova.toString(16)} size 0x${size.toString(16)} not aligned to 0x${min.toString(16)}`);
    }
    const last = iova + size - 1;
    if (!Number.isSafeInteger(last) || iova < d.driver.aperture.start || last > d.driver.aperture.end) {
      throw new KernelError(Errno.EINVAL, `[0x${iova.toString(16)}, +0x${size.toString(16)}) outside the aperture`);
    }
  }

  #unmapRange(d: PagingDomain, iova: number, size: number): number {
    let unmapped = 0;
    while (unmapped < size) {
      const { pgsize, count } = iommuPgsize(d.pgsizes, iova + unmapped, iova + unmapped, size - unmapped);
      const n = d.driver.unmapPages(iova + unmapped, pgsize, count);
      if (n === 0) break;
      unmapped += n;
    }
    if (unmapped > 0) d.driver.flushIotlb(iova, unmapped);
    return unmapped;
  }

  #domainAlloc(iommu: Iommu, req: DomainAllocRequest): IommuDomain {
    if (req.type !== "blocked" && req.type !== "identity" && req.nestingParent && !iommu.ops.capable("nesting")) {
      throw new KernelError(Errno.ENODEV, `${iommu.name} cannot nest`);
    }
    this.kernel.faults.inject("iommu.domain-alloc");
    const drv = iommu.ops.domainAlloc(req);
    const id = this.#nextDomainId++;
    let domain: IommuDomain;
    try {
      if (req.type === "blocked" && drv.kind === "blocked") domain = new BlockedDomain(id, iommu, drv);
      else if (req.type === "identity" && drv.kind === "identity") domain = new IdentityDomain(id, iommu, drv);
      else if ((req.type === "dma" || req.type === "unmanaged") && (drv.kind === (req.nestingParent ? "nesting-parent" : "paging"))) {
        const paging = drv;
        const { start, end } = paging.aperture;
        if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) {
          throw new KernelError(Errno.EINVAL, `driver ${iommu.ops.name} gave aperture [${start}, ${end}]`);
        }
        domain = new PagingDomain(id, iommu, req.type, paging, pgsizesFromBitmap(paging.pgsizeBitmap));
      } else {
        throw new KernelError(Errno.EINVAL, `driver ${iommu.ops.name} returned a ${drv.kind} domain for a ${req.type} request`);
      }
    } catch (e) {
      drv.free();
      throw e;
    }
    this.#liveDomains++;
    this.#trace("iommu.domain-alloc", { domain: id }, { type: domain.type, iommu: iommu.name });
    return domain;
  }

  #setupDefaultDomain(group: IommuGroup): void {
    if (this.#defaultDomain === "none") return;
    const req: DomainAllocRequest = this.#defaultDomain === "identity" ? { type: "identity" } : { type: "dma", nestingParent: false };
    const domain = this.#domainAlloc(group.iommu, req);
    group.defaultDomain = domain;
    try {
      this.#switchGroup(group, domain);
    } catch (e) {
      group.defaultDomain = null;
      this.domainFree(domain);
      throw e;
    }
  }

  #teardownDefaultDomain(group: IommuGroup): void {
    const def = group.defaultDomain;
    if (def === null) return;
    if (group.domain === def) {
      for (const dev of group.devices) this.#detachDevFrom(def, dev);
      group.domain = null;
    }
    def.groups.delete(group);
    group.defaultDomain = null;
    if (!def.attached && !def.freed) this.domainFree(def);
  }

  /** Moves every device of the group to `to`, all or nothing. */
  #switchGroup(group: IommuGroup, to: IommuDomain): void {
    const from = group.domain;
    const moved: IommuDevice[] = [];
    try {
      for (const dev of group.devices) {
        if (from !== null) this.#detachDevFrom(from, dev);
        moved.push(dev);
        this.#attachDevTo(to, dev);
      }
    } catch (e) {
      const failed = moved.pop();
      for (const dev of moved) this.#detachDevFrom(to, dev);
      if (from !== null) {
        if (failed !== undefined) moved.push(failed);
        for (const dev of moved) this.#attachDevTo(from, dev);
      }
      throw e;
    }
    if (from !== null) from.groups.delete(group);
    group.domain = to;
    to.groups.add(group);
  }

  #attachDevTo(domain: IommuDomain, dev: IommuDevice): void {
    if (domain.type === "nested") throw new KernelBug("nested domains are not attached to requester IDs");
    domain.driver.attachDev(dev);
  }

  #detachDevFrom(domain: IommuDomain, dev: IommuDevice): void {
    if (domain.type === "nested") return;
    domain.driver.detachDev(dev);
  }

  #disableFeature(dev: IommuDevice, f: DevFeature): void {
    dev.iommu?.ops.disableFeature(dev, f);
    dev.features.delete(f);
    if (f === "sva") dev.maxPasids = 0;
    const stillFaulting = dev.features.has("sva") || dev.features.has("iopf");
    if (!stillFaulting && this.#faultHandlers.get(dev) === this.#iopfHandler) this.#faultHandlers.delete(dev);
  }

  #boundOn(dev: IommuDevice): boolean {
    for (const d of this.#devices) {
      const domain = d.domain;
      if (!(domain instanceof PagingDomain)) continue;
      for (const n of domain.nested.values()) if (n.bound.has(dev)) return true;
    }
    return false;
  }

  /** Unbinds every PASID `dev` (as requester) has through `only` or any domain. Cannot fail. */
  #unbindAllOf(dev: IommuDevice, only?: PagingDomain): void {
    const domain = only ?? dev.domain;
    if (!(domain instanceof PagingDomain)) return;
    for (const n of [...domain.nested.values()]) if (n.bound.get(dev.physical)?.has(dev) === true) this.#unbindOne(n, dev);
  }

  #unbindOne(nested: NestedDomain, dev: IommuDevice): void {
    const phys = dev.physical;
    const requesters = nested.bound.get(phys);
    if (requesters === undefined) return;
    requesters.delete(dev);
    const driverCalled = requesters.size === 0;
    if (driverCalled) {
      nested.bound.delete(phys);
      nested.parent.driver.unbindGpasid(phys, nested.hpasid);
    }
    this.#trace("iommu.unbind-gpasid", this.#pasidIds(nested, dev), { users: nested.users, driverCalled });
    if (nested.bound.size === 0) this.#dropNested(nested);
  }

  #dropNested(nested: NestedDomain): void {
    for (const [phys, reqs] of nested.bound) {
      reqs.clear();
      nested.parent.driver.unbindGpasid(phys, nested.hpasid);
    }
    nested.bound.clear();
    if (nested.parent.nested.get(nested.hpasid) === nested) {
      nested.parent.nested.delete(nested.hpasid);
      nested.freed = true;
      this.#liveDomains--;
    }
  }

  #pasidIds(nested: NestedDomain, dev: IommuDevice): TraceIds {
    const ids: TraceIds = { device: dev.name, domain: nested.parent.id, hpasid: nested.hpasid };
    return nested.gpasid === undefined ? ids : { ...ids, gpasid: nested.gpasid };
  }

  /** Runs a user-reachable operation: refusals are rate-limited warnings and traced, never crashes. */
  #uapi<T>(op: string, dev: IommuDevice, fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      if (isKernelError(e)) {
        this.kernel.log.warn(`iommu.${op}`, `${op} on ${dev.name}: ${e.message}`, "IOMMU");
        this.#trace("iommu.uapi-refused", { device: dev.name }, { op, errno: e.errno, message: e.message });
      }
      throw e;
    }
  }

  #trace<K extends IommuTraceKind>(kind: K, ids: TraceIds, payload: TracePayload<K>): void {
    this.kernel.trace.emit<K>(kind, "IOMMU", ids, payload);
  }
}

function sameBinding(a: GpasidBindData, b: GpasidBindData): boolean {
  return (
    a.gpgd === b.gpgd &&
    a.addrWidth === b.addrWidth &&
    a.gpasid === b.gpasid &&
    a.vtd.flags === b.vtd.flags &&
    a.vtd.pat === b.vtd.pat &&
    a.vtd.emt === b.vtd.emt
  );
}
