import { SmmuUnit } from "@vsva/iommu-hw";
import { ArmSmmuV3 } from "@vsva/arm-smmu-v3";
import type { Platform, PlatformContext } from "./platform.js";

/** Arm SMMUv3 (stage 1 and 2, 2-level stream and CD tables, ATS, PRI), driven by the arm-smmu-v3 driver. */
export function smmuPlatform(ctx: PlatformContext): Platform {
  let drv: ArmSmmuV3 | null = null;
  const unit = new SmmuUnit({
    mem: ctx.mem,
    trace: ctx.kernel.trace,
    name: "smmu0",
    // Wired interrupts run the driver's handlers (PRI queue, event queue, global errors).
    onInterrupt: (irq) => {
      if (irq.source === "priq") drv?.pageRequestInterrupt();
      else if (irq.source === "eventq") drv?.eventInterrupt();
      else if (irq.source === "gerror") drv?.gerrorInterrupt();
    },
  });
  const driver = new ArmSmmuV3({ mmio: unit, mem: ctx.mem, pages: ctx.pages, kernel: ctx.kernel, poll: () => unit.debug.processCommands() });
  drv = driver;
  driver.init();
  return {
    name: "smmuv3",
    iommuName: "smmu0",
    port: unit,
    ops: driver,
    mmArch: "aarch64",
    attachEndpoint: (ep) => unit.attachEndpoint(ep),
    cacheViolations() {
      const out: string[] = [];
      for (const m of unit.debug.checkCaches()) {
        const e = m.cached;
        const fresh = m.fresh.ok ? `0x${m.fresh.pa.toString(16)}` : m.fresh.name;
        out.push(`SMMU TLB serves a stale translation (StreamID ${e.sid}, SSID ${e.ssid < 0 ? "none" : e.ssid}, ASID ${e.asid}, input 0x${e.inputBase.toString(16)} -> 0x${e.pageBase.toString(16)}); a fresh walk gives ${fresh}`);
      }
      for (const m of unit.debug.checkStructureCaches()) {
        out.push(`SMMU ${m.cache.toUpperCase()} cache entry for StreamID ${m.sid}${m.ssid === null ? "" : ` SSID ${m.ssid}`} differs from memory`);
      }
      return out;
    },
    isReportedFault: (e) => e.kind === "smmu.event" && e.payload.recorded,
    shutdown: () => driver.shutdown(),
  };
}
