import { Errno, type Kernel, KernelError, type TraceIds, type TraceKind, type TracePayload } from "@vsva/kernel";
import type { IoasidCore } from "@vsva/ioasid";
import type { IommuDevice } from "./device.js";
import type { PagingDomain } from "./domain.js";
import type { Iommu } from "./iommu.js";
import type { NestingParentOps } from "./ops.js";
import "./trace-events.js";

export type IommuTraceKind = Extract<TraceKind, `iommu.${string}`>;

export type NestingParent = PagingDomain & { readonly driver: NestingParentOps };

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
