import { Errno, Kernel, KernelBug, KernelError, type SourceId, formatBdf, sourceId } from "@vsva/kernel";
import { type IommuPort, type PciEndpointOptions, PciEndpoint, SparseMemory, pciEnableForSva } from "@vsva/iommu-hw";
import { IoasidCore } from "@vsva/ioasid";
import { type Iommu, IommuCore, type IommuDevice, Mm, PageAllocator, PhysMemBacking } from "@vsva/iommu-core";
import type { Platform, PlatformFactory } from "./platform.js";

export const MiB = 1 << 20;

/**
 * Default memory map of a board: [0, 16 MiB) free for the user of the board
 * (data pages, guest RAM stand-ins), [16 MiB, 48 MiB) the kernel's page pool
 * (every page the driver and the process model allocate), up to 64 MiB free.
 */
export const DEFAULT_RAM = { base: 0, size: 64 * MiB } as const;
export const DEFAULT_POOL = { base: 16 * MiB, size: 32 * MiB } as const;

export interface BoardOptions<P extends Platform> {
  /** The IOMMU platform: a driver package's factory (`vtdPlatform`, `smmuPlatform`). */
  readonly platform: PlatformFactory<P>;
  /** The kernel of this board's context; default a new system with a "host" kernel. */
  readonly kernel?: Kernel;
  /** Physical address width of the board's RAM (default 46, as a VT-d host's HAW). */
  readonly addrBits?: number;
  /** The populated RAM (default {@link DEFAULT_RAM}). */
  readonly ram?: { readonly base: number; readonly size: number };
  /** The kernel's page pool inside RAM (default {@link DEFAULT_POOL}). */
  readonly pool?: { readonly base: number; readonly size: number };
  /**
   * Puts something between the endpoints and the unit (a recording port, a
   * fault injector on the link); the unit and the devices see nothing of it.
   */
  readonly interpose?: (unit: IommuPort) => IommuPort;
  /**
   * Build only what cannot fail (kernel, RAM, page pool, IOASID namespace)
   * and leave the boot of the IOMMU platform to {@link Board.bringUp}, so a
   * fail-nth sweep can be armed before it.
   */
  readonly deferBringUp?: boolean;
}

/** What bring-up made: the platform, what endpoints reach, the IOMMU core with the driver registered. */
interface Booted<P extends Platform> {
  readonly platform: P;
  readonly port: IommuPort;
  readonly core: IommuCore;
  readonly iommu: Iommu;
}

/** Where an endpoint sits and what it can do. Without a BDF, the next free device number, function 0. */
export interface EndpointOptions {
  readonly bus?: number;
  readonly dev?: number;
  readonly fn?: number;
  /** PASID width the function supports (default 20). */
  readonly pasidWidth?: number;
  /** Vendor and device ID (default a DSA-like accelerator, 8086:0b25). */
  readonly id?: PciEndpointOptions["id"];
  /** Outstanding page requests PRI allows (default 32). */
  readonly priCapacity?: number;
  /** Sets the multi-function bit of the header (a function 0 with siblings). */
  readonly multiFunction?: boolean;
  /** Skips what the PCI core and the device driver enable (bus master, PASID, ATS, PRI). */
  readonly noEnable?: boolean;
}

/** An endpoint and its device in the IOMMU core. */
export interface DeviceSlot {
  readonly ep: PciEndpoint;
  readonly dev: IommuDevice;
}

const DSA_ID = { vendorId: 0x8086, deviceId: 0x0b25 } as const;

/**
 * A host as a machine boots it, in one place for the harness and the
 * drivers' tests: RAM, an IOMMU platform (the emulated unit with its driver),
 * the kernel's page allocator, the IOASID namespace, the IOMMU core with the
 * driver registered, and PCIe endpoints below the unit at any
 * bus/device/function. QEMU's machine types play this part for a VMM.
 */
export class Board<P extends Platform = Platform> {
  readonly kernel: Kernel;
  readonly mem: SparseMemory;
  readonly pages: PageAllocator;
  readonly ioasid: IoasidCore;
  readonly #factory: PlatformFactory<P>;
  readonly #interpose: ((unit: IommuPort) => IommuPort) | undefined;
  #booted: Booted<P> | null = null;
  readonly #endpoints = new Map<SourceId, PciEndpoint>();
  #nextDevice = 8; // 00:01.0: 00:00.0 is the host bridge on a PC

  constructor(opts: BoardOptions<P>) {
    const k = (this.kernel = opts.kernel ?? new Kernel());
    const ram = opts.ram ?? DEFAULT_RAM;
    const pool = opts.pool ?? DEFAULT_POOL;
    this.mem = new SparseMemory({ addrBits: opts.addrBits ?? 46, regions: [ram] });
    this.pages = new PageAllocator({ base: pool.base, size: pool.size, backing: new PhysMemBacking(this.mem), faults: k.faults });
    this.ioasid = new IoasidCore({ scheduler: k.scheduler, trace: k.trace, faults: k.faults, log: k.log });
    this.#factory = opts.platform;
    this.#interpose = opts.interpose;
    if (opts.deferBringUp !== true) this.bringUp();
  }

  /**
   * Boots the IOMMU platform as the machine would: the unit and its driver's
   * init, the IOMMU core with the driver registered. ENOMEM, ETIMEDOUT, EIO
   * (the driver's init) with nothing kept: every page it took is back and the
   * board can be dropped (or brought up again).
   */
  bringUp(): void {
    if (this.#booted !== null) throw new KernelBug("the board is already up");
    const k = this.kernel;
    const platform = this.#factory({ kernel: k, mem: this.mem, pages: this.pages, ioasid: this.ioasid });
    try {
      const port = this.#interpose === undefined ? platform.port : this.#interpose(platform.port);
      // One IOASID namespace for the driver and the core, as Linux has one system-wide.
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

  get platform(): P {
    return this.#up().platform;
  }

  /** The unit as endpoints reach it (through the interposer, if any). */
  get port(): IommuPort {
    return this.#up().port;
  }

  get core(): IommuCore {
    return this.#up().core;
  }

  get iommu(): Iommu {
    return this.#up().iommu;
  }

  #up(): Booted<P> {
    if (this.#booted === null) throw new KernelBug("the board's IOMMU platform is not up (bringUp)");
    return this.#booted;
  }

  /** Endpoints plugged in, by source ID. */
  get endpoints(): ReadonlyMap<SourceId, PciEndpoint> {
    return this.#endpoints;
  }

  /**
   * Plugs a PASID/ATS/PRI-capable endpoint in below the unit and, unless
   * `noEnable`, enables it as the PCI core and its driver would (bus master,
   * PASID with execute and privileged, ATS, PRI). EINVAL: a bus, device or
   * function out of range; EEXIST: the BDF is taken; ENOSPC: no free device
   * number is left.
   */
  endpoint(o: EndpointOptions = {}): PciEndpoint {
    const sid = this.#bdf(o);
    const pasidWidth = o.pasidWidth ?? 20;
    const ep = new PciEndpoint({
      bus: sid >> 8,
      dev: (sid >> 3) & 0x1f,
      fn: sid & 7,
      mem: this.mem,
      id: o.id ?? DSA_ID,
      ...(o.multiFunction === undefined ? {} : { multiFunction: o.multiFunction }),
      pasid: { maxWidth: pasidWidth, exec: true, priv: true },
      ats: {},
      pri: { outstandingCapacity: o.priCapacity ?? 32 },
      trace: this.kernel.trace,
    });
    if (o.noEnable !== true) pciEnableForSva(ep);
    ep.attach(this.port);
    this.platform.attachEndpoint(ep);
    this.#endpoints.set(ep.sid, ep);
    return ep;
  }

  /** Probes a function (or a platform master, by source ID) in the IOMMU core. */
  probe(ep: { readonly sid: SourceId }, name: string, pasidWidth = 20): IommuDevice {
    return this.core.probeDevice(this.iommu, { name, sid: ep.sid, pasidWidth });
  }

  /** {@link endpoint} then {@link probe}: a device as its driver finds it at boot. */
  addDevice(name: string, o: EndpointOptions = {}): DeviceSlot {
    const ep = this.endpoint(o);
    return { ep, dev: this.probe(ep, name, o.pasidWidth ?? 20) };
  }

  /** Enables SVA on a probed device; the core then routes its recoverable faults to the IO page fault queue. */
  enableSva(slot: DeviceSlot, maxPasid?: number): void {
    this.core.enableFeature(slot.dev, "sva", maxPasid === undefined ? {} : { maxPasid });
  }

  /** A process whose tables are in the format the platform's CPUs (and so its IOMMU) walk. */
  newMm(name: string): Mm {
    return new Mm({ kernel: this.kernel, mem: this.mem, pages: this.pages, name, arch: this.platform.mmArch });
  }

  /** Lets deferred work (IO page faults, teardown work, threaded interrupts) run to completion. */
  settle(): void {
    this.kernel.scheduler.runUntilIdle();
  }

  #bdf(o: EndpointOptions): SourceId {
    if (o.bus === undefined && o.dev === undefined && o.fn === undefined) {
      // The next free device number, function 0, on bus 0 and then the buses above it.
      const at = (n: number): SourceId => sourceId(n >> 8, (n >> 3) & 0x1f, 0);
      while (this.#nextDevice <= 0xfff8 && this.#endpoints.has(at(this.#nextDevice))) this.#nextDevice += 8;
      if (this.#nextDevice > 0xfff8) throw new KernelError(Errno.ENOSPC, "no free device number is left on any bus");
      return at(this.#nextDevice);
    }
    const [bus, dev, fn] = [o.bus ?? 0, o.dev ?? 0, o.fn ?? 0];
    if (!inRange(bus, 0xff) || !inRange(dev, 0x1f) || !inRange(fn, 7)) {
      throw new KernelError(Errno.EINVAL, `bus ${bus}, device ${dev}, function ${fn} is not a PCI address (bus 0-255, device 0-31, function 0-7)`);
    }
    const sid = sourceId(bus, dev, fn);
    if (this.#endpoints.has(sid)) throw new KernelError(Errno.EEXIST, `${formatBdf(sid)} already has an endpoint`);
    return sid;
  }
}

function inRange(v: number, max: number): boolean {
  return Number.isInteger(v) && v >= 0 && v <= max;
}
