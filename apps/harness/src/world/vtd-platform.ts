import { VtdUnit } from "@vsva/iommu-hw";
import { IntelIommu } from "@vsva/intel-svm";
import type { PlatformContext, Platform } from "./platform.js";

/** Intel VT-d in scalable mode, driven by the VT-d driver (intel-svm). */
export function vtdPlatform(ctx: PlatformContext): Platform {
  let drv: IntelIommu | null = null;
  const unit = new VtdUnit({
    mem: ctx.mem,
    trace: ctx.kernel.trace,
    name: "dmar0",
    // The page-request interrupt runs the driver's threaded handler.
    onInterrupt: (irq) => {
      if (irq.source === "page-request") drv?.pageRequestInterrupt();
    },
  });
  const driver = new IntelIommu({ mmio: unit, mem: ctx.mem, pages: ctx.pages, kernel: ctx.kernel, ioasid: ctx.ioasid });
  drv = driver;
  driver.init();
  return {
    name: "vtd",
    iommuName: "dmar0",
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
}
