import { Errno, type HostPasid, type Ioasid, KernelError, type TraceIds, isKernelError } from "@vsva/kernel";
import { type CoreContext, type NestingParent, deviceArg, domainArg } from "./core-context.js";
import { IommuDevice } from "./device.js";
import { type IommuDomain, NestedDomain, PagingDomain } from "./domain.js";
import type { NestingParentOps } from "./ops.js";
import { type CacheInvalidateInfo, CacheInvalidateLayout, decodeCacheInvalidateInfo } from "./uapi/cache-invalidate.js";
import { InvGranularity, PASID_MAX } from "./uapi/constants.js";
import { type GpasidBindData, GpasidBindLayout, type UapiDecodeOptions, decodeGpasidBindData, sameGpasidBinding } from "./uapi/gpasid-bind.js";
import { type NestingInfo, NestingInfoLayout, reportNestingInfo } from "./uapi/nesting-info.js";
import { readArgsz } from "./uapi/struct-layout.js";

/**
 * One user-facing nesting op, in the manner of iommufd's ioctl table
 * (drivers/iommu/iommufd/main.c: `iommufd_ioctl_ops`, each entry an
 * `IOCTL_OP(ioctl, fn, struct, last)`): the smallest argsz the op accepts
 * (offsetofend of its last mandatory field; shorter is EINVAL before any
 * other field is looked at) and the decoder that copies and checks the rest.
 */
interface UapiOp<T> {
  readonly minSize: number;
  /** Whether the op acts on a device (a missing one is EINVAL before the struct is read). */
  readonly device: boolean;
  /** Copies the struct in and checks it; an op that only writes its reply passes the buffer on. */
  readonly decode: (user: Uint8Array, opts: UapiDecodeOptions) => T;
}

/** What each op's decoder yields. */
interface NestingUapiArgs {
  readonly "bind-gpasid": GpasidBindData;
  readonly "unbind-gpasid": GpasidBindData;
  readonly "cache-invalidate": CacheInvalidateInfo;
  readonly "nesting-info": Uint8Array;
}

type NestingUapiOp = keyof NestingUapiArgs;

/** The struct checks of every nesting op that takes a user struct, in one table. */
const NESTING_UAPI_OPS: { readonly [K in NestingUapiOp]: UapiOp<NestingUapiArgs[K]> } = {
  // struct iommu_gpasid_bind_data: everything up to the vendor union is mandatory.
  "bind-gpasid": { minSize: GpasidBindLayout.offsetOf("vendor"), device: true, decode: decodeGpasidBindData },
  // Unbind takes the same struct (iommu_uapi_sva_unbind_gpasid).
  "unbind-gpasid": { minSize: GpasidBindLayout.offsetOf("vendor"), device: true, decode: decodeGpasidBindData },
  // struct iommu_cache_invalidate_info: the header up to the granularity union.
  "cache-invalidate": { minSize: CacheInvalidateLayout.offsetOf("granu"), device: true, decode: decodeCacheInvalidateInfo },
  // struct iommu_nesting_info is written back: only argsz is read, and a
  // short argsz gets the size needed (the series' protocol, reportNestingInfo).
  "nesting-info": { minSize: NestingInfoLayout.offsetOfEnd("argsz"), device: false, decode: (user) => user },
};

/**
 * The nesting UAPI of the IOMMU core (include/uapi/linux/iommu.h of the 2020
 * vSVA series, `iommu_uapi_sva_bind_gpasid` and friends in
 * drivers/iommu/iommu.c): bind and unbind a guest first level at a host
 * PASID over a nesting parent, pass a guest's cache invalidation through,
 * and report nesting info. The core owns the guest binding records
 * ({@link NestedDomain}) and counts the requesters of one physical device;
 * drivers program the PASID entry once per physical device.
 */
export class NestingUapi {
  readonly #ctx: CoreContext;
  /** Live nesting parents by their driver object, for what drivers report through the uplink. */
  readonly #parents = new Map<NestingParentOps, NestingParent>();
  /**
   * Which binding programmed the nested PASID entry of (physical device,
   * host PASID). A device has one PASID table, so sibling mdevs reaching it
   * through different aux domains (one VFIO container each: the vSVA series
   * takes one group per nesting container) share one entry: the first bind
   * programs it, the others borrow it, and the driver is called again only
   * when the last one leaves (intel_svm_bind_gpasid counts such users per
   * PASID and device, drivers/iommu/intel/svm.c v5.10).
   */
  readonly #owners = new Map<IommuDevice, Map<number, NestedDomain>>();

  constructor(ctx: CoreContext) {
    this.#ctx = ctx;
  }

  /** Nesting info of a nesting parent (`iommu_nesting_info` of the 2020 vSVA series); ENODEV for any other domain, as the v7 VT-d patch. EINVAL for no domain. */
  nestingInfo(domain: IommuDomain | null | undefined): NestingInfo {
    const p = nestingParentOf(domainArg(domain, "nesting info"), Errno.ENODEV);
    return p.driver.nestingInfo();
  }

  /** The nesting info written to a user buffer; returns the size it needs. */
  nestingInfoToUser(domain: IommuDomain | null | undefined, user: Uint8Array | null | undefined): number {
    return this.#dispatch("nesting-info", null, user, {}, (buf) => reportNestingInfo(this.nestingInfo(domain), buf));
  }

  bindGpasid(domain: IommuDomain | null | undefined, dev: IommuDevice | null | undefined, user: Uint8Array | null | undefined, opts: UapiDecodeOptions): NestedDomain {
    return this.#dispatch("bind-gpasid", dev, user, opts, (data) => this.bindGpasidData(domain, dev, data));
  }

  bindGpasidData(domain: IommuDomain | null | undefined, devArg: IommuDevice | null | undefined, dataArg: GpasidBindData | null | undefined): NestedDomain {
    const ctx = this.#ctx;
    const dev = deviceArg(devArg, "bind_gpasid");
    const data = bindDataArg(dataArg);
    const parent = nestingParentOf(domainArg(domain, "bind_gpasid"), Errno.EINVAL);
    if (dev.domain !== parent) throw new KernelError(Errno.EINVAL, `${dev.name} is not attached to domain ${parent.id}`);
    const phys = dev.physical;
    if (!phys.hasFeature("sva")) throw new KernelError(Errno.EINVAL, `SVA is not enabled on ${phys.name}`);
    if (data.hpasid >= phys.maxPasids) throw new KernelError(Errno.EINVAL, `hpasid ${data.hpasid} beyond ${phys.name}'s ${phys.maxPasids} PASIDs`);
    this.#checkOwner(parent, data.hpasid);
    let nested = parent.nested.get(data.hpasid);
    if (nested?.bound.get(phys)?.has(dev) === true) throw new KernelError(Errno.EBUSY, `PASID ${data.hpasid} is already bound on ${dev.name}`);
    // The PASID may be bound over other nesting parents of the VM (another
    // device's container, or a sibling mdev's aux domain): upstream adds the
    // device with no domain check (drivers/iommu/intel/svm.c v5.10:
    // intel_svm_bind_gpasid()). Only the first level must be the same
    // everywhere; refused here, before the driver or any record is touched.
    const other = this.#boundElsewhere(parent, data.hpasid).find((n) => !sameGpasidBinding(n.data, data));
    if (other !== undefined) {
      throw new KernelError(Errno.EBUSY, `PASID ${data.hpasid} is bound to another first level (domain ${other.parent.id})`);
    }
    const owner = this.#owners.get(phys)?.get(data.hpasid);
    ctx.kernel.faults.inject("iommu.bind-gpasid");
    const fresh = nested === undefined;
    nested ??= new NestedDomain(ctx.allocDomainId(), parent, data);
    const requesters = nested.bound.get(phys);
    // The first requester on this device programs the entry, unless a sibling
    // through another aux domain already did: then it borrows that entry.
    const driverCalled = requesters === undefined && owner === undefined;
    if (driverCalled) {
      parent.driver.bindGpasid(phys, data);
      this.#setOwner(phys, data.hpasid, nested);
    }
    if (requesters === undefined) nested.bound.set(phys, new Set([dev]));
    else requesters.add(dev);
    if (fresh) {
      parent.nested.set(data.hpasid, nested);
      ctx.liveDomains++;
    }
    ctx.trace("iommu.bind-gpasid", pasidIds(nested, dev), { users: nested.users, driverCalled });
    return nested;
  }

  unbindGpasid(domain: IommuDomain | null | undefined, dev: IommuDevice | null | undefined, user: Uint8Array | null | undefined, opts: UapiDecodeOptions): void {
    this.#dispatch("unbind-gpasid", dev, user, opts, (data) => this.unbindGpasidPasid(domain, dev, data.hpasid));
  }

  unbindGpasidPasid(domain: IommuDomain | null | undefined, devArg: IommuDevice | null | undefined, hpasid: number): void {
    const dev = deviceArg(devArg, "unbind_gpasid");
    const parent = nestingParentOf(domainArg(domain, "unbind_gpasid"), Errno.EINVAL);
    // A PASID never allocated, or freed since (also a late unbind after FREE,
    // whose binding the driver has torn down and reported): ENOENT.
    this.#checkOwner(parent, hpasid);
    const nested = parent.nested.get(hpasid as NestedDomain["hpasid"]);
    if (nested?.bound.get(dev.physical)?.has(dev) !== true) throw new KernelError(Errno.EINVAL, `PASID ${hpasid} is not bound on ${dev.name}`);
    this.#unbindOne(nested, dev);
  }

  cacheInvalidate(domain: IommuDomain | null | undefined, dev: IommuDevice | null | undefined, user: Uint8Array | null | undefined, opts: UapiDecodeOptions): CacheInvalidateInfo {
    return this.#dispatch("cache-invalidate", dev, user, opts, (info) => this.#cacheInvalidate(domain, deviceArg(dev, "cache invalidate"), info));
  }

  #cacheInvalidate(domain: IommuDomain | null | undefined, dev: IommuDevice, info: CacheInvalidateInfo): CacheInvalidateInfo {
    const parent = nestingParentOf(domainArg(domain, "cache invalidate"), Errno.EINVAL);
    if (dev.domain !== parent) throw new KernelError(Errno.EINVAL, `${dev.name} is not attached to domain ${parent.id}`);
    const pasid = info.granularity === InvGranularity.PASID ? info.pasidInfo.pasid : info.granularity === InvGranularity.ADDR ? info.addrInfo.pasid : undefined;
    if (pasid !== undefined) {
      this.#checkOwner(parent, pasid);
      if (parent.nested.get(pasid)?.bound.get(dev.physical)?.has(dev) !== true) throw new KernelError(Errno.EINVAL, `PASID ${pasid} is not bound on ${dev.name}`);
    }
    // A sibling mdev reaching the PASID through another aux domain borrows the
    // entry the first binder programmed on the physical device (#owners): the
    // flush goes to the driver over the domain that entry is set up over, whose
    // DID tags what the unit cached (intel_iommu_sva_invalidate() flushes with
    // the DID of the domain the device's entry uses, drivers/iommu/intel/iommu.c v5.10).
    const owner = pasid === undefined ? undefined : this.#owners.get(dev.physical)?.get(pasid);
    (owner?.parent ?? parent).driver.cacheInvalidate(dev.physical, info);
    this.#ctx.trace("iommu.cache-invalidate", { domain: parent.id, device: dev.name, ...(pasid === undefined ? {} : { hpasid: pasid }) }, {
      cache: info.cache,
      granularity: info.granularity,
    });
    return info;
  }

  // ------------------------------------------------ for the rest of the core

  /** A paging domain was allocated: a nesting parent is remembered for the uplink. */
  adopt(domain: PagingDomain): void {
    if (domain.driver.kind === "nesting-parent" && domain.ioasidSet !== null) this.#parents.set(domain.driver, domain as NestingParent);
  }

  /**
   * `IommuCoreUplink.gpasidFreed`: the driver tore the binding at `hpasid`
   * down itself (IOASID FREE before unbind). The record goes, with every
   * requester counted on it, and the driver is not called back: it owns that
   * teardown. Cannot fail; unknown domains and PASIDs are ignored.
   */
  gpasidFreed(driver: NestingParentOps, hpasid: HostPasid): void {
    const reporter = this.#parents.get(driver);
    if (reporter === undefined) return;
    // The IOASID is gone for the whole VM: every sibling's record of it goes too.
    for (const parent of this.#parents.values()) {
      if (parent.ioasidSet !== reporter.ioasidSet) continue;
      const nested = parent.nested.get(hpasid);
      if (nested === undefined) continue;
      for (const phys of nested.bound.keys()) if (this.#owners.get(phys)?.get(hpasid) === nested) this.#owners.get(phys)?.delete(hpasid);
      const users = nested.users;
      for (const reqs of nested.bound.values()) reqs.clear();
      nested.bound.clear();
      nested.parent.nested.delete(hpasid);
      nested.freed = true;
      this.#ctx.liveDomains--;
      const ids: TraceIds = { domain: nested.parent.id, hpasid };
      this.#ctx.trace("iommu.gpasid-freed", nested.gpasid === undefined ? ids : { ...ids, gpasid: nested.gpasid }, { users });
    }
  }

  /** The requesters (the device itself or sub-devices of it) that have guest PASID `hpasid` bound through physical device `phys`, over any nesting parent. */
  requestersAt(phys: IommuDevice, hpasid: HostPasid): IommuDevice[] {
    const out: IommuDevice[] = [];
    for (const parent of this.#parents.values()) out.push(...(parent.nested.get(hpasid)?.bound.get(phys) ?? []));
    return out;
  }

  /** Whether `dev` (a physical device) has any guest PASID bound. */
  boundOn(dev: IommuDevice): boolean {
    for (const d of this.#ctx.devices) {
      const domain = d.domain;
      if (!(domain instanceof PagingDomain)) continue;
      for (const n of domain.nested.values()) if (n.bound.has(dev)) return true;
    }
    return false;
  }

  /** Unbinds every PASID `dev` (as requester) has through `only` or its own domain. Cannot fail. */
  unbindAllOf(dev: IommuDevice, only?: PagingDomain): void {
    const domain = only ?? dev.domain;
    if (!(domain instanceof PagingDomain)) return;
    for (const n of [...domain.nested.values()]) if (n.bound.get(dev.physical)?.has(dev) === true) this.#unbindOne(n, dev);
  }

  /** The nesting parent is being freed: every binding over it goes. Cannot fail. */
  dropAll(domain: PagingDomain): void {
    for (const n of [...domain.nested.values()]) this.#dropNested(n);
    this.#parents.delete(domain.driver as NestingParentOps);
  }

  // --------------------------------------------------------------- internals

  /**
   * The owner check made before any driver call (drivers/iommu/ioasid.c:
   * ioasid_find() with the domain's set, as in the 2020 vSVA series): EINVAL for a value that is no host PASID,
   * ENOENT when the PASID is not allocated or is being freed (FREE_PENDING),
   * EACCES when another set (another VM) owns it.
   */
  #checkOwner(parent: NestingParent, hpasid: number): void {
    if (!Number.isInteger(hpasid) || hpasid <= 0 || hpasid >= PASID_MAX) throw new KernelError(Errno.EINVAL, `host PASID ${hpasid}`);
    this.#ctx.ioasid.find(parent.ioasidSet, hpasid as Ioasid);
  }

  /** The live records of `hpasid` over every nesting parent of `parent`'s IOASID set, `parent` included. */
  #boundElsewhere(parent: NestingParent, hpasid: HostPasid): NestedDomain[] {
    const out: NestedDomain[] = [];
    for (const p of this.#parents.values()) {
      const n = p.ioasidSet === parent.ioasidSet ? p.nested.get(hpasid) : undefined;
      if (n !== undefined) out.push(n);
    }
    return out;
  }

  #unbindOne(nested: NestedDomain, dev: IommuDevice): void {
    const phys = dev.physical;
    const requesters = nested.bound.get(phys);
    if (requesters === undefined) return;
    requesters.delete(dev);
    let driverCalled = false;
    if (requesters.size === 0) {
      nested.bound.delete(phys);
      driverCalled = this.#release(phys, nested);
    }
    this.#ctx.trace("iommu.unbind-gpasid", pasidIds(nested, dev), { users: nested.users, driverCalled });
    if (nested.bound.size === 0) this.#dropNested(nested);
  }

  #dropNested(nested: NestedDomain): void {
    for (const [phys, reqs] of [...nested.bound]) {
      reqs.clear();
      nested.bound.delete(phys);
      this.#release(phys, nested);
    }
    if (nested.parent.nested.get(nested.hpasid) === nested) {
      nested.parent.nested.delete(nested.hpasid);
      nested.freed = true;
      this.#ctx.liveDomains--;
    }
  }

  #setOwner(phys: IommuDevice, hpasid: number, nested: NestedDomain): void {
    let m = this.#owners.get(phys);
    if (m === undefined) this.#owners.set(phys, (m = new Map<number, NestedDomain>()));
    m.set(hpasid, nested);
  }

  /**
   * `nested` has no requester left on `phys`. If it programmed the entry, the
   * entry goes (the driver's unbind, with its flushes); if a sibling still
   * holds the PASID through another aux domain, the entry is programmed
   * again over that sibling's second level, so it never points at a domain
   * being freed (both map the same guest RAM). Returns whether the driver
   * was called. Cannot fail: a sibling the driver cannot take over for loses
   * its binding, logged.
   */
  #release(phys: IommuDevice, nested: NestedDomain): boolean {
    const hpasid = nested.hpasid;
    const owners = this.#owners.get(phys);
    if (owners?.get(hpasid) !== nested) return false;
    owners.delete(hpasid);
    nested.parent.driver.unbindGpasid(phys, hpasid);
    const heir = [...this.#parents.values()].map((p) => p.nested.get(hpasid)).find((n) => n !== undefined && n !== nested && n.bound.has(phys));
    if (heir === undefined) return true;
    try {
      heir.parent.driver.bindGpasid(phys, heir.data);
      this.#setOwner(phys, hpasid, heir);
    } catch (e) {
      if (!isKernelError(e)) throw e;
      heir.bound.delete(phys);
      this.#ctx.kernel.log.warn("iommu.gpasid-handover", `PASID ${hpasid} on ${phys.name}: a sibling could not take the entry over (${e.message}); its binding is gone`, "IOMMU");
      if (heir.bound.size === 0) this.#dropNested(heir);
    }
    return true;
  }

  /**
   * Runs one user-reachable op (iommufd's `iommufd_fops_ioctl` in small): the
   * struct checks of its table entry, then the handler. Refusals are
   * rate-limited warnings and traced, never crashes.
   */
  #dispatch<K extends NestingUapiOp, R>(
    op: K,
    devArg: IommuDevice | null | undefined,
    user: Uint8Array | null | undefined,
    opts: UapiDecodeOptions,
    handler: (arg: NestingUapiArgs[K]) => R,
  ): R {
    const entry: UapiOp<NestingUapiArgs[K]> = NESTING_UAPI_OPS[op];
    const name = devArg instanceof IommuDevice ? devArg.name : entry.device ? "no device" : "-";
    try {
      if (entry.device) deviceArg(devArg, op);
      // A null or absent user pointer faults in copy_from_user: EFAULT.
      if (!(user instanceof Uint8Array)) throw new KernelError(Errno.EFAULT, `${op}: no user buffer`);
      const argsz = readArgsz(user);
      if (argsz < entry.minSize) throw new KernelError(Errno.EINVAL, `argsz ${argsz} below the ${entry.minSize} mandatory bytes`);
      return handler(entry.decode(user, opts));
    } catch (e) {
      if (isKernelError(e)) {
        this.#ctx.kernel.log.warn(`iommu.${op}`, `${op} on ${name}: ${e.message}`, "IOMMU");
        this.#ctx.trace("iommu.uapi-refused", { device: name }, { op, errno: e.errno, message: e.message });
      }
      throw e;
    }
  }
}

/** In-kernel bind data (already decoded) as much as the core reads of it: EINVAL when missing or malformed. */
function bindDataArg(data: GpasidBindData | null | undefined): GpasidBindData {
  if (data === null || data === undefined) throw new KernelError(Errno.EINVAL, "bind_gpasid: no bind data");
  if (!looksLikeBindData(data)) throw new KernelError(Errno.EINVAL, "bind_gpasid: malformed bind data");
  return data;
}

function looksLikeBindData(d: unknown): d is GpasidBindData {
  if (typeof d !== "object" || d === null) return false;
  return (
    "hpasid" in d && typeof d.hpasid === "number" && "gpgd" in d && typeof d.gpgd === "bigint" && "addrWidth" in d && typeof d.addrWidth === "number" &&
    "vtd" in d && typeof d.vtd === "object" && d.vtd !== null && "flags" in d.vtd && typeof d.vtd.flags === "number"
  );
}

function nestingParentOf(domain: IommuDomain, errno: Errno): NestingParent {
  if (!(domain instanceof PagingDomain) || domain.freed || domain.driver.kind !== "nesting-parent") {
    throw new KernelError(errno, `domain ${domain.id} (${domain.type}) is not a nesting parent`);
  }
  return domain as NestingParent;
}

function pasidIds(nested: NestedDomain, dev: IommuDevice): TraceIds {
  const ids: TraceIds = { device: dev.name, domain: nested.parent.id, hpasid: nested.hpasid };
  return nested.gpasid === undefined ? ids : { ...ids, gpasid: nested.gpasid };
}

