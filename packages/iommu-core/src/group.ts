import type { IommuDevice } from "./device.js";
import type { IommuDomain } from "./domain.js";
import type { Iommu } from "./iommu.js";

/**
 * An IOMMU group (`struct iommu_group`): the devices the IOMMU cannot tell
 * apart (no ACS between them, aliases), so they are always attached to one
 * domain together. The core owns the attach state; this is its record.
 */
export class IommuGroup {
  readonly id: number;
  readonly iommu: Iommu;
  /** Topology key the group was formed from (e.g. the bridge without ACS). */
  readonly isolation: string;
  readonly devices: IommuDevice[] = [];
  /** @internal */
  defaultDomain: IommuDomain | null = null;
  /** @internal */
  domain: IommuDomain | null = null;

  constructor(id: number, iommu: Iommu, isolation: string) {
    this.id = id;
    this.iommu = iommu;
    this.isolation = isolation;
  }

  /** True when some domain other than the default one (a VFIO user's) owns the group. */
  get ownedByOther(): boolean {
    return this.domain !== null && this.domain !== this.defaultDomain;
  }
}
