import type { Brand, HostPasid } from "@vsva/kernel";
import type { IommuDevice } from "./device.js";
import type { CacheInvalidateInfo } from "./uapi/cache-invalidate.js";
import type { GpasidBindData } from "./uapi/gpasid-bind.js";
import type { NestingInfo } from "./uapi/nesting-info.js";

/**
 * The driver contract (include/linux/iommu.h `iommu_ops` / `iommu_domain_ops`),
 * split per IOMMU and per domain. Drivers implement primitives; the core
 * validates, splits and unwinds (STYLE.md §8). What a driver can do is asked
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
  /** A paging domain; `nestingParent` makes it the second level of nested translation (requires capable("nesting")). */
  | { readonly type: "dma" | "unmanaged"; readonly nestingParent: boolean };

/** An address space handle for SVA (part 2's mm model plugs in here; opaque to the core and drivers' signatures). */
export type MmHandle = Brand<object, "MmHandle">;

/** A page-group response (part 2's IO page fault queue plugs in here). */
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
  /** What this domain can offer a guest's vIOMMU (seed 004). */
  nestingInfo(): NestingInfo;
}

/** A PASID attachment sharing a process address space (part 2). */
export interface SvaDomainOps extends DomainOpsBase {
  readonly kind: "sva";
  readonly pasid: HostPasid;
}

export type DriverDomain = BlockedDomainOps | IdentityDomainOps | PagingDomainOps | NestingParentOps | SvaDomainOps;

/** Per-IOMMU operations. */
export interface IommuOps {
  /** Driver name, for traces ("intel-iommu", "arm-smmu-v3", "mock"). */
  readonly name: string;
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
  /** Binds an address space at `pasid` on `dev` (part 2). ENOMEM, ENOSPC, EINVAL. */
  svaBind(dev: IommuDevice, mm: MmHandle, pasid: HostPasid): SvaDomainOps;
  /** Answers a page request group (part 2). EINVAL for a response with no pending request. */
  pageResponse(dev: IommuDevice, response: PageResponse): void;
}
