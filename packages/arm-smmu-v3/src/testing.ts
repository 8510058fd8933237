import type { Kernel, SourceId } from "@vsva/kernel";
import type { PciEndpoint, SmmuUnit, SparseMemory } from "@vsva/iommu-hw";
import type { IoasidCore } from "@vsva/ioasid";
import type { Iommu, IommuCore, IommuDevice, Mm, PageAllocator } from "@vsva/iommu-core";
import { Board, DEFAULT_POOL, MiB } from "@vsva/machine";
import type { ArmSmmuV3 } from "./driver.js";
import { type SmmuPlatform, type SmmuPlatformOptions, smmuPlatform } from "./platform.js";

/**
 * A whole Arm host for tests (`@vsva/arm-smmu-v3/testing`): a board
 * (`@vsva/machine`) with this driver's platform — sparse RAM, the emulated
 * SMMUv3 with its interrupts wired to this driver, the kernel page
 * allocator, the IOASID core, the IOMMU core with the driver registered —
 * and PCIe endpoints below the unit. Processes are AArch64 mms, so their
 * tables are what the SMMU walks.
 *
 * Memory map: [0, 16 MiB) free for tests (data pages), [16 MiB, 48 MiB)
 * the kernel's page pool (every page the driver and the mms allocate).
 */
export { MiB };
export const POOL_BASE = DEFAULT_POOL.base;
export const POOL_SIZE = DEFAULT_POOL.size;

export type SmmuHostOptions = SmmuPlatformOptions;

export class SmmuTestHost {
  readonly board: Board<SmmuPlatform>;
  readonly kernel: Kernel;
  readonly mem: SparseMemory;
  readonly unit: SmmuUnit;
  readonly pages: PageAllocator;
  readonly ioasid: IoasidCore;
  readonly drv: ArmSmmuV3;
  readonly core: IommuCore;
  readonly iommu: Iommu;

  constructor(o: SmmuHostOptions = {}) {
    const b = (this.board = new Board({ platform: smmuPlatform(o), addrBits: 48 }));
    [this.kernel, this.mem, this.pages, this.ioasid, this.core, this.iommu] = [b.kernel, b.mem, b.pages, b.ioasid, b.core, b.iommu];
    this.unit = b.platform.unit;
    this.drv = b.platform.driver;
  }

  /**
   * A DSA-like endpoint at 00:dev.0 below the unit, enabled as the PCI core
   * and its driver would (bus master, PASID with exec/priv, ATS, PRI).
   */
  endpoint(dev = 4, pasidWidth = 20): PciEndpoint {
    return this.board.endpoint({ bus: 0, dev, fn: 0, pasidWidth, id: { vendorId: 0x13b5, deviceId: 0x00ff } });
  }

  /**
   * Probes the endpoint's function (or a platform master, by StreamID) in the
   * core. Its page requests and stalls reach the core's IO page fault queue
   * once SVA (or IOPF) is enabled on it: the core registers that handler.
   */
  probe(ep: { readonly sid: SourceId }, name = "dsa0", pasidWidth = 20): IommuDevice {
    return this.board.probe(ep, name, pasidWidth);
  }

  /** An AArch64 process. */
  newMm(name = "proc"): Mm {
    return this.board.newMm(name);
  }
}

/** Writes `bytes` at `addr` (optionally with a PASID) through the device; returns the DMA result. */
export function dmaWrite(ep: PciEndpoint, addr: number, bytes: Uint8Array, pasid?: number): string {
  ep.dma.setProgram({ ...(pasid === undefined ? {} : { pasid }), addr, length: bytes.length, direction: "write", pattern: bytes });
  return ep.dma.trigger();
}

export const PATTERN = Uint8Array.of(0xde, 0xad, 0xbe, 0xef);
