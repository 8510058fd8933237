import type { IoasidCore } from "@vsva/ioasid";
import type { IommuPort, PciEndpoint, SparseMemory } from "@vsva/iommu-hw";
import type { IommuOps, PageAllocator } from "@vsva/iommu-core";
import type { Kernel, TraceEvent } from "@vsva/kernel";

export type PlatformName = "vtd" | "smmuv3";

/** What a platform is built from: the host's kernel services and memory. */
export interface PlatformContext {
  readonly kernel: Kernel;
  readonly mem: SparseMemory;
  readonly pages: PageAllocator;
  readonly ioasid: IoasidCore;
}

/**
 * One IOMMU platform: the emulated unit and its driver, and what the harness
 * needs to know about them. Everything else in a host (the core, the IOASID
 * allocator, processes, devices) is the same on every platform, as in Linux.
 */
export interface Platform {
  readonly name: PlatformName;
  /** The IOMMU's name in the core ("dmar0", "smmu0"). */
  readonly iommuName: string;
  /** The unit as endpoints see it. */
  readonly port: IommuPort;
  /** The driver, registered with the IOMMU core. */
  readonly ops: IommuOps;
  /** The page-table format processes use, so the IOMMU can walk them. */
  readonly mmArch: "x86-64" | "aarch64";
  /** Places an endpoint below the unit (its device TLB invalidations and page responses). */
  attachEndpoint(ep: PciEndpoint): void;
  /** Cached translations or structures that disagree with memory: each a missing flush. */
  cacheViolations(): string[];
  /** Whether an event is a fault the IOMMU reported to software. */
  isReportedFault(e: TraceEvent): boolean;
  /** Takes the unit down; devices were released first. Cannot fail. */
  shutdown(): void;
}

export type PlatformFactory = (ctx: PlatformContext) => Platform;
