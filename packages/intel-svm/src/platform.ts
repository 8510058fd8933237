import { type VtdOptions, VtdUnit } from "@vsva/iommu-hw";
import type { Platform, PlatformContext, PlatformFactory } from "@vsva/machine";
import { IntelIommu } from "./driver.js";

export interface VtdPlatformOptions {
  /** The unit's capabilities and name (memory and trace come from the board). */
  readonly unit?: Partial<Omit<VtdOptions, "mem" | "trace" | "onInterrupt">>;
  /** Run the driver's `init()` (default true); a test of probing may want to run it itself. */
  readonly init?: boolean;
  /** Polls an invalidation wait makes before giving up (the driver's default otherwise). */
  readonly qiPolls?: number;
  /** Runs while the driver waits on the invalidation queue (`QueuedInvalidationOptions.poll`): a test's VMM acts there. */
  readonly poll?: () => void;
}

/** The VT-d platform of a board: the unit, and this driver bound to it. */
export interface VtdPlatform extends Platform {
  readonly unit: VtdUnit;
  readonly driver: IntelIommu;
}

/**
 * Intel VT-d in scalable mode, driven by this driver: what a DMAR table's
 * DRHD entry describes and `drivers/iommu/intel/dmar.c` probes. The unit's
 * page-request interrupt runs the driver's threaded handler.
 */
export function vtdPlatform(opts: VtdPlatformOptions = {}): PlatformFactory<VtdPlatform> {
  return (ctx: PlatformContext): VtdPlatform => {
    const name = opts.unit?.name ?? "dmar0";
    let drv: IntelIommu | null = null;
    const unit = new VtdUnit({
      ...opts.unit,
      mem: ctx.mem,
      trace: ctx.kernel.trace,
      name,
      onInterrupt: (irq) => {
        if (irq.source === "page-request") drv?.pageRequestInterrupt();
      },
    });
    const driver = new IntelIommu({
      mmio: unit,
      mem: ctx.mem,
      pages: ctx.pages,
      kernel: ctx.kernel,
      ioasid: ctx.ioasid,
      ...(opts.qiPolls === undefined ? {} : { qiPolls: opts.qiPolls }),
      ...(opts.poll === undefined ? {} : { poll: opts.poll }),
    });
    drv = driver;
    if (opts.init ?? true) driver.init();
    return {
      name: "vtd",
      iommuName: name,
      unit,
      driver,
      port: unit,
      ops: driver,
      mmArch: "x86-64",
      attachEndpoint: (ep) => unit.attachEndpoint(ep),
      cacheViolations() {
        const out: string[] = [];
        for (const m of unit.debug.checkCaches()) {
          const e = m.cached;
          out.push(`IOMMU cache serves a stale translation (PASID ${e.hadPasid ? e.pasid : "none"}, input 0x${e.inputBase.toString(16)} -> 0x${e.pageBase.toString(16)}); a fresh walk gives ${m.fresh.ok ? `0x${m.fresh.pa.toString(16)}` : m.fresh.name}`);
        }
        for (const m of unit.debug.checkStructureCaches()) {
          out.push(`IOMMU ${m.cache} cache entry for source ${m.sid}${m.pasid === null ? "" : ` PASID ${m.pasid}`} differs from memory`);
        }
        return out;
      },
      isReportedFault: (e) => e.kind === "vtd.fault" && e.payload.recorded,
      shutdown: () => driver.shutdown(),
    };
  };
}
