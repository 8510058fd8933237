import { type SourceId, formatBdf } from "@vsva/kernel";
import type { IommuDomain } from "./domain.js";
import type { IommuGroup } from "./group.js";
import type { Iommu } from "./iommu.js";
import type { DevFeature } from "./ops.js";

/**
 * A device as the IOMMU core sees it (`struct device` + `dev_iommu`). A
 * physical PCI device has a requester ID and, if its PASID capability is
 * present, a PASID width. A sub-device (an mdev carved from a physical device,
 * reached through an aux domain) shares its parent's requester ID and PASID
 * table: it has no group of its own and is attached through the parent.
 */
export class IommuDevice {
  readonly name: string;
  readonly sid: SourceId;
  /** PCIe PASID capability Max PASID Width in bits; 0 when the device has none. */
  readonly pasidWidth: number;
  readonly parent: IommuDevice | null;
  /** @internal set by the core at probe (or from the parent for a sub-device). */
  iommu: Iommu | null = null;
  /** @internal physical devices only. */
  group: IommuGroup | null = null;
  /** @internal the aux domain a sub-device is attached to. */
  auxDomain: IommuDomain | null = null;
  /**
   * How many PASIDs this device may use, 0 until SVA is enabled: the smallest
   * of the PCI limit, the IOMMU's and the limit its driver asked for (the 2017 SVA API review:
   * endpoints with product limits narrower than their capability).
   */
  maxPasids = 0;
  /** @internal */
  readonly features = new Set<DevFeature>();

  constructor(name: string, sid: SourceId, pasidWidth: number, parent: IommuDevice | null) {
    this.name = name;
    this.sid = sid;
    this.pasidWidth = pasidWidth;
    this.parent = parent;
  }

  /** The physical device that issues this device's DMA. */
  get physical(): IommuDevice {
    return this.parent === null ? this : this.parent.physical;
  }

  get isSubDevice(): boolean {
    return this.parent !== null;
  }

  hasFeature(f: DevFeature): boolean {
    return this.features.has(f);
  }

  /** The domain translating this device's requests without PASID. */
  get domain(): IommuDomain | null {
    return this.parent === null ? (this.group?.domain ?? null) : this.auxDomain;
  }

  toString(): string {
    return this.parent === null ? `${this.name}@${formatBdf(this.sid)}` : `${this.name}(${this.parent.toString()})`;
  }
}
