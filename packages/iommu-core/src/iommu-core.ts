import { type HostPasid, type Kernel, KernelError, Errno } from "@vsva/kernel";
import { IoasidCore } from "@vsva/ioasid";
import { CoreContext, deviceArg, domainArg } from "./core-context.js";
import { CoreDevices, type EnableFeatureOptions, type ProbeOptions } from "./core-devices.js";
import { CoreDomains } from "./core-domains.js";
import type { IommuDevice } from "./device.js";
import { type IommuDomain, type NestedDomain, PagingDomain } from "./domain.js";
import { IommuGroup } from "./group.js";
import { IopfQueue } from "./iopf.js";
import { Iommu } from "./iommu.js";
import { NestingUapi } from "./nesting-uapi.js";
import type { DevFeature, DeviceFaultHandler, DomainAllocRequest, IommuOps, PageRequestFault, PageResponse } from "./ops.js";
import { IommuSva } from "./sva.js";
import type { CacheInvalidateInfo } from "./uapi/cache-invalidate.js";
import type { GpasidBindData, UapiDecodeOptions } from "./uapi/gpasid-bind.js";
import type { NestingInfo } from "./uapi/nesting-info.js";

export type { EnableFeatureOptions, ProbeOptions } from "./core-devices.js";

export interface IommuCoreOptions {
  readonly kernel: Kernel;
  /**
   * The domain each group starts in (`iommu.passthrough`): "dma" translates
   * through a DMA-API paging domain, "identity" passes through, "none" leaves
   * groups unattached until a user attaches them (the v5.10 no-default case).
   */
  readonly defaultDomain?: "dma" | "identity" | "none";
  /**
   * The host's IOASID namespace, where SVA takes its PASIDs and where the
   * nesting UAPI checks PASID ownership. Pass the one VFIO, KVM and the
   * drivers use so all PASIDs come from one space; without it the core makes
   * a private one (fine for tests of the core alone).
   */
  readonly ioasid?: IoasidCore;
  /** PASIDs SVA may hold at once (the quota of its IOASID set). Default 1024. */
  readonly svaPasidQuota?: number;
  /** Names this core's workqueues when several cores share a kernel (default "iommu"). */
  readonly name?: string;
}

/**
 * The IOMMU core of one kernel (drivers/iommu/iommu.c): registers IOMMUs,
 * probes devices into groups with default domains, allocates and attaches
 * domains with the kernel's rules, and does the shared work of map/unmap and
 * of the nesting UAPI so drivers only implement primitives.
 *
 * This class is the front: the work is done by its parts, one module per
 * concern (core-devices: devices and groups; core-domains: domains and
 * map; nesting-uapi: bind, unbind, cache invalidate, nesting info; sva).
 */
export class IommuCore {
  readonly kernel: Kernel;
  readonly ioasid: IoasidCore;
  /** Shared virtual addressing: binds mms to devices (`iommu_sva_bind_device`). */
  readonly sva: IommuSva;
  /** The IO page fault queue page requests go through. */
  readonly iopf: IopfQueue;
  readonly #ctx: CoreContext;
  readonly #devices: CoreDevices;
  readonly #domains: CoreDomains;
  readonly #nesting: NestingUapi;
  readonly #iommus: Iommu[] = [];
  #nextIommuId = 1;

  constructor(opts: IommuCoreOptions) {
    this.kernel = opts.kernel;
    const name = opts.name ?? "iommu";
    const k = opts.kernel;
    this.ioasid = opts.ioasid ?? new IoasidCore({ scheduler: k.scheduler, trace: k.trace, faults: k.faults, log: k.log, name: `${name}-pasid` });
    const ctx = new CoreContext(k, this.ioasid);
    this.#ctx = ctx;
    this.iopf = new IopfQueue({
      kernel: k,
      name: `${name}-iopf`,
      resolve: (dev, pasid) => this.sva.faultTarget(dev, pasid),
      respond: (dev, response) => {
        // The device may have gone since its request was queued; nobody is left to answer.
        if (ctx.devices.has(dev)) dev.iommu?.ops.pageResponse(dev, response);
      },
    });
    this.sva = new IommuSva({
      kernel: k,
      ioasid: this.ioasid,
      iopf: this.iopf,
      isProbed: (dev) => ctx.devices.has(dev),
      ...(opts.svaPasidQuota === undefined ? {} : { pasidQuota: opts.svaPasidQuota }),
    });
    this.#nesting = new NestingUapi(ctx);
    this.#domains = new CoreDomains(ctx, this.#nesting);
    this.#devices = new CoreDevices(ctx, this.#domains, this.#nesting, this.sva, this.iopf, opts.defaultDomain ?? "dma");
  }

  get iommus(): readonly Iommu[] {
    return this.#iommus;
  }

  get devices(): ReadonlySet<IommuDevice> {
    return this.#ctx.devices;
  }

  /** Domains allocated and not yet freed: a leak check for teardown. */
  get liveDomains(): number {
    return this.#ctx.liveDomains;
  }

  groups(): IommuGroup[] {
    return this.#devices.groups();
  }

  /** `iommu_device_register`. */
  registerIommu(name: string, ops: IommuOps): Iommu {
    if (this.#iommus.some((i) => i.name === name)) throw new KernelError(Errno.EEXIST, `IOMMU ${name} is already registered`);
    const iommu = new Iommu(this.#nextIommuId++, name, ops);
    this.#iommus.push(iommu);
    ops.connect({
      reportDeviceFault: (dev, fault) => this.reportDeviceFault(dev, fault),
      gpasidFreed: (domain, hpasid) => this.#nesting.gpasidFreed(domain, hpasid),
    });
    return iommu;
  }

  // ----------------------------------------------------------- fault handlers

  /**
   * `iommu_report_device_fault` for a page request, from the driver's page
   * request handler (atomic context is fine: the request is queued and handled
   * in a work item, and answered through the driver's `pageResponse`). `dev`
   * is the physical device that sent it. Never throws for what the hardware
   * reported; returns false when the request was refused (its group is
   * answered invalid) or `dev` is not a device of this core (dropped).
   */
  reportPageRequest(dev: IommuDevice, fault: PageRequestFault): boolean {
    return this.#devices.reportPageRequest(dev, fault);
  }

  /**
   * `iommu_register_device_fault_handler`: recoverable faults of `dev` (a
   * physical device of this core) go to `handler`. Enabling SVA registers the
   * IO page fault queue; VFIO can register its own to forward guest faults.
   * EBUSY when one is registered; ENODEV for a device not probed here. A
   * sub-device's handler gets the page requests of its physical device that
   * carry a PASID bound nested through the sub-device.
   */
  registerDeviceFaultHandler(dev: IommuDevice | null | undefined, handler: DeviceFaultHandler): void {
    const d = deviceArg(dev, "register fault handler");
    if (typeof handler !== "function") throw new KernelError(Errno.EINVAL, "register fault handler: no handler");
    this.#devices.registerFaultHandler(d, handler);
  }

  /** Removes `dev`'s fault handler, if any; cannot fail. */
  unregisterDeviceFaultHandler(dev: IommuDevice): void {
    this.#devices.unregisterFaultHandler(dev);
  }

  /**
   * `iommu_page_response`: the answer of a fault handler's owner (VFIO,
   * relaying a guest's page group response) to a group it took. EINVAL: no
   * such group pending on `dev`; ENODEV: not a device of this core.
   */
  pageResponse(dev: IommuDevice | null | undefined, resp: PageResponse): void {
    this.#devices.pageResponse(deviceArg(dev, "page response"), resp);
  }

  /** `iommu_report_device_fault`, reached by drivers through their uplink. */
  reportDeviceFault(dev: IommuDevice, fault: PageRequestFault): boolean {
    return this.#devices.reportDeviceFault(dev, fault);
  }

  // ------------------------------------------------------------------ devices

  /**
   * Puts a physical device behind `iommu`: driver probe, group membership, and
   * for a new group its default domain. On any failure everything done is
   * undone and the error returned (ENODEV, ENOMEM...).
   */
  probeDevice(iommu: Iommu, opts: ProbeOptions): IommuDevice {
    return this.#devices.probe(iommu, opts);
  }

  /**
   * A sub-device (mdev) of a physical device. It is attached only as aux
   * (through {@link attachSubDevice}) and binds PASIDs on its parent.
   */
  addSubDevice(parent: IommuDevice, name: string): IommuDevice {
    return this.#devices.addSubDevice(parent, name);
  }

  /**
   * Takes a device away (hot-unplug, driver unbind). Cannot fail: whatever is
   * still bound or attached is torn down first, as the kernel must when a
   * device disappears under a careless user.
   */
  releaseDevice(dev: IommuDevice): void {
    this.#devices.release(dev);
  }

  /**
   * `iommu_dev_enable_feature`. For "sva" this also fixes the device's PASID
   * limit (the 2017 SVA API series): min(2^pasidWidth, 2^iommu.pasidBits, maxPasid if given).
   * ENODEV: the device or its IOMMU lacks the feature (no PASID capability);
   * EINVAL: a sub-device (features belong to the physical device) or a bad
   * limit; EBUSY: already enabled.
   */
  enableFeature(dev: IommuDevice | null | undefined, feature: DevFeature, opts: EnableFeatureOptions = {}): void {
    this.#devices.enableFeature(deviceArg(dev, "enable feature"), feature, opts);
  }

  /** EBUSY while PASIDs are bound on the device or sub-devices are aux-attached; ENODEV when not enabled. */
  disableFeature(dev: IommuDevice | null | undefined, feature: DevFeature): void {
    this.#devices.disableFeature(deviceArg(dev, "disable feature"), feature);
  }

  // ------------------------------------------------------------------ domains
  //
  // Every entry VFIO calls takes a missing device, domain or group as EINVAL
  // (core-context.ts: deviceArg), never a TypeError (DESIGN rule 4).

  /**
   * Allocates a domain on the IOMMU behind `dev`. A nesting parent names the
   * IOASID set that owns it (VFIO's set for the VM) and holds a reference on
   * it until {@link domainFree}. ENODEV: a nesting parent on an IOMMU that
   * cannot nest (as DOMAIN_ATTR_NESTING was refused in v5.10); ENOMEM;
   * EINVAL: no device or request, a set this core's IOASID namespace does not
   * know or that is being destroyed, or the driver returns a different kind
   * or a bad geometry.
   */
  domainAlloc(dev: IommuDevice | null | undefined, req: DomainAllocRequest): IommuDomain {
    const d = deviceArg(dev, "domain alloc");
    const r: unknown = req;
    if (typeof r !== "object" || r === null) throw new KernelError(Errno.EINVAL, "domain alloc: no request");
    return this.#domains.alloc(this.#ctx.iommuOf(d), req);
  }

  /** `iommu_domain_free`. The domain must be detached everywhere: freeing an attached domain is a kernel bug. */
  domainFree(domain: IommuDomain | null | undefined): void {
    this.#domains.free(domainArg(domain, "domain free"));
  }

  /** `iommu_attach_device`: the device must be alone in its group (EINVAL otherwise). */
  attachDevice(domainIn: IommuDomain | null | undefined, devIn: IommuDevice | null | undefined): void {
    const domain = domainArg(domainIn, "attach");
    const dev = deviceArg(devIn, "attach");
    if (dev.isSubDevice) throw new KernelError(Errno.EINVAL, `${dev.name} is a sub-device; attach it with attachSubDevice`);
    const group = this.#devices.groupOf(dev);
    if (group.devices.length !== 1) throw new KernelError(Errno.EINVAL, `${dev.name} shares group ${group.id}; attach the group`);
    this.attachGroup(domain, group);
  }

  detachDevice(domain: IommuDomain | null | undefined, dev: IommuDevice | null | undefined): void {
    this.detachGroup(domain, this.#devices.groupOf(deviceArg(dev, "detach")));
  }

  /**
   * `iommu_attach_group`: every device of the group moves to `domain`, or none
   * does (a failure part way re-attaches the ones already moved).
   * EINVAL: a domain of another IOMMU, a freed domain, or a nested domain (its
   * first level is reached by PASID only); EBUSY: the group is already owned
   * by a domain other than its default one.
   */
  attachGroup(domain: IommuDomain | null | undefined, group: IommuGroup | null | undefined): void {
    this.#domains.attachGroup(domainArg(domain, "attach group"), groupArg(group, "attach group"));
  }

  /**
   * `iommu_detach_group`: back to the default domain, or unattached without
   * one. PASIDs bound through the domain on the group's devices are unbound
   * first (teardown cannot fail). Detaching a domain the group is not attached
   * to is a kernel bug.
   */
  detachGroup(domain: IommuDomain | null | undefined, group: IommuGroup | null | undefined): void {
    this.#domains.detachGroup(domainArg(domain, "detach group"), groupArg(group, "detach group"));
  }

  /**
   * `iommu_aux_attach_device`: a sub-device gets its own paging domain on its
   * parent. EINVAL: not a sub-device, parent without "aux" enabled (an mdev
   * that is not IOMMU-backed), a non-paging or foreign domain; EBUSY: already
   * attached.
   */
  attachSubDevice(domain: IommuDomain | null | undefined, sub: IommuDevice | null | undefined): void {
    this.#domains.attachSubDevice(domainArg(domain, "aux attach"), deviceArg(sub, "aux attach"));
  }

  detachSubDevice(domain: IommuDomain | null | undefined, sub: IommuDevice | null | undefined): void {
    this.#domains.detachSubDevice(domainArg(domain, "aux detach"), deviceArg(sub, "aux detach"));
  }

  /**
   * `iommu_aux_get_pasid`: the default PASID `sub` (an IOMMU-backed mdev)
   * issues its DMA with through its aux `domain`, so its vendor driver can
   * program it into the device (a work queue's PASID). EINVAL: `sub` is not
   * aux-attached to `domain`; ENODEV: the driver has no aux PASIDs.
   */
  auxGetPasid(domain: IommuDomain | null | undefined, sub: IommuDevice | null | undefined): HostPasid {
    const d = domainArg(domain, "aux PASID");
    const dev = deviceArg(sub, "aux PASID");
    if (!dev.isSubDevice || dev.auxDomain !== d || !(d instanceof PagingDomain)) {
      throw new KernelError(Errno.EINVAL, `${dev.name} is not aux-attached to domain ${d.id}`);
    }
    const pasid = d.driver.auxGetPasid?.(dev);
    if (pasid === undefined) throw new KernelError(Errno.ENODEV, `the driver of domain ${d.id} has no aux PASIDs`);
    return pasid;
  }

  // ---------------------------------------------------------------- map/unmap

  /**
   * `iommu_map`: validates, splits the range into the largest page sizes the
   * domain supports that alignment allows, and on a failure part way unmaps
   * what it mapped before returning the error, so a failed map leaves nothing.
   * EINVAL: not a paging domain; size zero; iova, paddr or size not aligned to
   * the smallest page; range outside the aperture; unknown prot bits or
   * neither read nor write. Driver errors (ENOMEM, EEXIST) pass through.
   */
  map(domain: IommuDomain | null | undefined, iova: number, paddr: number, size: number, prot: number): void {
    this.#domains.map(domainArg(domain, "map"), iova, paddr, size, prot);
  }

  /**
   * `iommu_unmap`: returns the bytes unmapped, which stop at the first hole.
   * EINVAL for the same argument errors as map (upstream returns 0 there).
   */
  unmap(domain: IommuDomain | null | undefined, iova: number, size: number): number {
    return this.#domains.unmap(domainArg(domain, "unmap"), iova, size);
  }

  /** `iommu_iova_to_phys`: identity returns iova, blocked and unmapped return null. */
  iovaToPhys(domain: IommuDomain | null | undefined, iova: number): number | null {
    return this.#domains.iovaToPhys(domainArg(domain, "iova to phys"), iova);
  }

  // ------------------------------------------------------------- nesting UAPI

  /** Nesting info of a nesting parent (the 2020 vSVA VFIO series, "iommu: Report domain nesting info"); ENODEV for any other domain, as the v7 VT-d patch. */
  nestingInfo(domain: IommuDomain | null | undefined): NestingInfo {
    return this.#nesting.nestingInfo(domain);
  }

  /**
   * The nesting info written into a user buffer with the series' argsz
   * protocol (what VFIO's nesting capability copies out): a buffer whose
   * argsz is too small gets only argsz, set to the size needed. Returns that
   * size. ENODEV as {@link nestingInfo}; EINVAL for no domain; EFAULT for no
   * buffer or one shorter than it claims.
   */
  nestingInfoToUser(domain: IommuDomain | null | undefined, user: Uint8Array | null | undefined): number {
    return this.#nesting.nestingInfoToUser(domain, user);
  }

  /**
   * `iommu_uapi_sva_bind_gpasid`: binds a guest first level at a host PASID on
   * `dev` over `domain` (the second level). Returns the nested domain.
   *
   * Errors: EINVAL for no device or domain (VFIO has none for an mdev that
   * is not IOMMU-backed), EFAULT for no user buffer; then the UAPI decoder's;
   * EINVAL when the domain is not a nesting parent, `dev` is not attached to
   * it (for a sub-device: aux-attached), SVA is not enabled on the physical
   * device or the hpasid is beyond its limit; ENOENT when the PASID is not
   * allocated or being freed, EACCES when it is not in the domain's IOASID
   * set (the owner check, before the driver is called); EBUSY when this
   * requester already has the PASID bound (the review of the 2020 VT-d
   * bind_gpasid patch: binding a PASID twice to one device is meaningless,
   * refuse it here) or when the PASID is bound to a different first level;
   * ENOMEM.
   *
   * Sub-devices of one physical device share its PASID table, so the driver is
   * called only for the first requester on a physical device; the others are
   * counted (Jacob's `sdev->users`, kept in the core because the driver is not
   * mdev-aware).
   */
  bindGpasid(domain: IommuDomain | null | undefined, dev: IommuDevice | null | undefined, user: Uint8Array | null | undefined, opts: UapiDecodeOptions = {}): NestedDomain {
    return this.#nesting.bindGpasid(domain, dev, user, opts);
  }

  /** The in-kernel form of {@link bindGpasid}, for an already decoded request (EINVAL when it is missing). */
  bindGpasidData(domain: IommuDomain | null | undefined, dev: IommuDevice | null | undefined, data: GpasidBindData | null | undefined): NestedDomain {
    return this.#nesting.bindGpasidData(domain, dev, data);
  }

  /**
   * `iommu_uapi_sva_unbind_gpasid`: the same struct identifies the binding.
   * EINVAL/EFAULT for no device, domain or user buffer, as bind. ENOENT when
   * the PASID is not allocated or is being freed: also a late unbind after
   * the IOASID was freed while bound, whose binding the driver tore down and
   * reported (the 2020 IOASID design, Documentation/driver-api/ioasid.rst,
   * "free before unbind", note 3: the unbind's `ioasid_find()` fails, and
   * ioasid.c's `ioasid_find()` returns -ENOENT for an ID that is gone or
   * FREE_PENDING). EACCES for another set's PASID. EINVAL when the PASID is
   * live in the set but not bound for this requester (v5.10's
   * drivers/iommu/intel/svm.c: intel_svm_unbind_gpasid() returned 0 there,
   * finding no sdev; the core refuses it so a VMM sees its mistake, and
   * keeps upstream's EINVAL for an invalid PASID value). The review of the VT-d bind_gpasid patch wanted
   * in-kernel unbind to be void, which {@link releaseDevice} and
   * {@link detachGroup} are: they cannot fail.
   */
  unbindGpasid(domain: IommuDomain | null | undefined, dev: IommuDevice | null | undefined, user: Uint8Array | null | undefined, opts: UapiDecodeOptions = {}): void {
    this.#nesting.unbindGpasid(domain, dev, user, opts);
  }

  /** The in-kernel form of {@link unbindGpasid}, by host PASID; the same errors. */
  unbindGpasidPasid(domain: IommuDomain | null | undefined, dev: IommuDevice | null | undefined, hpasid: number): void {
    this.#nesting.unbindGpasidPasid(domain, dev, hpasid);
  }

  /**
   * `iommu_uapi_cache_invalidate`: validates the user's struct, then checks
   * what the caller may touch: `dev` attached to the nesting parent, and any
   * PASID it names bound on `dev` through this domain (EINVAL otherwise, so a
   * guest cannot flush another VM's PASID; ENOENT/EACCES first when the
   * PASID is not the domain's set's). EINVAL/EFAULT for no device, domain or
   * user buffer, as bind.
   */
  cacheInvalidate(domain: IommuDomain | null | undefined, dev: IommuDevice | null | undefined, user: Uint8Array | null | undefined, opts: UapiDecodeOptions = {}): CacheInvalidateInfo {
    return this.#nesting.cacheInvalidate(domain, dev, user, opts);
  }
}

function groupArg(group: IommuGroup | null | undefined, what: string): IommuGroup {
  if (!(group instanceof IommuGroup)) throw new KernelError(Errno.EINVAL, `${what}: no group`);
  return group;
}
