import { Kernel, KernelBug } from "@vsva/kernel";
import { PciEndpoint, SparseMemory, pciEnableForSva } from "@vsva/iommu-hw";
import { IoasidCore } from "@vsva/ioasid";
import { type Iommu, IommuCore, type IommuDevice, Mm, PageAllocator, PhysMemBacking } from "@vsva/iommu-core";
import type { Platform, PlatformFactory, PlatformName } from "./platform.js";
import { DMA_RECORD_RING, RecordingPort } from "./recording-port.js";
import { smmuPlatform } from "./smmu-platform.js";
import { vtdPlatform } from "./vtd-platform.js";

/**
 * A whole host, wired as a machine boots: RAM, an emulated IOMMU (VT-d or
 * SMMUv3, see platform.ts), the
 * kernel page allocator, the IOASID namespace, the IOMMU core with the VT-d
 * driver registered, and PCIe endpoints below the unit (through a recording
 * port). The harness drives it like user space and a device driver would.
 *
 * Memory map: [0, 16 MiB) data the scenarios use directly (a guest-RAM
 * stand-in lives here), [16 MiB, 48 MiB) the kernel's page pool (every page
 * the driver and the process model allocate).
 */
export const MiB = 1 << 20;
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
}

export interface DeviceSlot {
  readonly ep: PciEndpoint;
  readonly dev: IommuDevice;
}

/** What bring-up made: the platform, the recorder in front of it, the IOMMU core with its driver registered. */
interface Booted {
  readonly platform: Platform;
  readonly port: RecordingPort;
  readonly core: IommuCore;
  readonly iommu: Iommu;
}

const PLATFORMS: Readonly<Record<PlatformName, PlatformFactory>> = { vtd: vtdPlatform, smmuv3: smmuPlatform };
export const PLATFORM_NAMES: readonly PlatformName[] = Object.keys(PLATFORMS) as PlatformName[];

export class Host {
  readonly kernel = new Kernel();
  readonly mem = new SparseMemory({ addrBits: 46, regions: [{ base: 0, size: RAM_SIZE }] });
  readonly pages: PageAllocator;
  readonly ioasid: IoasidCore;
  readonly devices: DeviceSlot[] = [];
  readonly #mms: Mm[] = [];
  readonly #history: boolean;
  readonly #platformName: PlatformName;
  readonly #dmaRecords: number | "all";
  #booted: Booted | null = null;

  constructor(opts: HostOptions = {}) {
    const k = this.kernel;
    this.#history = opts.history ?? false;
    this.pages = new PageAllocator({
      base: POOL_BASE,
      size: POOL_SIZE,
      backing: new PhysMemBacking(this.mem),
      faults: k.faults,
    });
    this.ioasid = new IoasidCore({ scheduler: k.scheduler, trace: k.trace, faults: k.faults, log: k.log });
    this.#platformName = opts.platform ?? "vtd";
    this.#dmaRecords = this.#history ? "all" : (opts.dmaRecords ?? DMA_RECORD_RING);
    if (opts.deferBringUp !== true) this.bringUp();
  }

  /**
   * Boots the IOMMU platform as the machine would: the unit and its
   * driver's init, the IOMMU core with the driver registered. ENOMEM,
   * ETIMEDOUT, EIO (the driver's init) with nothing kept: every page it
   * took is back and the host can be dropped (or brought up again).
   */
  bringUp(): void {
    if (this.#booted !== null) throw new KernelBug("the host is already up");
    const k = this.kernel;
    const platform = PLATFORMS[this.#platformName]({ kernel: k, mem: this.mem, pages: this.pages, ioasid: this.ioasid });
    try {
      const port = new RecordingPort(platform.port, { keep: this.#dmaRecords });
      const core = new IommuCore({ kernel: k, ioasid: this.ioasid });
      const iommu = core.registerIommu(platform.iommuName, platform.ops);
      this.#booted = { platform, port, core, iommu };
    } catch (e) {
      platform.shutdown();
      throw e;
    }
  }

  /** Whether {@link bringUp} has succeeded. */
  get up(): boolean {
    return this.#booted !== null;
  }

  get platform(): Platform {
    return this.#up().platform;
  }

  /** The DMA recorder between the endpoints and the unit. */
  get port(): RecordingPort {
    return this.#up().port;
  }

  get core(): IommuCore {
    return this.#up().core;
  }

  get iommu(): Iommu {
    return this.#up().iommu;
  }

  #up(): Booted {
    if (this.#booted === null) throw new KernelBug("the host's IOMMU platform is not up (bringUp)");
    return this.#booted;
  }

  /**
   * Plugs in a DSA-like endpoint at 00:dev.0 and probes it; then, as the PCI
   * core and the device driver would, enables bus mastering, PASID (with
   * execute and privileged), ATS and PRI in its config space.
   */
  addDevice(name: string, devNo: number, pasidWidth = 20): DeviceSlot {
    const ep = new PciEndpoint({
      bus: 0,
      dev: devNo,
      fn: 0,
      mem: this.mem,
      id: { vendorId: 0x8086, deviceId: 0x0b25 },
      pasid: { maxWidth: pasidWidth, exec: true, priv: true },
      ats: {},
      pri: { outstandingCapacity: 32 },
      trace: this.kernel.trace,
    });
    pciEnableForSva(ep); // the PCI core: bus master, PASID, ATS, PRI
    ep.attach(this.port);
    this.platform.attachEndpoint(ep);
    const dev = this.core.probeDevice(this.iommu, { name, sid: ep.sid, pasidWidth });
    const slot = { ep, dev };
    this.devices.push(slot);
    return slot;
  }

  /** Enables SVA on a probed device; the core then routes its recoverable faults to the IO page fault queue. */
  enableSva(slot: DeviceSlot, maxPasid?: number): void {
    this.core.enableFeature(slot.dev, "sva", maxPasid === undefined ? {} : { maxPasid });
  }

  newMm(name: string): Mm {
    // A process's tables are in the format the platform's CPUs (and so its IOMMU) walk.
    const mm = new Mm({ kernel: this.kernel, mem: this.mem, pages: this.pages, name, arch: this.platform.mmArch });
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
    this.kernel.scheduler.runUntilIdle();
  }
}
