import type { IoasidCore } from "@vsva/ioasid";
import type { IommuPort, PciEndpoint, SparseMemory } from "@vsva/iommu-hw";
import type { IommuOps, MmArch, PageAllocator } from "@vsva/iommu-core";
import type { Kernel, TraceEvent } from "@vsva/kernel";

/** What a platform is built from: the board's kernel services and memory. */
export interface PlatformContext {
  readonly kernel: Kernel;
  readonly mem: SparseMemory;
  readonly pages: PageAllocator;
  readonly ioasid: IoasidCore;
}

/**
 * One IOMMU platform: an emulated unit and the driver bound to it, as
 * firmware describes a DMAR unit or an SMMU node and the driver probes it.
 * Everything else on a board (the core, the IOASID allocator, processes,
 * endpoints) is the same on every platform, as in Linux. Each driver package
 * provides its own factory (`vtdPlatform` in intel-svm, `smmuPlatform` in
 * arm-smmu-v3), so a driver's tests and the harness build the same board.
 */
export interface Platform {
  /** Short name ("vtd", "smmuv3"). */
  readonly name: string;
  /** The IOMMU's name in the core ("dmar0", "smmu0"). */
  readonly iommuName: string;
  /** The unit as endpoints see it. */
  readonly port: IommuPort;
  /** The driver, registered with the IOMMU core. */
  readonly ops: IommuOps;
  /** The page-table format the platform's CPUs use, so the IOMMU can walk processes' tables. */
  readonly mmArch: MmArch;
  /** Places an endpoint below the unit (its device TLB invalidations and page responses). */
  attachEndpoint(ep: PciEndpoint): void;
  /** Cached translations or structures that disagree with memory: each a missing flush. */
  cacheViolations(): string[];
  /** Whether an event is a fault the IOMMU reported to software. */
  isReportedFault(e: TraceEvent): boolean;
  /** Takes the unit down; devices were released first. Cannot fail. */
  shutdown(): void;
}

export type PlatformFactory<P extends Platform = Platform> = (ctx: PlatformContext) => P;
