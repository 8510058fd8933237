import { Kernel, type SourceId } from "@vsva/kernel";
import { PciEndpoint, SmmuUnit, type SmmuOptions, SparseMemory, pciEnableForSva } from "@vsva/iommu-hw";
import { IoasidCore } from "@vsva/ioasid";
import { type Iommu, IommuCore, type IommuDevice, Mm, PageAllocator, PhysMemBacking } from "@vsva/iommu-core";
import { ArmSmmuV3 } from "./driver.js";
import type { SmmuFirmware } from "./smmu.js";

/**
 * A whole Arm host for tests and the harness (`@vsva/arm-smmu-v3/testing`):
 * sparse RAM, the emulated SMMUv3 with its interrupts wired to this driver,
 * the kernel page allocator, the IOASID core, the IOMMU core with the
 * driver registered, and PCIe endpoints below the unit. Processes are
 * AArch64 mms, so their tables are what the SMMU walks.
 *
 * Memory map: [0, 16 MiB) free for tests (data pages), [16 MiB, 48 MiB)
 * the kernel's page pool (every page the driver and the mms allocate).
 */
export const MiB = 1 << 20;
export const POOL_BASE = 16 * MiB;
export const POOL_SIZE = 32 * MiB;

export interface SmmuHostOptions {
  readonly unit?: Partial<Omit<SmmuOptions, "mem" | "trace" | "onInterrupt">>;
  /** The unit runs its command queue from a work item on the kernel's scheduler (the driver polls it along). */
  readonly deferredCommands?: boolean;
  /** Run `drv.init()` (default true). */
  readonly init?: boolean;
  /** What firmware says about the masters (e.g. which StreamIDs have "dma-can-stall"). */
  readonly firmware?: SmmuFirmware;
  /** Polls a command-queue wait makes before ETIMEDOUT (the driver's default otherwise). */
  readonly cmdqPollLimit?: number;
  /** Runs each time the driver polls the command queue, before the unit is let run (a test's VMM acts there). */
  readonly onPoll?: () => void;
}

export class SmmuTestHost {
  readonly kernel = new Kernel();
  readonly mem = new SparseMemory({ addrBits: 48, regions: [{ base: 0, size: 64 * MiB }] });
  readonly unit: SmmuUnit;
  readonly pages: PageAllocator;
  readonly ioasid: IoasidCore;
  readonly drv: ArmSmmuV3;
  readonly core: IommuCore;
  readonly iommu: Iommu;

  constructor(o: SmmuHostOptions = {}) {
    const k = this.kernel;
    this.unit = new SmmuUnit({
      mem: this.mem,
      trace: k.trace,
      name: "smmu0",
      ...o.unit,
      ...(o.deferredCommands === true ? { commands: { scheduler: k.scheduler } } : {}),
      onInterrupt: (irq) => {
        if (irq.source === "priq") this.drv.pageRequestInterrupt();
        else if (irq.source === "eventq") this.drv.eventInterrupt();
        else if (irq.source === "gerror") this.drv.gerrorInterrupt();
      },
    });
    this.pages = new PageAllocator({
      base: POOL_BASE,
      size: POOL_SIZE,
      backing: new PhysMemBacking(this.mem),
      faults: k.faults,
    });
    this.ioasid = new IoasidCore({ scheduler: k.scheduler, trace: k.trace, faults: k.faults, log: k.log });
    const unit = this.unit;
    this.drv = new ArmSmmuV3({
      mmio: unit, mem: this.mem, pages: this.pages, kernel: k,
      poll: () => {
        o.onPoll?.();
        unit.debug.processCommands();
      },
      ...(o.firmware === undefined ? {} : { firmware: o.firmware }),
      ...(o.cmdqPollLimit === undefined ? {} : { cmdqPollLimit: o.cmdqPollLimit }),
    });
    if (o.init ?? true) this.drv.init();
    this.core = new IommuCore({ kernel: k, ioasid: this.ioasid });
    this.iommu = this.core.registerIommu("smmu0", this.drv);
  }

  /**
   * A DSA-like endpoint at 00:dev.0 below the unit, enabled as the PCI core
   * and its driver would (bus master, PASID with exec/priv, ATS, PRI).
   */
  endpoint(dev = 4, pasidWidth = 20): PciEndpoint {
    const ep = new PciEndpoint({
      bus: 0,
      dev,
      fn: 0,
      mem: this.mem,
      id: { vendorId: 0x13b5, deviceId: 0x00ff },
      pasid: { maxWidth: pasidWidth, exec: true, priv: true },
      ats: {},
      pri: { outstandingCapacity: 32 },
    });
    pciEnableForSva(ep);
    ep.attach(this.unit);
    this.unit.attachEndpoint(ep);
    return ep;
  }

  /**
   * Probes the endpoint's function (or a platform master, by StreamID) in the
   * core. Its page requests and stalls reach the core's IO page fault queue
   * once SVA (or IOPF) is enabled on it: the core registers that handler.
   */
  probe(ep: { readonly sid: SourceId }, name = "dsa0", pasidWidth = 20): IommuDevice {
    return this.core.probeDevice(this.iommu, { name, sid: ep.sid, pasidWidth });
  }

  /** An AArch64 process. */
  newMm(name = "proc"): Mm {
    return new Mm({ kernel: this.kernel, mem: this.mem, pages: this.pages, arch: "aarch64", name });
  }
}

/** Writes `bytes` at `addr` (optionally with a PASID) through the device; returns the DMA result. */
export function dmaWrite(ep: PciEndpoint, addr: number, bytes: Uint8Array, pasid?: number): string {
  ep.dma.setProgram({ ...(pasid === undefined ? {} : { pasid }), addr, length: bytes.length, direction: "write", pattern: bytes });
  return ep.dma.trigger();
}

export const PATTERN = Uint8Array.of(0xde, 0xad, 0xbe, 0xef);
