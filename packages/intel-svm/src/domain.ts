import { Errno, type HostPasid, type Ioasid, KernelError, isKernelError } from "@vsva/kernel";
import { type PteProt, TableWriter, slFormat } from "@vsva/iommu-hw";
import type { IoasidCore, IoasidSet } from "@vsva/ioasid";
import {
  type CacheInvalidateInfo,
  type GpasidBindData,
  type IommuDevice,
  IommuProt,
  type MapPagesResult,
  type NestingInfo,
  type NestingParentOps,
  type PagingDomainOps,
} from "@vsva/iommu-core";
import { awOf, defaultSlWidth, levelsOf } from "./caps.js";
import { devTlb, devTlbPasid, iotlbDomain, iotlbPages, orderOf } from "./descriptors.js";
import { secondLevelEntry } from "./pasid-entry.js";
import { ALL_ORDER, type VtdDevice, type VtdHardware } from "./unit.js";

const PAGE = 4096;

/** What nesting parents hand to the bind_gpasid machinery (nested.ts). */
export interface NestingBackend {
  bind(domain: VtdNestingDomain, dev: IommuDevice, data: GpasidBindData): void;
  unbind(domain: VtdNestingDomain, dev: IommuDevice, hpasid: number): void;
  cacheInvalidate(domain: VtdNestingDomain, dev: IommuDevice, info: CacheInvalidateInfo): void;
  nestingInfo(domain: VtdNestingDomain): NestingInfo;
  /** (device, PASID) pairs bound over the domain, for the device-TLB part of second-level flushes. */
  boundPasids(domain: VtdNestingDomain): Iterable<{ readonly d: VtdDevice; readonly pasid: number }>;
  /** Tears down whatever is still bound over the domain (it is being freed). */
  releaseAll(domain: VtdNestingDomain): void;
}

export interface DomainEnv {
  readonly hw: VtdHardware;
  readonly ioasid: IoasidCore;
  /** The set default PASIDs of aux domains come from (the host's own set). */
  readonly hostSet: IoasidSet;
}

/**
 * A paging domain (`struct dmar_domain`): a second-level table built with
 * the VT-d second-level format, a domain ID taken at first attach, and the
 * PASID entries that point at it: PASID 0 (RID_PASID) of every device
 * attached for requests without PASID, and, for an aux domain, one default
 * PASID (an IOASID from the host's set) whose second-level-only entry is
 * shared by the sub-devices of one physical device (IOMMU-backed mdevs DMA
 * with it). Map and unmap are the core's primitives; unmap is followed by
 * the core's flushIotlb, which invalidates the IOTLB by DID and the device
 * TLBs of every PASID that translates through this table.
 */
export abstract class VtdDomainBase {
  did = 0;
  readonly width: 39 | 48 | 57;
  readonly writer: TableWriter;
  readonly pgsizeBitmap: number;
  readonly aperture: { readonly start: number; readonly end: number };
  /** requester -> PASID of the entry that serves it. */
  readonly attached = new Map<IommuDevice, number>();
  /** The aux default PASID, allocated at the first sub-device attach. */
  auxPasid: Ioasid | null = null;
  /** physical device -> sub-devices using the aux default PASID entry on it. */
  readonly #auxUsers = new Map<IommuDevice, Set<IommuDevice>>();
  protected readonly env: DomainEnv;
  freed = false;

  /** ENOMEM for the root table. */
  constructor(env: DomainEnv) {
    this.env = env;
    const caps = env.hw.caps;
    this.width = defaultSlWidth(caps);
    const pages = env.hw.pages;
    this.writer = new TableWriter(env.hw.mem, slFormat({ levels: levelsOf(this.width), pages2m: caps.sl2m, pages1g: caps.sl1g }), {
      alloc: () => {
        try {
          return pages.allocPage("vtd.sl-table");
        } catch (e) {
          if (isKernelError(e)) return null;
          throw e;
        }
      },
      free: (pa) => pages.freePages(pa),
      outBits: Math.min(env.hw.mem.addrBits, 52),
    });
    this.pgsizeBitmap = PAGE | (caps.sl2m ? 2 ** 21 : 0) | (caps.sl1g ? 2 ** 30 : 0);
    this.aperture = { start: 0, end: 2 ** this.width - 1 };
  }

  /** EINVAL/ENODEV (device not here), ENOSPC (no domain ID), EBUSY (PASID entry in use), ENOMEM. */
  attachDev(dev: IommuDevice): void {
    const hw = this.env.hw;
    const d = hw.device(dev);
    if (this.attached.has(dev)) throw new KernelError(Errno.EBUSY, `${dev.toString()} is already attached`);
    const freshDid = this.did === 0;
    // A domain that already has its domain ID (say the default domain a group goes back to when VFIO detaches it)
    // allocates nothing for a device's own attach, which then cannot fail: the core's __iommu_detach_group re-attach
    // relies on that (drivers/iommu/iommu.c WARNs if it ever does fail).
    if (freshDid || dev.isSubDevice) hw.kernel.faults.inject("vtd.attach");
    if (freshDid) this.did = hw.dids.alloc();
    try {
      if (dev.isSubDevice) this.#attachAux(d, dev);
      else {
        hw.setupPasid(d, 0, this.#slEntry());
        this.attached.set(dev, 0);
      }
    } catch (e) {
      if (freshDid && this.attached.size === 0) {
        hw.dids.free(this.did);
        this.did = 0;
      }
      throw e;
    }
  }

  detachDev(dev: IommuDevice): void {
    const pasid = this.attached.get(dev);
    if (pasid === undefined) return;
    const hw = this.env.hw;
    const d = hw.device(dev);
    this.attached.delete(dev);
    if (!dev.isSubDevice) {
      hw.tearDownPasid(d, 0);
      return;
    }
    const users = this.#auxUsers.get(d.dev);
    users?.delete(dev);
    if (users?.size === 0) {
      this.#auxUsers.delete(d.dev);
      hw.tearDownPasid(d, pasid);
    }
  }

  /** `intel_iommu_aux_get_pasid`: the default PASID whose entry serves `sub`. EINVAL when `sub` is not aux-attached here. */
  auxGetPasid(sub: IommuDevice): HostPasid {
    const pasid = this.attached.get(sub);
    if (!sub.isSubDevice || pasid === undefined) throw new KernelError(Errno.EINVAL, `${sub.toString()} is not aux-attached to this domain`);
    return pasid as HostPasid;
  }

  free(): void {
    if (this.freed) return;
    for (const dev of [...this.attached.keys()]) this.detachDev(dev);
    const hw = this.env.hw;
    for (const pa of this.writer.tablePages()) hw.pages.freePages(pa);
    if (this.did !== 0) hw.dids.free(this.did);
    this.did = 0;
    if (this.auxPasid !== null) {
      this.env.ioasid.free(this.env.hostSet, this.auxPasid);
      this.auxPasid = null;
    }
    this.freed = true;
  }

  mapPages(iova: number, paddr: number, pgsize: number, pgcount: number, prot: number): MapPagesResult {
    const p: PteProt = { read: (prot & IommuProt.READ) !== 0, write: (prot & IommuProt.WRITE) !== 0, snoop: false };
    try {
      this.env.hw.kernel.faults.inject("vtd.map");
      // All or nothing: the writer checks the whole range before it writes.
      this.writer.map(iova, paddr, pgsize * pgcount, p, pgsize);
      return { mapped: pgsize * pgcount, error: null };
    } catch (e) {
      return { mapped: 0, error: e instanceof Error ? e : new KernelError(Errno.EIO, String(e)) };
    }
  }

  unmapPages(iova: number, pgsize: number, pgcount: number): number {
    try {
      return this.writer.unmap(iova, pgsize * pgcount);
    } catch (e) {
      if (!isKernelError(e)) throw e;
      this.env.hw.warn("unmap", `unmap [0x${iova.toString(16)}, +0x${(pgsize * pgcount).toString(16)}): ${e.message}`);
      return 0;
    }
  }

  iovaToPhys(iova: number): number | null {
    const m = this.writer.lookup(iova);
    return m === null ? null : m.pa + (iova - m.va);
  }

  /** In caching mode the unit may hold not-present entries: a new mapping needs a page-selective flush. */
  syncMap(iova: number, size: number): void {
    if (this.did === 0 || !this.env.hw.caps.cachingMode) return;
    this.#flushRange(iova, size, false);
  }

  flushIotlb(iova: number, size: number): void {
    if (this.did === 0) return;
    this.#flushRange(iova, size, true);
  }

  flushIotlbAll(): void {
    if (this.did === 0) return;
    this.env.hw.flushBatch("iotlb-all", [iotlbDomain(this.did), ...this.#devTlbDescs(0, ALL_ORDER)]);
  }

  /** Nested bindings over this domain; none for a plain paging domain. */
  protected boundPasids(): Iterable<{ readonly d: VtdDevice; readonly pasid: number }> {
    return [];
  }

  /**
   * IOTLB page-selective by DID over the smallest aligned power-of-two block
   * covering the range (domain-selective beyond CAP.MAMV), then the device
   * TLBs. Page-selective type 2 is the flush for second-level and nested
   * entries (VT-d §6.5.2 IOTLB descriptor); PASID-based type 6 would miss second-level-only ones.
   */
  #flushRange(iova: number, size: number, devTlbToo: boolean): void {
    const hw = this.env.hw;
    let am = orderOf(Math.max(1, Math.ceil(size / PAGE)));
    while (Math.floor(iova / (PAGE * 2 ** am)) * PAGE * 2 ** am + PAGE * 2 ** am < iova + size) am++;
    const iotlb = am > hw.caps.maxAddressMask ? iotlbDomain(this.did) : iotlbPages(this.did, iova, am, false);
    hw.flushBatch("iotlb", devTlbToo ? [iotlb, ...this.#devTlbDescs(iova, am)] : [iotlb]);
  }

  #devTlbDescs(iova: number, order: number): Uint32Array[] {
    const hw = this.env.hw;
    if (!hw.caps.deviceTlb || hw.caps.cachingMode) return [];
    const out: Uint32Array[] = [];
    const seen = new Set<string>();
    for (const [dev, pasid] of this.attached) {
      const d = hw.device(dev);
      const key = `${d.sid}/${pasid}`;
      if (seen.has(key)) continue;
      seen.add(key);
      out.push(pasid === 0 ? devTlb(d, iova, order) : devTlbPasid(d, pasid, iova, order));
    }
    // Device-TLB entries of nested PASIDs are keyed by guest-virtual address: a GPA range cannot name them.
    for (const { d, pasid } of this.boundPasids()) out.push(devTlbPasid(d, pasid, 0, ALL_ORDER));
    return out;
  }

  #slEntry(): Uint32Array {
    const hw = this.env.hw;
    return secondLevelEntry({ did: this.did, slptr: this.writer.root, aw: awOf(this.width), pageWalkSnoop: hw.caps.smPageWalkCoherent });
  }

  #attachAux(d: VtdDevice, sub: IommuDevice): void {
    const { hw, ioasid, hostSet } = this.env;
    let fresh = false;
    if (this.auxPasid === null) {
      const max = Math.min(d.table.maxPasids, 2 ** hw.caps.pasidBits) - 1;
      this.auxPasid = ioasid.alloc(hostSet, 1, max);
      fresh = true;
    }
    const pasid = this.auxPasid;
    try {
      let users = this.#auxUsers.get(d.dev);
      if (users === undefined) {
        if (pasid >= d.table.maxPasids) throw new KernelError(Errno.EINVAL, `aux PASID ${pasid} beyond ${d.dev.toString()}'s PASID table`);
        hw.setupPasid(d, pasid, this.#slEntry());
        users = new Set();
        this.#auxUsers.set(d.dev, users);
      }
      users.add(sub);
      this.attached.set(sub, pasid);
    } catch (e) {
      if (fresh) {
        ioasid.free(hostSet, pasid);
        this.auxPasid = null;
      }
      throw e;
    }
  }
}

export class VtdPagingDomain extends VtdDomainBase implements PagingDomainOps {
  readonly kind = "paging" as const;
}

/**
 * A paging domain that is the second level of nested translation. Its owner
 * (VFIO, for one VM) names the IOASID set whose PASIDs may be bound over it
 * when it allocates the domain (the core's domain allocation request): a
 * bind or unbind of a PASID outside that set is refused (the IOASID design, Documentation/driver-api/ioasid.rst in the
 * 2020 vSVA series: damage stays within the guest that owns the set).
 */
export class VtdNestingDomain extends VtdDomainBase implements NestingParentOps {
  readonly kind = "nesting-parent" as const;
  readonly ioasidSet: IoasidSet;
  readonly #backend: NestingBackend;

  constructor(env: DomainEnv, backend: NestingBackend, ioasidSet: IoasidSet) {
    super(env);
    this.#backend = backend;
    this.ioasidSet = ioasidSet;
  }

  bindGpasid(dev: IommuDevice, data: GpasidBindData): void {
    this.#backend.bind(this, dev, data);
  }

  /** The core's contract: cannot fail. A refusal (already gone after FREE, say) was logged by the backend. */
  unbindGpasid(dev: IommuDevice, hpasid: HostPasid): void {
    try {
      this.#backend.unbind(this, dev, hpasid);
    } catch (e) {
      if (!isKernelError(e)) throw e;
    }
  }

  cacheInvalidate(dev: IommuDevice, info: CacheInvalidateInfo): void {
    this.#backend.cacheInvalidate(this, dev, info);
  }

  nestingInfo(): NestingInfo {
    return this.#backend.nestingInfo(this);
  }

  protected override boundPasids(): Iterable<{ readonly d: VtdDevice; readonly pasid: number }> {
    return this.#backend.boundPasids(this);
  }

  override free(): void {
    if (!this.freed) this.#backend.releaseAll(this);
    super.free();
  }
}
