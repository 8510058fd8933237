import type { HostPasid } from "@vsva/kernel";
import type { IoasidSet } from "@vsva/ioasid";
import type { IommuDevice } from "./device.js";
import type { CacheInvalidateInfo } from "./uapi/cache-invalidate.js";
import type { GpasidBindData } from "./uapi/gpasid-bind.js";
import type { PgtableFormat } from "./mm/cpu-pgtable.js";
import type { NestingInfo } from "./uapi/nesting-info.js";

/**
 * The driver contract (include/linux/iommu.h `iommu_ops` / `iommu_domain_ops`),
 * split per IOMMU and per domain. Drivers implement primitives; the core
 * validates, splits and unwinds. What a driver can do is asked
 * through {@link IommuOps.capable} and {@link IommuOps.devFeatures}, never
 * guessed from which methods exist: there are no optional callbacks. Which
 * domain operations exist follows from the domain's kind.
 *
 * Errors: every method that can fail throws `KernelError` with the errno named
 * in its comment. Teardown methods (release, detach, unbind, free) cannot fail.
 */

/** System-wide capabilities (`enum iommu_cap` plus what the 2020 series probed for). */
export type IommuCap =
  /** DMA is cache coherent; IOMMU_CACHE is honoured. */
  | "cache-coherency"
  /** IOMMU_NOEXEC is honoured. */
  | "noexec"
  /** Two-stage translation: a paging domain may be a nesting parent (DOMAIN_ATTR_NESTING). */
  | "nesting";

/** Per-device features (`enum iommu_dev_features`) a driver may enable. */
export type DevFeature = "aux" | "sva" | "iopf";

/** IOMMU_READ etc. (include/linux/iommu.h). */
export const IommuProt = {
  READ: 1 << 0,
  WRITE: 1 << 1,
  CACHE: 1 << 2,
  NOEXEC: 1 << 3,
  MMIO: 1 << 4,
  PRIV: 1 << 5,
} as const;
export const IOMMU_PROT_KNOWN = 0x3f;

/** What a domain is for (`IOMMU_DOMAIN_*`). "nested" and "sva" are made by the core, not allocated directly. */
export type DomainType = "blocked" | "identity" | "dma" | "unmanaged" | "nested" | "sva";

export type DomainAllocRequest =
  | { readonly type: "blocked" }
  | { readonly type: "identity" }
  /** A paging domain. */
  | { readonly type: "dma" | "unmanaged"; readonly nestingParent: false }
  /**
   * The second level of nested translation (requires capable("nesting")),
   * owned by `ioasidSet` (VFIO's set for one VM): only PASIDs of that set
   * may be bound, unbound or invalidated over it. The set is fixed here, for
   * the domain's life, and the core holds a set reference until it is freed
   * (the IOASID design's rule that damage stays within the guest owning the
   * set: Documentation/driver-api/ioasid.rst in the 2020 vSVA series).
   */
  | { readonly type: "dma" | "unmanaged"; readonly nestingParent: true; readonly ioasidSet: IoasidSet };

/**
 * What a driver reads of a process address space to share it with a device
 * (the `mm_struct` fields an SVA driver uses). The core passes one object per
 * mm for as long as the mm has bonds, so drivers may key per-mm state on it
 * (or on its PASID: one PASID per mm, as the 2017 SVA API review settled and Linux iommu-sva.c keeps).
 */
export interface SvaMm {
  /** Physical address of the top-level CPU page table (x86-64 format): the first-level pointer of the PASID entry. */
  readonly pgd: number;
  /** Levels of those tables: 4 (48-bit VA) or 5 (57-bit VA, VT-d FLPM=1). */
  readonly levels: 4 | 5;
  /** The mm's PASID (`mm->pasid`), fixed for the mm's life once allocated. */
  readonly pasid: HostPasid;
  /** For traces and messages. */
  readonly name: string;
  /**
   * How to walk {@link pgd}. Absent means x86-64 with {@link levels} levels
   * (what every mm was before AArch64 processes existed, so older callers
   * stay valid). A driver refuses (EINVAL) a format its hardware cannot walk.
   */
  readonly format?: PgtableFormat;
}

/**
 * A recoverable fault as a driver reports it to the core
 * (`struct iommu_fault_page_request`, from a PRI page request in the PRQ).
 * Reported with `IommuCore.reportPageRequest`; answered later through
 * {@link IommuOps.pageResponse}.
 */
export interface PageRequestFault {
  /** The request's PASID, or undefined for a request without one. */
  readonly pasid: HostPasid | undefined;
  /** Page-aligned input address (an upper-half address as its negative, sign-extended value). */
  readonly addr: number;
  readonly read: boolean;
  readonly write: boolean;
  readonly exec: boolean;
  /** Privileged-mode request. */
  readonly priv: boolean;
  /** Page request group index (9 bits). */
  readonly grpid: number;
  /** Last request of its group: the group is handled and answered once this one arrives. */
  readonly last: boolean;
  /**
   * Device-specific private data the request carried (VT-d PDP), returned
   * with the response (`iommu_fault_page_request.private_data` with
   * IOMMU_FAULT_PAGE_REQUEST_PRIV_DATA). Absent when it carried none.
   */
  readonly privateData?: readonly [bigint, bigint];
}

/** A page-group response (`struct iommu_page_response`), what the core asks the driver to send. */
export interface PageResponse {
  readonly pasid: HostPasid | undefined;
  readonly grpid: number;
  readonly code: "success" | "invalid" | "failure";
}

export interface MapPagesResult {
  /** Bytes mapped from the start of the request, also when it failed part way. */
  readonly mapped: number;
  readonly error: Error | null;
}

/** Operations every driver domain has. */
export interface DomainOpsBase {
  /**
   * Points `dev` at this domain. For a sub-device (`dev.parent !== null`) this
   * is an aux attach on its physical device. EINVAL/ENODEV/ENOMEM/ENOSPC.
   */
  attachDev(dev: IommuDevice): void;
  /** Undoes attachDev for `dev`; cannot fail. */
  detachDev(dev: IommuDevice): void;
  /** Releases every resource; called once, when no device is attached. */
  free(): void;
}

export interface BlockedDomainOps extends DomainOpsBase {
  readonly kind: "blocked";
}

export interface IdentityDomainOps extends DomainOpsBase {
  readonly kind: "identity";
}

/** A domain with an IO page table (DMA or unmanaged). */
export interface PagingDomainOps extends DomainOpsBase {
  readonly kind: "paging";
  /** Supported page sizes as a bitmap (`pgsize_bitmap`); bit n = 2^n bytes. */
  readonly pgsizeBitmap: number;
  /** First and last (inclusive) IOVA the domain can translate. */
  readonly aperture: { readonly start: number; readonly end: number };
  /**
   * Maps `pgcount` pages of `pgsize` (one of the domain's sizes; iova and paddr
   * aligned to it). Reports how much was mapped, also on failure (ENOMEM, EEXIST).
   */
  mapPages(iova: number, paddr: number, pgsize: number, pgcount: number, prot: number): MapPagesResult;
  /** Unmaps up to `pgcount` pages of `pgsize`; returns the bytes unmapped (0 when nothing is mapped there). */
  unmapPages(iova: number, pgsize: number, pgcount: number): number;
  /** The physical address `iova` translates to, or null when unmapped. */
  iovaToPhys(iova: number): number | null;
  /** After a map: make the new entries visible (caching-mode flush); cannot fail. */
  syncMap(iova: number, size: number): void;
  /** After an unmap: invalidate the IOTLB for the range; cannot fail. */
  flushIotlb(iova: number, size: number): void;
  flushIotlbAll(): void;
  /**
   * The default PASID of this domain as an aux domain of `sub`'s physical
   * device: the PASID whose entry points at this table, which the sub-device
   * (an IOMMU-backed mdev) tags its DMA with (`ops->aux_get_pasid`, Linux
   * v5.10 drivers/iommu/iommu.c: iommu_aux_get_pasid()). Absent in a driver
   * that offers no "aux" feature. EINVAL when `sub` is not aux-attached here.
   */
  auxGetPasid?(sub: IommuDevice): HostPasid;
}

/**
 * A paging domain that is the second level of nested translation. The first
 * levels are guest tables bound per PASID (the 2020 `sva_bind_gpasid` model);
 * the core keeps one `NestedDomain` per bound PASID and calls these once per
 * physical device.
 */
export interface NestingParentOps extends Omit<PagingDomainOps, "kind"> {
  readonly kind: "nesting-parent";
  /** Programs a nested PASID entry on `dev` (a physical device). EINVAL, ENOSPC, ENOMEM, EOPNOTSUPP. */
  bindGpasid(dev: IommuDevice, data: GpasidBindData): void;
  /** Tears the entry down with the PASID-cache, IOTLB and device-TLB flushes; cannot fail. */
  unbindGpasid(dev: IommuDevice, hpasid: HostPasid): void;
  /** Passes a validated guest invalidation through to the hardware. EINVAL for what the hardware cannot express. */
  cacheInvalidate(dev: IommuDevice, info: CacheInvalidateInfo): void;
  /** What this domain can offer a guest's vIOMMU (Yi Liu's vSVA VFIO series, v7, 2020). */
  nestingInfo(): NestingInfo;
}

/**
 * One address space bound at its PASID on one physical device (a 5.10
 * `intel_svm_dev`), made by {@link IommuOps.svaBind}. The core calls exactly
 * one of `unbind` or `release` to end it, once; after either, none of its
 * methods is called again. None of them can fail.
 */
export interface SvaBindingOps {
  readonly pasid: HostPasid;
  /**
   * mmu notifier `invalidate_range`: CPU page-table entries in [start, end)
   * were cleared or downgraded (munmap, mprotect, reclaim) and the pages may
   * be freed once this returns. Flush the IOTLB (and paging-structure caches)
   * and the device TLB for this PASID over the range, and wait for completion.
   */
  invalidateRange(start: number, end: number): void;
  /**
   * mmu notifier `release`: the mm is exiting while still bound, and its page
   * tables are about to be torn down. The device may not have stopped yet:
   * first stop reporting unrecoverable faults for this PASID (VT-d: set FPD),
   * then tear the PASID entry down and flush the PASID cache, IOTLB and device
   * TLB, so further DMA with the PASID fails silently. A later unbind by the
   * bond's owner does not reach the driver.
   */
  release(): void;
  /**
   * Normal unbind: the device driver has stopped using the PASID. Tear the
   * PASID entry down, flush the PASID cache, IOTLB and device TLB, and drain
   * the page requests of the PASID still in the hardware queue.
   */
  unbind(): void;
}

export type DriverDomain = BlockedDomainOps | IdentityDomainOps | PagingDomainOps | NestingParentOps;

/** A device fault handler (`iommu_dev_fault_handler_t`): true when it took the fault and will answer it. */
export type DeviceFaultHandler = (dev: IommuDevice, fault: PageRequestFault) => boolean;

/**
 * What a driver may call in the IOMMU core it is registered with, handed to
 * it once by `IommuCore.registerIommu` (there is no global core to call).
 */
export interface IommuCoreUplink {
  /**
   * `iommu_report_device_fault`: a recoverable fault (a PRI page request, an
   * SMMU stall) of `dev`, a physical device, for the fault handler the core
   * has for it. Atomic context is fine. False when no handler takes it: the
   * driver answers the fault itself (invalid / terminate).
   */
  reportDeviceFault(dev: IommuDevice, fault: PageRequestFault): boolean;
  /**
   * The driver tore down the guest binding at `hpasid` over `domain` on its
   * own, because its IOASID was freed while still bound (the IOASID FREE
   * notification of the exception flow in the 2020 IOASID design,
   * Documentation/driver-api/ioasid.rst: "free before unbind"). The core
   * drops its binding record without calling the driver back: a later
   * unbind through the core fails (ENOENT, the IOASID is gone) and a bind
   * after the ID is allocated again starts afresh. Atomic context is fine
   * (a notifier calls it); cannot fail; a PASID the core has no record of is
   * ignored.
   */
  gpasidFreed(domain: NestingParentOps, hpasid: HostPasid): void;
}

/** Per-IOMMU operations. */
export interface IommuOps {
  /** Driver name, for traces ("intel-iommu", "arm-smmu-v3", "mock"). */
  readonly name: string;
  /** Called once, at registration, with the core's side of the contract. */
  connect(uplink: IommuCoreUplink): void;
  /** PASID bits this IOMMU supports (0 = none); caps every device's PASID space. */
  readonly pasidBits: number;
  capable(cap: IommuCap): boolean;
  /** Takes a device on (context entries, stream table). ENODEV when it is not behind this IOMMU. */
  probeDevice(dev: IommuDevice): void;
  /** Undoes probeDevice; cannot fail. */
  releaseDevice(dev: IommuDevice): void;
  /** Features `dev` supports through this IOMMU. */
  devFeatures(dev: IommuDevice): ReadonlySet<DevFeature>;
  /** Enables a supported feature (PASID tables, PRI...). ENODEV, ENOMEM, EBUSY. */
  enableFeature(dev: IommuDevice, feature: DevFeature): void;
  /** Cannot fail; the core only disables what it enabled and no longer uses. */
  disableFeature(dev: IommuDevice, feature: DevFeature): void;
  /** ENOMEM; EINVAL for a type the driver does not make. The returned kind must match the request. */
  domainAlloc(req: DomainAllocRequest): DriverDomain;
  /**
   * Shares `mm` with `dev` (a physical device with "sva" enabled) at
   * `mm.pasid`: programs a first-level PASID entry pointing at `mm.pgd` with
   * fault reporting on. Called once per (device, mm); the core counts repeated
   * binds. ENOMEM, ENOSPC (no room in the PASID table), EINVAL (the IOMMU
   * cannot walk `mm.levels` levels, or `mm.pasid` is beyond the device's table).
   */
  svaBind(dev: IommuDevice, mm: SvaMm): SvaBindingOps;
  /**
   * Sends a page-group response to `dev` (a physical device), for a group the
   * driver reported with `IommuCoreUplink.reportDeviceFault`. Called outside
   * atomic context, once per group. Cannot fail: a response the hardware
   * cannot take is the driver's to log.
   */
  pageResponse(dev: IommuDevice, response: PageResponse): void;
}
