import { Errno, type HostPasid, type Ioasid, KernelError, type Spid, isKernelError } from "@vsva/kernel";
import type { IoasidCore, IoasidSet } from "@vsva/ioasid";
import {
  CacheInvType,
  type CacheInvalidateInfo,
  type GpasidBindData,
  type IommuDevice,
  InvGranularity,
  IOMMU_SVA_VTD_GPASID_MTS_MASK,
  NestingFeature,
  type NestingInfo,
  PASID_MAX,
  PasidFormat,
  VtdGpasidFlag,
  sameGpasidBinding,
} from "@vsva/iommu-core";
import { awOf } from "./caps.js";
import { devTlbPasid, orderOf, pasidCachePasid, piotlbPages, piotlbPasid } from "./descriptors.js";
import type { NestingBackend, VtdNestingDomain } from "./domain.js";
import { nestedEntry } from "./pasid-entry.js";
import { ALL_ORDER, type VtdDevice, type VtdHardware } from "./unit.js";

/** VT-d supports nested binds only for devices with the full 20-bit PASID space (v11 VT-d bind_gpasid review, 2020). */
const FULL_PASID_BITS = 20;
/** What a vIOMMU may mirror of the host CAP/ECAP (VTD_CAP_MASK / VTD_ECAP_MASK of Yi Liu's vSVA VFIO series v7, Sep 2020). */
const VTD_CAP_MASK = (1n << 56n) | (1n << 60n);
const VTD_ECAP_MASK = (1n << 29n) | (1n << 30n) | (1n << 31n) | (1n << 34n) | (1n << 40n);

/**
 * One physical device bound at a PASID (`struct intel_svm_dev`), over the
 * nesting domain it is attached to: each device behind a vIOMMU has its own
 * nesting container and so its own domain (DID, second level), and its
 * PASID entry is set up over that domain (drivers/iommu/intel/svm.c v5.10:
 * intel_svm_bind_gpasid() passes the bind's own dmar_domain to
 * intel_pasid_setup_nested()). It has no user count: sibling sub-devices
 * (mdevs) binding the same PASID on one physical device are counted by the
 * IOMMU core, which calls the driver for the first and the last of them
 * only (one owner per record).
 */
export interface SvmDev {
  readonly d: VtdDevice;
  readonly domain: VtdNestingDomain;
}

/**
 * A guest first level bound at a host PASID (`struct intel_svm` with
 * SVM_FLAG_GUEST_MODE), kept as the IOASID's private data as upstream did
 * with `ioasid_set_data`, so that an IOASID FREE notification carries it.
 */
export class GuestSvm {
  readonly devs = new Map<IommuDevice, SvmDev>();
  /** The SPID this driver attached (so the BIND it caused is undone by its UNBIND), or null. */
  spidAttached: Spid | null = null;
  /** FREE arrived: no new binds; the queued teardown owns what is left. */
  defunct = false;
  /** The reference and private data have been given back (set once). */
  released = false;

  constructor(
    readonly owner: NestedBinder,
    readonly pasid: Ioasid,
    readonly set: IoasidSet,
    readonly data: GpasidBindData,
  ) {}

  /** The device record of `d`'s physical device bound over `domain`, if any. */
  devOver(domain: VtdNestingDomain, phys: IommuDevice): SvmDev | undefined {
    const s = this.devs.get(phys);
    return s?.domain === domain ? s : undefined;
  }

  get gpasid(): number | undefined {
    return this.data.gpasid;
  }

  /** Physical devices the PASID is programmed on. */
  get users(): number {
    return this.devs.size;
  }
}

/**
 * `intel_svm_bind_gpasid` / `intel_svm_unbind_gpasid` ("iommu/vt-d: Add bind guest PASID support" v11, 2020) with every
 * fix its review asked for, and the IOASID life cycle of the ioasid.rst tables' IOMMU
 * column: a reference is taken at the first bind of a PASID and dropped when
 * its last device unbinds; attaching the guest PASID as the IOASID's SPID is
 * what makes the IOASID core send BIND (and detaching it, UNBIND).
 */
export class NestedBinder implements NestingBackend {
  readonly #hw: VtdHardware;
  readonly #ioasid: IoasidCore;
  /** Live bindings by host PASID (also reachable as IOASID private data). */
  readonly #svms = new Map<number, GuestSvm>();

  constructor(hw: VtdHardware, ioasid: IoasidCore) {
    this.#hw = hw;
    this.#ioasid = ioasid;
  }

  /** The binding at `pasid`, live or defunct, for page-request routing and tests. */
  svmOf(pasid: number): GuestSvm | undefined {
    return this.#svms.get(pasid);
  }

  get svms(): ReadonlyMap<number, GuestSvm> {
    return this.#svms;
  }

  /**
   * Binds a guest first level at `data.hpasid` on `dev`, a physical device:
   * the core resolves a sub-device to its physical device and counts the
   * siblings, so a sub-device here is refused (EINVAL).
   *
   * Refusals, every one rate-limited in the log since user space triggers them:
   * - EINVAL: no nesting support (ECAP.NEST); format not VT-d; the physical
   *   device lacks the full 20-bit PASID space; hpasid 0 or >= PASID_MAX or
   *   beyond the device's PASID table; guest address width above the unit's
   *   MGAW, or 57 bits without first-level 5-level paging; gpgd not page
   *   aligned or above the domain's second-level width; EAFE/SRE the unit
   *   lacks; any memory-type flag (the unit reports no ECAP.MTS);
   * - ENOENT: the PASID is not allocated or is being freed; EACCES: another
   *   set owns it (from `ioasid_find` with the owner's set);
   * - EBUSY: the device has the PASID bound already (the review of the 2020 VT-d
   *   bind_gpasid patch: binding one device twice is meaningless), the PASID is bound to
   *   another first level, or its entry is taken on the device.
   *
   * A PASID bound on one device may be bound on another over ANOTHER nesting
   * domain (each device behind the vIOMMU has a container of its own):
   * upstream looks the binding up by host PASID and adds a device record
   * with no domain check (drivers/iommu/intel/svm.c v5.10:
   * intel_svm_bind_gpasid()). The IOASID reference, private data and SPID
   * (BIND) are taken at the first device only, given back at the last.
   * - ENOMEM (fault points `vtd.svm-alloc`, `vtd.sdev-alloc`, PASID-table pages).
   */
  bind(domain: VtdNestingDomain, dev: IommuDevice, data: GpasidBindData): void {
    this.#user("bind-gpasid", dev, () => this.#bind(domain, dev, data));
  }

  /**
   * Unbinds `hpasid` on `dev`, a physical device (the core calls this for
   * the last requester leaving it): clears the entry with the complete flush
   * (PASID cache, PASID-based IOTLB, PASID-based device TLB) and a
   * page-request drain for the PASID before it can be reused (the TODO of
   * the 2020 VT-d bind_gpasid patch, done).
   *
   * An unbind of something not bound fails: the v11 review asked "shall we return
   * an error?" and Jacob agreed there is no way to recover, leaving the
   * errno open. We return ENOENT when the PASID itself is gone (freed or
   * being freed: the IOASID design's late unbind, "ioasid_find() fails"), EACCES when
   * another set owns it, and EINVAL when it is live but not bound on this
   * device (what upstream returned for a missing binding).
   */
  unbind(domain: VtdNestingDomain, dev: IommuDevice, hpasid: number): void {
    // Only the device's own record goes: the PASID stays bound on the others.
    this.#user("unbind-gpasid", dev, () => this.#unbind(domain, dev, hpasid));
  }

  /**
   * A guest's invalidation passed through (`intel_iommu_sva_invalidate`):
   * PASID and address granularities, for a PASID bound on `dev` over this
   * domain, flushed with that domain's DID (the DID tagging the device's
   * entry: intel_iommu_sva_invalidate() in drivers/iommu/intel/iommu.c v5.10
   * uses the given dmar_domain's id for the given device). EINVAL for a
   * domain-wide request (VT-d would have to flush other guests' PASIDs
   * sharing the DID), a PASID not bound on this device over this domain, or
   * a PASID-cache flush by address (the core's validity table already
   * refuses it).
   */
  cacheInvalidate(domain: VtdNestingDomain, dev: IommuDevice, info: CacheInvalidateInfo): void {
    this.#user("cache-invalidate", dev, () => {
      if (info.granularity === InvGranularity.DOMAIN) throw new KernelError(Errno.EINVAL, "domain-selective invalidation is not passed through");
      const target = info.granularity === InvGranularity.PASID ? info.pasidInfo : info.addrInfo;
      const pasid = target.pasid;
      if (pasid === undefined) throw new KernelError(Errno.EINVAL, "invalidation without a PASID");
      const svm = this.#svms.get(pasid);
      const d = this.#hw.device(dev);
      if (svm === undefined || svm.defunct || svm.devOver(domain, d.dev) === undefined) {
        throw new KernelError(Errno.EINVAL, `PASID ${pasid} is not bound on ${dev.toString()} over this domain`);
      }
      const did = domain.did;
      const descs: Uint32Array[] = [];
      // An IOTLB invalidation also flushes the device TLB when ATS is on: the
      // guest's vIOMMU exposes no device-TLB invalidation of its own
      // (drivers/iommu/intel/iommu.c v5.10: intel_iommu_sva_invalidate(),
      // the IOTLB case falls through to DEV_IOTLB when info->ats_enabled).
      const devTlb = (info.cache & (CacheInvType.IOTLB | CacheInvType.DEV_IOTLB)) !== 0 && this.#devTlbUsable();
      if (info.granularity === InvGranularity.PASID) {
        if ((info.cache & CacheInvType.PASID) !== 0) descs.push(pasidCachePasid(did, pasid));
        if ((info.cache & CacheInvType.IOTLB) !== 0) descs.push(piotlbPasid(did, pasid));
        if (devTlb) descs.push(devTlbPasid(d, pasid, 0, ALL_ORDER));
      } else {
        const a = info.addrInfo;
        if ((info.cache & CacheInvType.PASID) !== 0) throw new KernelError(Errno.EINVAL, "PASID-cache invalidation by address");
        const size = Number(a.granuleSize * a.nbGranules);
        const addr = Number(a.addr);
        if (!Number.isSafeInteger(size) || size <= 0 || !Number.isSafeInteger(addr)) throw new KernelError(Errno.EINVAL, "invalidation range");
        let am = orderOf(Math.ceil(size / 4096));
        while (Math.floor(addr / (4096 * 2 ** am)) * 4096 * 2 ** am + 4096 * 2 ** am < addr + size) am++;
        if ((info.cache & CacheInvType.IOTLB) !== 0) {
          descs.push(am > this.#hw.caps.maxAddressMask ? piotlbPasid(did, pasid) : piotlbPages(did, pasid, addr, am, a.leaf));
        }
        if (devTlb) descs.push(devTlbPasid(d, pasid, addr, am));
      }
      if (descs.length > 0) this.#hw.qi.submit(descs);
    });
  }

  /** The VT-d part of `iommu_nesting_info` (Yi Liu's vSVA VFIO series v7, Sep 2020). */
  nestingInfo(_domain: VtdNestingDomain): NestingInfo {
    const caps = this.#hw.caps;
    return {
      format: PasidFormat.INTEL_VTD,
      features: NestingFeature.BIND_PGTBL | NestingFeature.CACHE_INVLD,
      addrWidth: caps.fl5 ? 57 : 48,
      pasidBits: caps.pasidBits,
      vendor: { kind: "vtd", capReg: caps.cap & VTD_CAP_MASK, ecapReg: caps.ecap & VTD_ECAP_MASK },
    };
  }

  *boundPasids(domain: VtdNestingDomain): Iterable<{ readonly d: VtdDevice; readonly pasid: number }> {
    for (const svm of this.#svms.values()) {
      for (const s of svm.devs.values()) if (s.domain === domain) yield { d: s.d, pasid: svm.pasid };
    }
  }

  /**
   * The domain is being freed: every device bound over it loses its entry,
   * as an unbind of each would do; devices bound over other domains keep
   * theirs, and the binding is released with its last device.
   */
  releaseAll(domain: VtdNestingDomain): void {
    for (const svm of [...this.#svms.values()]) {
      for (const s of [...svm.devs.values()]) {
        if (s.domain !== domain) continue;
        svm.devs.delete(s.d.dev);
        this.#clear(s.d, svm.pasid);
      }
      this.release(svm);
    }
  }

  /**
   * Clears the PASID on every device it is bound to, with flushes and drain.
   * `silent` (the FREE path) leaves FPD set in the cleared entries, as the
   * native exit path does, so DMA still in flight is not reported. Cannot fail.
   */
  tearDownAll(svm: GuestSvm, silent = false): number {
    const n = svm.devs.size;
    for (const s of [...svm.devs.values()]) {
      svm.devs.delete(s.d.dev);
      this.#clear(s.d, svm.pasid, silent);
    }
    return n;
  }

  /**
   * The IOASID was freed while bound: until the queued teardown runs, the
   * device may still use the PASID, so fault reporting stops now ("the
   * IOMMU driver shall disable fault reporting after free and before
   * unbind", the 2020 IOASID design, Documentation/driver-api/ioasid.rst;
   * `intel_pasid_tear_down_entry(..., fault_ignore)` in
   * drivers/iommu/intel/pasid.c does the same on the mm-exit path). FPD is
   * set in each device's entry and the PASID cache is invalidated so the
   * unit sees it. Atomic context (a notifier); cannot fail.
   */
  silenceFaults(svm: GuestSvm): void {
    for (const s of svm.devs.values()) {
      s.d.table.setFpd(svm.pasid);
      this.#hw.flushBatch("pasid-fpd", [pasidCachePasid(s.domain.did, svm.pasid)]);
    }
  }

  /**
   * `intel_svm_free_if_empty` and the IOASID side of the last unbind: with no
   * device left, detach the SPID this driver attached (UNBIND; silent after
   * FREE), clear the private data and drop the reference. Once only.
   */
  release(svm: GuestSvm): void {
    if (svm.devs.size > 0 || svm.released) return;
    svm.released = true;
    if (this.#svms.get(svm.pasid) === svm) this.#svms.delete(svm.pasid);
    const io = this.#ioasid;
    const quiet = (what: string, fn: () => void): void => {
      try {
        fn();
      } catch (e) {
        if (!isKernelError(e)) throw e;
        this.#hw.warn("svm-release", `PASID ${svm.pasid}: ${what}: ${e.message}`);
      }
    };
    if (svm.spidAttached !== null) quiet("detach SPID", () => io.detachSpid(svm.set, svm.pasid));
    quiet("clear data", () => io.attachData(svm.set, svm.pasid, null));
    quiet("put", () => io.put(svm.set, svm.pasid));
  }

  /** Called by the page-request drain hook, set by the driver. */
  drain: (d: VtdDevice, pasid: number) => void = () => undefined;

  // ------------------------------------------------------------------ internals

  #bind(domain: VtdNestingDomain, dev: IommuDevice, data: GpasidBindData): void {
    const hw = this.#hw;
    const caps = hw.caps;
    if (dev.isSubDevice) throw new KernelError(Errno.EINVAL, `${dev.toString()} is a sub-device: the IOMMU core binds its physical device`);
    const d = hw.device(dev);
    const phys = d.dev;
    if (!caps.nesting) throw new KernelError(Errno.EINVAL, `${hw.name} cannot nest (ECAP.NEST=0)`);
    // The format is typed VT-d by the UAPI decoder, which refuses any other with EINVAL.
    if (phys.pasidWidth !== FULL_PASID_BITS) {
      throw new KernelError(Errno.EINVAL, `${phys.toString()} has ${phys.pasidWidth}-bit PASIDs; nesting needs ${FULL_PASID_BITS}`);
    }
    // Only the host PASID range can be checked: the guest's is the guest's business (v11 VT-d bind_gpasid review).
    const hpasid = data.hpasid;
    const limit = Math.min(PASID_MAX, d.table.maxPasids, 2 ** caps.pasidBits);
    if (!Number.isInteger(hpasid) || hpasid <= 0 || hpasid >= limit) throw new KernelError(Errno.EINVAL, `host PASID ${hpasid} outside 1..${limit - 1}`);
    if (data.addrWidth > caps.mgaw) throw new KernelError(Errno.EINVAL, `guest address width ${data.addrWidth} above the unit's MGAW ${caps.mgaw}`);
    if (data.addrWidth === 57 && !caps.fl5) throw new KernelError(Errno.EINVAL, "5-level guest paging without CAP.FL5LP");
    const gpgd = data.gpgd;
    // The first-level root is a GPA, translated by the second level: it must lie within it (setup_nested).
    if (gpgd % 4096n !== 0n || gpgd > BigInt(domain.aperture.end)) {
      throw new KernelError(Errno.EINVAL, `guest pgd 0x${gpgd.toString(16)} is unaligned or beyond the ${domain.width}-bit second level`);
    }
    const f = data.vtd.flags;
    if ((f & IOMMU_SVA_VTD_GPASID_MTS_MASK) !== 0) throw new KernelError(Errno.EINVAL, "memory-type flags: the unit reports no ECAP.MTS");
    if ((f & VtdGpasidFlag.EAFE) !== 0 && !caps.extendedAccessed) throw new KernelError(Errno.EINVAL, "EAFE without ECAP.EAFS");
    if ((f & VtdGpasidFlag.SRE) !== 0 && !caps.supervisorRequests) throw new KernelError(Errno.EINVAL, "SRE without ECAP.SRS");
    const set = domain.ioasidSet;

    const io = this.#ioasid;
    const pasid = hpasid as number as Ioasid;
    // ENOENT (not allocated, FREE_PENDING), EACCES (another set), EINVAL.
    // Read the data and judge it here: with a getter, find's null would not
    // tell "refused" from an ID allocated with null private data.
    const found = io.find(set, pasid);
    const ours = found === undefined || found === null || (found instanceof GuestSvm && found.owner === this);
    if (!ours) throw new KernelError(Errno.EBUSY, `PASID ${hpasid} carries another user's data`);
    let svm = found instanceof GuestSvm ? found : undefined;
    if (svm !== undefined) {
      if (svm.defunct) throw new KernelError(Errno.ENOENT, `PASID ${hpasid} is being freed`);
      if (svm.devs.has(phys)) throw new KernelError(Errno.EBUSY, `PASID ${hpasid} is already bound on ${dev.toString()}`);
      // Another domain is fine (see above); another first level is not. Upstream
      // does not compare, but its record keeps the first bind's guest PASID
      // only, and one IOASID is one address space (the IOASID design,
      // Documentation/driver-api/ioasid.rst proposal, 2020): the SPID KVM
      // translates, the fault routing and FREE's teardown all assume every
      // device at the PASID walks the same guest table. A guest giving two
      // devices different tables for one PASID is refused, as before, with
      // the comparison the IOMMU core makes (the same function).
      if (!sameGpasidBinding(svm.data, data)) throw new KernelError(Errno.EBUSY, `PASID ${hpasid} is bound to another first level`);
    } else {
      hw.kernel.faults.inject("vtd.svm-alloc");
      svm = new GuestSvm(this, pasid, set, data);
      io.get(set, pasid);
      try {
        io.attachData(set, pasid, svm);
        const gpasid = data.gpasid;
        if (gpasid !== undefined && io.info(pasid)?.spid !== (gpasid as number)) {
          io.attachSpid(set, pasid, gpasid as number as Spid);
          svm.spidAttached = gpasid as number as Spid;
        }
      } catch (e) {
        svm.released = true;
        try {
          io.attachData(set, pasid, null);
        } finally {
          io.put(set, pasid);
        }
        throw e;
      }
      this.#svms.set(hpasid, svm);
    }

    try {
      hw.kernel.faults.inject("vtd.sdev-alloc");
      // PASID tables are per device: each new physical device gets its own nested entry.
      hw.setupPasid(
        d,
        hpasid,
        nestedEntry({
          did: domain.did,
          gpgd: Number(gpgd),
          levels: data.addrWidth === 57 ? 5 : 4,
          slptr: domain.writer.root,
          aw: awOf(domain.width),
          sre: (f & VtdGpasidFlag.SRE) !== 0,
          wpe: (f & VtdGpasidFlag.WPE) !== 0,
          eafe: (f & VtdGpasidFlag.EAFE) !== 0,
          pageWalkSnoop: caps.smPageWalkCoherent,
        }),
      );
    } catch (e) {
      // The entry is untouched on failure: only the tracking goes (free if empty).
      this.release(svm);
      throw e;
    }
    svm.devs.set(phys, { d, domain });
    this.#traceBind(svm, domain, dev, true);
  }

  #unbind(domain: VtdNestingDomain, dev: IommuDevice, hpasid: number): void {
    const set = domain.ioasidSet;
    if (!Number.isInteger(hpasid) || hpasid <= 0 || hpasid >= PASID_MAX) throw new KernelError(Errno.EINVAL, `host PASID ${hpasid}`);
    // After FREE this fails with ENOENT: the teardown work owns the binding now (ioasid.rst exception table, its last row).
    const found = this.#ioasid.find(set, hpasid as Ioasid);
    const svm = found instanceof GuestSvm && found.owner === this ? found : undefined;
    const d = this.#hw.device(dev);
    if (svm === undefined || dev.isSubDevice || svm.devOver(domain, d.dev) === undefined) {
      throw new KernelError(Errno.EINVAL, `PASID ${hpasid} is not bound on ${dev.toString()}`);
    }
    svm.devs.delete(d.dev);
    this.#clear(d, svm.pasid);
    this.#hw.kernel.trace.emit("vtd-drv.unbind-gpasid", "IOMMU", this.#ids(svm, domain, dev), { unit: this.#hw.name, users: svm.users, cleared: true });
    this.release(svm);
  }

  #clear(d: VtdDevice, pasid: number, silent = false): void {
    this.#hw.tearDownPasid(d, pasid);
    // The cleared entry keeps FPD: DMA still in flight after a FREE faults unreported (as svm.ts's release).
    if (silent) d.table.setFpd(pasid);
    this.drain(d, pasid);
  }

  #devTlbUsable(): boolean {
    return this.#hw.caps.deviceTlb && !this.#hw.caps.cachingMode;
  }

  #traceBind(svm: GuestSvm, domain: VtdNestingDomain, dev: IommuDevice, programmed: boolean): void {
    this.#hw.kernel.trace.emit("vtd-drv.bind-gpasid", "IOMMU", this.#ids(svm, domain, dev), { unit: this.#hw.name, users: svm.users, programmed });
  }

  #ids(svm: GuestSvm, domain: VtdNestingDomain, dev: IommuDevice): { device: string; hpasid: number; gpasid?: number; domain: number; set: number } {
    const ids = { device: dev.name, hpasid: svm.pasid as number, domain: domain.did, set: svm.set.id };
    return svm.gpasid === undefined ? ids : { ...ids, gpasid: svm.gpasid };
  }

  /** Refusals of user-triggerable calls are logged rate-limited (v11 VT-d bind_gpasid review), then rethrown. */
  #user(op: string, dev: IommuDevice, fn: () => void): void {
    try {
      fn();
    } catch (e) {
      if (isKernelError(e)) this.#hw.warn(op, `${op} on ${dev.toString()}: ${e.message}`);
      throw e;
    }
  }
}

export type { HostPasid };
