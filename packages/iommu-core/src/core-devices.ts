import { Errno, KernelError, type SourceId } from "@vsva/kernel";
import type { CoreContext } from "./core-context.js";
import type { CoreDomains } from "./core-domains.js";
import { IommuDevice } from "./device.js";
import { IommuGroup } from "./group.js";
import type { Iommu } from "./iommu.js";
import type { IopfQueue } from "./iopf.js";
import type { NestingUapi } from "./nesting-uapi.js";
import type { DevFeature, DeviceFaultHandler, PageRequestFault, PageResponse } from "./ops.js";

const pendingKey = (dev: IommuDevice, pasid: number | undefined, grpid: number): string => `${dev.name}/${pasid ?? "-"}/${grpid}`;
import type { IommuSva } from "./sva.js";

export interface ProbeOptions {
  readonly name: string;
  readonly sid: SourceId;
  /** PASID capability width in bits (0 = no PASID capability). */
  readonly pasidWidth?: number;
  /** Devices with the same key share a group (no ACS isolation between them); default: the device alone. */
  readonly isolation?: string;
}

export interface EnableFeatureOptions {
  /** The 2017 generic SVA API review's `iommu_sva_device_init(dev, features, max_pasid)`: 0 or absent = the PCI limit. */
  readonly maxPasid?: number;
}

/**
 * Devices and groups of the IOMMU core (drivers/iommu/iommu.c:
 * `iommu_probe_device`, `iommu_group_*`, `iommu_dev_enable_feature`,
 * `iommu_register_device_fault_handler`): probing into groups with their
 * default domains, sub-devices, features, and where a device's recoverable
 * faults go.
 */
export class CoreDevices {
  readonly #ctx: CoreContext;
  readonly #domains: CoreDomains;
  readonly #nesting: NestingUapi;
  readonly #sva: IommuSva;
  readonly #iopf: IopfQueue;
  readonly #defaultDomain: "dma" | "identity" | "none";
  readonly #groups = new Map<string, IommuGroup>();
  readonly #faultHandlers = new Map<IommuDevice, DeviceFaultHandler>();
  /** Last requests of groups a registered handler took, awaiting its page response. */
  readonly #pending = new Map<string, { readonly dev: IommuDevice; readonly pasid: PageRequestFault["pasid"]; readonly grpid: number }>();
  /** The IO page fault queue as a device fault handler (`iommu_queue_iopf`). */
  readonly #iopfHandler: DeviceFaultHandler = (dev, fault) => this.reportPageRequest(dev, fault);
  #nextGroupId = 0;

  constructor(ctx: CoreContext, domains: CoreDomains, nesting: NestingUapi, sva: IommuSva, iopf: IopfQueue, defaultDomain: "dma" | "identity" | "none") {
    this.#ctx = ctx;
    this.#domains = domains;
    this.#nesting = nesting;
    this.#sva = sva;
    this.#iopf = iopf;
    this.#defaultDomain = defaultDomain;
  }

  groups(): IommuGroup[] {
    return [...this.#groups.values()];
  }

  // ------------------------------------------------------------ fault handlers

  reportPageRequest(dev: IommuDevice, fault: PageRequestFault): boolean {
    if (!this.#ctx.devices.has(dev) || dev.isSubDevice) return false;
    return this.#iopf.report(dev, fault);
  }

  /**
   * A sub-device's handler (VFIO's, for an mdev in a guest) takes the page
   * requests its physical device sends with a PASID bound nested through that
   * sub-device; see {@link reportDeviceFault}.
   */
  registerFaultHandler(dev: IommuDevice, handler: DeviceFaultHandler): void {
    if (!this.#ctx.devices.has(dev)) throw new KernelError(Errno.ENODEV, `${dev.name} is not a device of this IOMMU core`);
    if (this.#faultHandlers.has(dev)) throw new KernelError(Errno.EBUSY, `${dev.name} already has a fault handler`);
    this.#faultHandlers.set(dev, handler);
  }

  unregisterFaultHandler(dev: IommuDevice): void {
    this.#faultHandlers.delete(dev);
    this.#answerPending(dev);
  }

  /** Groups nobody will answer now: the driver answers them (iommu_unregister_device_fault_handler warns on pending ones). */
  #answerPending(dev: IommuDevice): void {
    for (const [key, p] of this.#pending) {
      if (p.dev !== dev) continue;
      this.#pending.delete(key);
      dev.physical.iommu?.ops.pageResponse(dev.physical, { pasid: p.pasid, grpid: p.grpid, code: "invalid" });
    }
  }

  /**
   * A page request of physical device `dev` goes to the handler of whoever
   * owns the PASID it carries: a sub-device with the PASID bound nested
   * through it (an mdev whose guest bound it) and a handler of its own takes
   * it; otherwise `dev`'s handler. Upstream finds the handler the same way,
   * from the domain attached at the fault's PASID
   * (drivers/iommu/io-pgfault.c: get_domain_for_iopf(), Linux 6.8).
   */
  reportDeviceFault(dev: IommuDevice, fault: PageRequestFault): boolean {
    const target = this.#faultTarget(dev, fault);
    const handler = this.#faultHandlers.get(target);
    if (handler === undefined) return false;
    const taken = handler(target, fault);
    // iommu_report_device_fault keeps the last request of a group a handler
    // took, so iommu_page_response can match the answer (the IO page fault
    // queue answers its own groups through the driver directly).
    if (taken && fault.last && handler !== this.#iopfHandler) this.#pending.set(pendingKey(target, fault.pasid, fault.grpid), { dev: target, pasid: fault.pasid, grpid: fault.grpid });
    return taken;
  }

  #faultTarget(dev: IommuDevice, fault: PageRequestFault): IommuDevice {
    if (fault.pasid === undefined || dev.isSubDevice) return dev;
    return this.#nesting.requestersAt(dev, fault.pasid).find((r) => r.isSubDevice && this.#faultHandlers.has(r)) ?? dev;
  }

  /**
   * `iommu_page_response` (drivers/iommu/iommu.c, v5.10): a response from
   * the handler's owner (VFIO, for a guest) to a group it took, on the
   * device (or sub-device) the group was reported to; the physical device
   * gets the answer. EINVAL when no such group is pending on `dev` (a
   * response to a fault it never got), ENODEV for a device not probed here.
   */
  pageResponse(dev: IommuDevice, resp: PageResponse): void {
    if (!this.#ctx.devices.has(dev)) throw new KernelError(Errno.ENODEV, `${dev.name} is not a device of this IOMMU core`);
    const key = pendingKey(dev, resp.pasid, resp.grpid);
    if (!this.#pending.has(key)) throw new KernelError(Errno.EINVAL, `${dev.name}: no page request group ${resp.grpid} pending${resp.pasid === undefined ? "" : ` for PASID ${resp.pasid}`}`);
    this.#pending.delete(key);
    dev.physical.iommu?.ops.pageResponse(dev.physical, resp);
  }

  /** Page request groups taken by a handler and not yet answered. */
  get pendingResponses(): number {
    return this.#pending.size;
  }

  // ------------------------------------------------------------------ devices

  probe(iommu: Iommu, opts: ProbeOptions): IommuDevice {
    const ctx = this.#ctx;
    const width = opts.pasidWidth ?? 0;
    if (!Number.isInteger(width) || width < 0 || width > 20) throw new KernelError(Errno.EINVAL, `PASID width ${width} outside 0..20`);
    if ([...ctx.devices].some((d) => !d.isSubDevice && d.sid === opts.sid && d.iommu === iommu)) {
      throw new KernelError(Errno.EEXIST, `requester ID ${opts.sid} is already probed on ${iommu.name}`);
    }
    ctx.kernel.faults.inject("iommu.probe-device");
    const dev = new IommuDevice(opts.name, opts.sid, width, null);
    iommu.ops.probeDevice(dev);
    dev.iommu = iommu;
    const key = `${iommu.id}:${opts.isolation ?? `sid-${opts.sid}`}`;
    let group = this.#groups.get(key);
    const newGroup = group === undefined;
    try {
      if (group === undefined) {
        ctx.kernel.faults.inject("iommu.group-alloc");
        group = new IommuGroup(this.#nextGroupId++, iommu, key);
        group.devices.push(dev);
        dev.group = group;
        this.#domains.setupDefaultDomain(group, this.#defaultDomain);
        this.#groups.set(key, group);
      } else {
        group.devices.push(dev);
        dev.group = group;
        if (group.domain !== null) this.#domains.attachDevTo(group.domain, dev);
      }
    } catch (e) {
      if (group !== undefined) {
        group.devices.splice(group.devices.indexOf(dev), 1);
        if (newGroup) this.#domains.teardownDefaultDomain(group);
      }
      dev.group = null;
      dev.iommu = null;
      iommu.ops.releaseDevice(dev);
      throw e;
    }
    ctx.devices.add(dev);
    ctx.trace("iommu.probe", { device: dev.name }, { iommu: iommu.name, group: group.id });
    return dev;
  }

  addSubDevice(parent: IommuDevice, name: string): IommuDevice {
    if (!this.#ctx.devices.has(parent)) throw new KernelError(Errno.ENODEV, `${parent.name} is not probed`);
    this.#ctx.kernel.faults.inject("iommu.subdev-alloc");
    const dev = new IommuDevice(name, parent.sid, parent.pasidWidth, parent);
    dev.iommu = parent.iommu;
    this.#ctx.devices.add(dev);
    return dev;
  }

  release(dev: IommuDevice): void {
    const ctx = this.#ctx;
    if (!ctx.devices.has(dev)) return;
    const children = [...ctx.devices].filter((d) => d.parent === dev);
    for (const c of children) this.release(c);
    this.#nesting.unbindAllOf(dev);
    this.#sva.releaseDevice(dev);
    if (dev.isSubDevice) {
      if (dev.auxDomain !== null) this.#domains.detachSubDevice(dev.auxDomain, dev);
      this.#faultHandlers.delete(dev);
      this.#answerPending(dev);
      ctx.devices.delete(dev);
      return;
    }
    this.#iopf.flush(dev);
    for (const f of [...dev.features]) this.#disableFeature(dev, f);
    const group = dev.group;
    const iommu = dev.iommu;
    if (group !== null) {
      if (group.domain !== null) this.#domains.detachDevFrom(group.domain, dev);
      group.devices.splice(group.devices.indexOf(dev), 1);
      if (group.devices.length === 0) {
        if (group.domain !== null && group.domain !== group.defaultDomain) {
          // The user's domain loses its last device; the user still frees it.
          group.domain.groups.delete(group);
        }
        this.#domains.teardownDefaultDomain(group);
        this.#groups.delete(group.isolation);
      }
    }
    iommu?.ops.releaseDevice(dev);
    this.#faultHandlers.delete(dev);
    ctx.devices.delete(dev);
    ctx.trace("iommu.release", { device: dev.name }, { iommu: iommu?.name ?? "", group: group?.id ?? -1 });
  }

  groupOf(dev: IommuDevice): IommuGroup {
    if (dev.group === null || !this.#ctx.devices.has(dev)) throw new KernelError(Errno.ENODEV, `${dev.name} has no IOMMU group`);
    return dev.group;
  }

  // ----------------------------------------------------------------- features

  enableFeature(dev: IommuDevice, feature: DevFeature, opts: EnableFeatureOptions): void {
    const iommu = this.#ctx.iommuOf(dev);
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

  disableFeature(dev: IommuDevice, feature: DevFeature): void {
    if (!dev.features.has(feature)) throw new KernelError(Errno.ENODEV, `${feature} is not enabled on ${dev.name}`);
    if (feature === "sva" && (this.#nesting.boundOn(dev) || this.#sva.hasBonds(dev))) throw new KernelError(Errno.EBUSY, `${dev.name} still has PASIDs bound`);
    if (feature === "aux" && [...this.#ctx.devices].some((d) => d.parent === dev && d.auxDomain !== null)) {
      throw new KernelError(Errno.EBUSY, `${dev.name} still has aux-attached sub-devices`);
    }
    this.#disableFeature(dev, feature);
  }

  #disableFeature(dev: IommuDevice, f: DevFeature): void {
    dev.iommu?.ops.disableFeature(dev, f);
    dev.features.delete(f);
    if (f === "sva") dev.maxPasids = 0;
    const stillFaulting = dev.features.has("sva") || dev.features.has("iopf");
    if (!stillFaulting && this.#faultHandlers.get(dev) === this.#iopfHandler) this.#faultHandlers.delete(dev);
  }
}
