import type { GuestPasid, HostPasid } from "@vsva/kernel";
import type { IoasidSet } from "@vsva/ioasid";
import type { IommuDevice } from "./device.js";
import type { IommuGroup } from "./group.js";
import type { Iommu } from "./iommu.js";
import type { BlockedDomainOps, DomainType, IdentityDomainOps, NestingParentOps, PagingDomainOps } from "./ops.js";
import type { GpasidBindData } from "./uapi/gpasid-bind.js";

/**
 * Domains as the core tracks them (`struct iommu_domain`). The driver object
 * does the work; this record is what the core checks against: which IOMMU made
 * it, which groups and sub-devices are attached, whether it was freed.
 */
abstract class DomainBase {
  /** Core-wide ID, from 1, for traces. */
  readonly id: number;
  readonly iommu: Iommu;
  abstract readonly type: DomainType;
  /** @internal */
  readonly groups = new Set<IommuGroup>();
  /** @internal sub-devices attached as aux. */
  readonly subDevices = new Set<IommuDevice>();
  /** @internal */
  freed = false;

  constructor(id: number, iommu: Iommu) {
    this.id = id;
    this.iommu = iommu;
  }

  get attached(): boolean {
    return this.groups.size > 0 || this.subDevices.size > 0;
  }
}

export class BlockedDomain extends DomainBase {
  readonly type = "blocked" as const;
  constructor(
    id: number,
    iommu: Iommu,
    readonly driver: BlockedDomainOps,
  ) {
    super(id, iommu);
  }
}

export class IdentityDomain extends DomainBase {
  readonly type = "identity" as const;
  constructor(
    id: number,
    iommu: Iommu,
    readonly driver: IdentityDomainOps,
  ) {
    super(id, iommu);
  }
}

export class PagingDomain extends DomainBase {
  /** Page sizes ascending, from the driver's bitmap. */
  readonly pgsizes: readonly number[];
  /** @internal nested bindings by host PASID (nesting parents only). */
  readonly nested = new Map<HostPasid, NestedDomain>();

  constructor(
    id: number,
    iommu: Iommu,
    readonly type: "dma" | "unmanaged",
    readonly driver: PagingDomainOps | NestingParentOps,
    pgsizes: readonly number[],
    /** The IOASID set owning the PASIDs bound over a nesting parent (null for any other paging domain). */
    readonly ioasidSet: IoasidSet | null = null,
  ) {
    super(id, iommu);
    this.pgsizes = pgsizes;
  }

  get isNestingParent(): boolean {
    return this.driver.kind === "nesting-parent";
  }

  get minPageSize(): number {
    return this.pgsizes[0] ?? 0;
  }
}

/**
 * A guest first level bound at one host PASID over a nesting parent's second
 * level (the object the 2020 `bind_gpasid` creates). Devices bound at the PASID
 * are tracked per physical device, each with the requesters (the device itself
 * or its sub-devices) that asked: the driver is called for the first requester
 * of a physical device and for the last one leaving (seed 000).
 */
export class NestedDomain extends DomainBase {
  readonly type = "nested" as const;
  /** @internal physical device -> requesters bound through it. */
  readonly bound = new Map<IommuDevice, Set<IommuDevice>>();

  constructor(
    id: number,
    readonly parent: PagingDomain & { readonly driver: NestingParentOps; readonly ioasidSet: IoasidSet },
    readonly data: GpasidBindData,
  ) {
    super(id, parent.iommu);
  }

  get hpasid(): HostPasid {
    return this.data.hpasid;
  }

  get gpasid(): GuestPasid | undefined {
    return this.data.gpasid;
  }

  /** Requesters bound, over all physical devices. */
  get users(): number {
    let n = 0;
    for (const s of this.bound.values()) n += s.size;
    return n;
  }
}

export type IommuDomain = BlockedDomain | IdentityDomain | PagingDomain | NestedDomain;
