import { type SmmuOptions, SmmuUnit } from "@vsva/iommu-hw";
import type { Platform, PlatformContext, PlatformFactory } from "@vsva/machine";
import { ArmSmmuV3 } from "./driver.js";
import type { SmmuFirmware } from "./smmu.js";

export interface SmmuPlatformOptions {
  /** The unit's capabilities and name (memory and trace come from the board). */
  readonly unit?: Partial<Omit<SmmuOptions, "mem" | "trace" | "onInterrupt" | "commands">>;
  /** The unit runs its command queue from a work item on the kernel's scheduler (the driver polls it along). */
  readonly deferredCommands?: boolean;
  /** Run the driver's `init()` (default true). */
  readonly init?: boolean;
  /** What firmware says about the masters (e.g. which StreamIDs have "dma-can-stall"). */
  readonly firmware?: SmmuFirmware;
  /** Polls a command-queue wait makes before ETIMEDOUT (the driver's default otherwise). */
  readonly cmdqPollLimit?: number;
  /** Runs each time the driver polls the command queue, before the unit is let run (a test's VMM acts there). */
  readonly onPoll?: () => void;
}

/** The SMMUv3 platform of a board: the unit, and this driver bound to it. */
export interface SmmuPlatform extends Platform {
  readonly unit: SmmuUnit;
  readonly driver: ArmSmmuV3;
}

/**
 * Arm SMMUv3 (stage 1 and 2, 2-level stream and CD tables, ATS, PRI), driven
 * by this driver: what an IORT SMMUv3 node describes and
 * `drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3.c: arm_smmu_device_probe()`
 * probes. Wired interrupts run the driver's handlers (PRI queue, event
 * queue, global errors). Processes are AArch64 mms, so their tables are what
 * the SMMU walks.
 */
export function smmuPlatform(opts: SmmuPlatformOptions = {}): PlatformFactory<SmmuPlatform> {
  return (ctx: PlatformContext): SmmuPlatform => {
    const name = opts.unit?.name ?? "smmu0";
    let drv: ArmSmmuV3 | null = null;
    const unit = new SmmuUnit({
      ...opts.unit,
      mem: ctx.mem,
      trace: ctx.kernel.trace,
      name,
      ...(opts.deferredCommands === true ? { commands: { scheduler: ctx.kernel.scheduler } } : {}),
      onInterrupt: (irq) => {
        if (irq.source === "priq") drv?.pageRequestInterrupt();
        else if (irq.source === "eventq") drv?.eventInterrupt();
        else if (irq.source === "gerror") drv?.gerrorInterrupt();
      },
    });
    const driver = new ArmSmmuV3({
      mmio: unit,
      mem: ctx.mem,
      pages: ctx.pages,
      kernel: ctx.kernel,
      poll: () => {
        opts.onPoll?.();
        unit.debug.processCommands();
      },
      ...(opts.firmware === undefined ? {} : { firmware: opts.firmware }),
      ...(opts.cmdqPollLimit === undefined ? {} : { cmdqPollLimit: opts.cmdqPollLimit }),
    });
    drv = driver;
    if (opts.init ?? true) driver.init();
    return {
      name: "smmuv3",
      iommuName: name,
      unit,
      driver,
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
  };
}
