import { Errno, KernelError } from "@vsva/kernel";
import type { BlockedDomainOps, IdentityDomainOps, IommuDevice } from "@vsva/iommu-core";
import { awOf, defaultSlWidth } from "./caps.js";
import { FLPT_DEFAULT_DID } from "./did.js";
import { passThroughEntry } from "./pasid-entry.js";
import type { VtdHardware } from "./unit.js";

/**
 * The blocked domain: a device attached to it has no PASID-0 entry, so
 * every request without PASID faults (PASID-table entry not present).
 */
export class VtdBlockedDomain implements BlockedDomainOps {
  readonly kind = "blocked" as const;
  constructor(private readonly hw: VtdHardware) {}
  attachDev(dev: IommuDevice): void {
    if (dev.isSubDevice) throw new KernelError(Errno.EINVAL, "sub-devices attach to paging domains only");
    this.hw.device(dev);
  }
  detachDev(_dev: IommuDevice): void {
    // Nothing was programmed.
  }
  free(): void {
    // Holds nothing.
  }
}

/** The identity domain: PASID 0 as a pass-through entry (PGTT=4, needs ECAP.PT). */
export class VtdIdentityDomain implements IdentityDomainOps {
  readonly kind = "identity" as const;
  readonly #attached = new Set<IommuDevice>();
  constructor(private readonly hw: VtdHardware) {
    if (!hw.caps.passThrough) throw new KernelError(Errno.EINVAL, `${hw.name} has no pass-through (ECAP.PT)`);
  }
  attachDev(dev: IommuDevice): void {
    if (dev.isSubDevice) throw new KernelError(Errno.EINVAL, "sub-devices attach to paging domains only");
    const caps = this.hw.caps;
    this.hw.setupPasid(this.hw.device(dev), 0, passThroughEntry(FLPT_DEFAULT_DID, awOf(defaultSlWidth(caps)), caps.smPageWalkCoherent));
    this.#attached.add(dev);
  }
  detachDev(dev: IommuDevice): void {
    if (!this.#attached.delete(dev)) return;
    this.hw.tearDownPasid(this.hw.device(dev), 0);
  }
  free(): void {
    for (const dev of [...this.#attached]) this.detachDev(dev);
  }
}
