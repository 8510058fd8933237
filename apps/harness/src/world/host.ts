import { type Kernel, KernelBug } from "@vsva/kernel";
import type { SparseMemory } from "@vsva/iommu-hw";
import type { IoasidCore } from "@vsva/ioasid";
import type { Iommu, IommuCore, Mm, PageAllocator } from "@vsva/iommu-core";
import { Board, type DeviceSlot, type PlatformFactory, type EndpointOptions, MiB } from "@vsva/machine";
import { PLATFORMS, type Platform, type PlatformName } from "./platform.js";
import { RecordingPort } from "./recording-port.js";

/**
 * A whole host, wired as a machine boots (a `@vsva/machine` board): RAM, an
 * emulated IOMMU (VT-d or SMMUv3, see platform.ts), the kernel page
 * allocator, the IOASID namespace, the IOMMU core with the platform's driver
 * registered, and PCIe endpoints below the unit (through a recording port).
 * The harness drives it like user space and a device driver would.
 *
 * Memory map: [0, 16 MiB) data the scenarios use directly (a guest-RAM
 * stand-in lives here), [16 MiB, 48 MiB) the kernel's page pool (every page
 * the driver and the process model allocate).
 */
export { MiB };
export const RAM_SIZE = 64 * MiB;
export const POOL_BASE = 16 * MiB;
export const POOL_SIZE = 32 * MiB;

export interface HostOptions {
  readonly platform?: PlatformName;
}

export type { DeviceSlot };

export const PLATFORM_NAMES: readonly PlatformName[] = Object.keys(PLATFORMS) as PlatformName[];

export class Host {
  readonly board: Board;
  readonly kernel: Kernel;
  readonly mem: SparseMemory;
  readonly platform: Platform;
  readonly port: RecordingPort;
  readonly pages: PageAllocator;
  readonly ioasid: IoasidCore;
  readonly core: IommuCore;
  readonly iommu: Iommu;
  readonly devices: DeviceSlot[] = [];
  readonly mms: Mm[] = [];

  constructor(opts: HostOptions = {}) {
    const ports: RecordingPort[] = [];
    const platform: PlatformFactory = PLATFORMS[opts.platform ?? "vtd"];
    const b = (this.board = new Board({
      platform,
      ram: { base: 0, size: RAM_SIZE },
      pool: { base: POOL_BASE, size: POOL_SIZE },
      interpose: (unit) => {
        const p = new RecordingPort(unit);
        ports.push(p);
        return p;
      },
    }));
    const [port] = ports;
    if (port === undefined) throw new KernelBug("the board did not interpose the recording port");
    this.port = port;
    [this.kernel, this.mem, this.platform, this.pages, this.ioasid, this.core, this.iommu] = [b.kernel, b.mem, b.platform, b.pages, b.ioasid, b.core, b.iommu];
  }

  /**
   * Plugs in a DSA-like endpoint and probes it; then, as the PCI core and the
   * device driver would, enables bus mastering, PASID (with execute and
   * privileged), ATS and PRI in its config space. `at` is a device number on
   * bus 0, or any bus/device/function (default the next free device).
   */
  addDevice(name: string, at: number | EndpointOptions = {}, pasidWidth = 20): DeviceSlot {
    const where = typeof at === "number" ? { bus: 0, dev: at, fn: 0 } : at;
    const slot = this.board.addDevice(name, { pasidWidth, ...where });
    this.devices.push(slot);
    return slot;
  }

  /** Enables SVA on a probed device; the core then routes its recoverable faults to the IO page fault queue. */
  enableSva(slot: DeviceSlot, maxPasid?: number): void {
    this.board.enableSva(slot, maxPasid);
  }

  newMm(name: string): Mm {
    // A process's tables are in the format the platform's CPUs (and so its IOMMU) walk.
    const mm = this.board.newMm(name);
    this.mms.push(mm);
    return mm;
  }

  /** Lets deferred work (IO page faults, teardown work, threaded interrupts) run to completion. */
  settle(): void {
    this.board.settle();
  }
}
