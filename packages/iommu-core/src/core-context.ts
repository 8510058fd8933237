import { Errno, type Kernel, KernelError, type TraceIds, type TraceKind, type TracePayload } from "@vsva/kernel";
import type { IoasidCore, IoasidSet } from "@vsva/ioasid";
import { IommuDevice } from "./device.js";
import { BlockedDomain, IdentityDomain, type IommuDomain, NestedDomain, PagingDomain } from "./domain.js";
import type { Iommu } from "./iommu.js";
import type { NestingParentOps } from "./ops.js";
import "./trace-events.js";

export type IommuTraceKind = Extract<TraceKind, `iommu.${string}`>;

export type NestingParent = PagingDomain & { readonly driver: NestingParentOps; readonly ioasidSet: IoasidSet };

/**
 * What the parts of one IOMMU core share (not exported from the package):
 * the kernel, the IOASID namespace, the set of devices probed here, domain
 * IDs and the live-domain count, and the trace. Each part (devices and
 * groups, domains and map, the nesting UAPI, SVA) holds this one object, so
 * several cores live side by side with no module state.
 */
export class CoreContext {
  readonly devices = new Set<IommuDevice>();
  #nextDomainId = 1;
  /** Domains allocated and not yet freed (nested domains included). */
  liveDomains = 0;

  constructor(
    readonly kernel: Kernel,
    readonly ioasid: IoasidCore,
  ) {}

  allocDomainId(): number {
    return this.#nextDomainId++;
  }

  trace<K extends IommuTraceKind>(kind: K, ids: TraceIds, payload: TracePayload<K>): void {
    this.kernel.trace.emit<K>(kind, "IOMMU", ids, payload);
  }

  iommuOf(dev: IommuDevice): Iommu {
    if (dev.iommu === null || !this.devices.has(dev)) throw new KernelError(Errno.ENODEV, `${dev.name} is not behind an IOMMU of this kernel`);
    return dev.iommu;
  }
}

/**
 * A device argument from a caller that may have none: VFIO hands the core no
 * device for an mdev that is not IOMMU-backed (seed 001's review). EINVAL, as
 * upstream's entry points refuse a NULL device, never a TypeError.
 */
export function deviceArg(dev: IommuDevice | null | undefined, what: string): IommuDevice {
  if (!(dev instanceof IommuDevice)) throw new KernelError(Errno.EINVAL, `${what}: no device`);
  return dev;
}

/** The same for a domain argument. */
export function domainArg(domain: IommuDomain | null | undefined, what: string): IommuDomain {
  const ok = domain instanceof BlockedDomain || domain instanceof IdentityDomain || domain instanceof PagingDomain || domain instanceof NestedDomain;
  if (!ok) throw new KernelError(Errno.EINVAL, `${what}: no domain`);
  return domain;
}
