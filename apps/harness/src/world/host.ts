import { type Kernel, KernelBug } from "@vsva/kernel";
import type { SparseMemory } from "@vsva/iommu-hw";
import type { IoasidCore } from "@vsva/ioasid";
import type { Iommu, IommuCore, Mm, PageAllocator } from "@vsva/iommu-core";
import { Board, type DeviceSlot, type EndpointOptions, MiB, type PlatformFactory } from "@vsva/machine";
import { type Idxd, type IdxdConfig, type PlugIdxdOptions, plugIdxd } from "@vsva/idxd";
import type { DsaDevice } from "@vsva/dsa";
import { PLATFORMS, type Platform, type PlatformName } from "./platform.js";
import { DMA_RECORD_RING, RecordingPort } from "./recording-port.js";

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
  /**
   * Keep the whole history: every DMA record and every process, freed or
   * not. Otherwise the host keeps the processes not yet freed and the DMA
   * recorder the latest `dmaRecords` records, so a long run stays bounded.
   */
  readonly history?: boolean;
  /** Records the DMA recorder keeps without `history` (default DMA_RECORD_RING). */
  readonly dmaRecords?: number;
  /**
   * Build only what cannot fail (kernel, RAM, page pool, IOASID namespace)
   * and leave the boot of the IOMMU platform to {@link Host.bringUp}, so a
   * fail-nth sweep can be armed before it.
   */
  readonly deferBringUp?: boolean;
  /** RAM and the kernel's page pool in it (default RAM_SIZE, the pool at POOL_BASE of POOL_SIZE): a bench of many VMs needs more. */
  readonly memory?: { readonly ram: number; readonly pool: { readonly base: number; readonly size: number } };
}

export type { DeviceSlot };

export const PLATFORM_NAMES: readonly PlatformName[] = Object.keys(PLATFORMS) as PlatformName[];

export class Host {
  readonly board: Board;
  readonly kernel: Kernel;
  readonly mem: SparseMemory;
  readonly pages: PageAllocator;
  readonly ioasid: IoasidCore;
  readonly devices: DeviceSlot[] = [];
  /** The accelerators plugged in with {@link addAccelerator}: the invariants hold their queued descriptors to live PASIDs. */
  readonly accelerators: DsaDevice[] = [];
  readonly #mms: Mm[] = [];
  readonly #history: boolean;
  #port: RecordingPort | null = null;

  constructor(opts: HostOptions = {}) {
    this.#history = opts.history ?? false;
    const keep = this.#history ? "all" : (opts.dmaRecords ?? DMA_RECORD_RING);
    const platform: PlatformFactory = PLATFORMS[opts.platform ?? "vtd"];
    this.board = new Board({
      platform,
      ram: { base: 0, size: opts.memory?.ram ?? RAM_SIZE },
      pool: opts.memory?.pool ?? { base: POOL_BASE, size: POOL_SIZE },
      interpose: (unit) => (this.#port = new RecordingPort(unit, { keep })),
      deferBringUp: true,
    });
    [this.kernel, this.mem, this.pages, this.ioasid] = [this.board.kernel, this.board.mem, this.board.pages, this.board.ioasid];
    if (opts.deferBringUp !== true) this.bringUp();
  }

  /**
   * Boots the IOMMU platform as the machine would: the unit and its
   * driver's init, the IOMMU core with the driver registered. ENOMEM,
   * ETIMEDOUT, EIO (the driver's init) with nothing kept: every page it
   * took is back and the host can be dropped (or brought up again).
   */
  bringUp(): void {
    this.board.bringUp();
  }

  /** Whether {@link bringUp} has succeeded. */
  get up(): boolean {
    return this.board.up;
  }

  get platform(): Platform {
    return this.board.platform;
  }

  /** The DMA recorder between the endpoints and the unit. */
  get port(): RecordingPort {
    if (!this.board.up || this.#port === null) throw new KernelBug("the host's IOMMU platform is not up (bringUp)");
    return this.#port;
  }

  get core(): IommuCore {
    return this.board.core;
  }

  get iommu(): Iommu {
    return this.board.iommu;
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

  /**
   * Plugs in the DSA-like accelerator at 00:`dev`.0 and probes its host
   * driver (idxd) with `config`; its function joins {@link devices}, so the
   * invariants watch its device TLB and teardown releases it.
   */
  addAccelerator(name: string, dev: number, config: IdxdConfig, hw?: PlugIdxdOptions["hw"]): Idxd {
    const idxd = plugIdxd(this.board, { dev, name, config, ...(hw === undefined ? {} : { hw }) });
    this.devices.push({ ep: idxd.hw.ep, dev: idxd.iommuDev });
    this.accelerators.push(idxd.hw);
    return idxd;
  }

  /** Enables SVA on a probed device; the core then routes its recoverable faults to the IO page fault queue. */
  enableSva(slot: DeviceSlot, maxPasid?: number): void {
    this.board.enableSva(slot, maxPasid);
  }

  newMm(name: string): Mm {
    // A process's tables are in the format the platform's CPUs (and so its IOMMU) walk.
    const mm = this.board.newMm(name);
    this.#forgetFreed();
    this.#mms.push(mm);
    return mm;
  }

  /** The processes made here: those not yet freed, or every one with `history`. */
  get mms(): readonly Mm[] {
    this.#forgetFreed();
    return [...this.#mms];
  }

  /** A freed mm has nothing left to check or tear down: without `history` the host lets it go. */
  #forgetFreed(): void {
    if (this.#history) return;
    let kept = 0;
    for (const mm of this.#mms) if (mm.state !== "freed") this.#mms[kept++] = mm;
    this.#mms.length = kept;
  }

  /** Lets deferred work (IO page faults, teardown work, threaded interrupts) run to completion. */
  settle(): void {
    this.board.settle();
  }
}
