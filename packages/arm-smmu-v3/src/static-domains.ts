import { Errno, KernelError } from "@vsva/kernel";
import type { BlockedDomainOps, IdentityDomainOps, IommuDevice } from "@vsva/iommu-core";
import type { SmmuHardware, SmmuMaster } from "./smmu.js";

/**
 * The blocked and identity domains: an STE with Config = abort or bypass
 * (or, while SVA binds keep the stream on stage 1, S1DSS = TERMINATE or
 * BYPASS for requests without SubstreamID).
 */
abstract class StaticDomain {
  readonly #attached = new Set<SmmuMaster>();
  constructor(
    protected readonly hw: SmmuHardware,
    private readonly mode: "abort" | "bypass",
  ) {}

  /** ENODEV, EINVAL (sub-device), EBUSY (attached elsewhere). */
  attachDev(dev: IommuDevice): void {
    if (dev.isSubDevice) throw new KernelError(Errno.EINVAL, "sub-devices attach to paging domains only");
    const m = this.hw.master(dev);
    if (m.config.kind !== "abort" || this.#attached.has(m)) throw new KernelError(Errno.EBUSY, `${dev.toString()} is attached elsewhere`);
    m.config = { kind: this.mode };
    this.#attached.add(m);
    this.hw.installSte(m);
  }

  detachDev(dev: IommuDevice): void {
    if (!this.hw.hasMaster(dev)) return;
    const m = this.hw.master(dev);
    if (!this.#attached.delete(m)) return;
    m.config = { kind: "abort" };
    this.hw.installSte(m);
  }

  free(): void {
    for (const m of [...this.#attached]) this.detachDev(m.dev);
  }
}

export class SmmuBlockedDomain extends StaticDomain implements BlockedDomainOps {
  readonly kind = "blocked" as const;
  constructor(hw: SmmuHardware) {
    super(hw, "abort");
  }
}

export class SmmuIdentityDomain extends StaticDomain implements IdentityDomainOps {
  readonly kind = "identity" as const;
  constructor(hw: SmmuHardware) {
    super(hw, "bypass");
  }
}
