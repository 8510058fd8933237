import { Errno, type HostPasid, type Kernel, KernelBug, KernelError, type TraceIds, asHostPasid, asIoasid } from "@vsva/kernel";
import type { IoasidCore, IoasidSet } from "@vsva/ioasid";
import type { IommuDevice } from "./device.js";
import type { IommuGroup } from "./group.js";
import type { IopfQueue } from "./iopf.js";
import type { Mm } from "./mm/mm.js";
import type { MmuNotifier } from "./mm/mmu-notifier.js";
import type { SvaBindingOps, SvaMm } from "./ops.js";
import "./trace-events.js";

export interface SvaBindOptions {
  /**
   * The shutdown callback of the 2017 SVA API review (Joerg Roedel's `iovm_shutdown_cb`): called when the
   * mm exits while still bound, before the PASID is torn down, so the device
   * driver stops the device's use of the PASID. Each distinct callback given
   * to binds of the bond is called once.
   */
  readonly stop?: (bond: SvaBond) => void;
}

/**
 * - bound: the PASID entry is programmed;
 * - released: the mm exited while bound; the entry was torn down by the
 *   release notifier and the owner's unbind has nothing left to do;
 * - unbound: the last reference was dropped (or the device went away).
 */
export type SvaBondState = "bound" | "released" | "unbound";

/**
 * One device sharing one mm (`struct iommu_sva`): the handle a device
 * driver gets from {@link IommuSva.bindDevice} and gives back to unbind. It
 * carries the PASID to program into the device.
 */
export class SvaBond {
  readonly dev: IommuDevice;
  readonly mm: Mm;
  readonly pasid: HostPasid;
  /** @internal */
  readonly driver: SvaBindingOps;
  /** @internal */
  readonly stops: ((bond: SvaBond) => void)[] = [];
  /** @internal */
  refs = 1;
  /** @internal */
  state: SvaBondState = "bound";

  constructor(dev: IommuDevice, mm: Mm, pasid: HostPasid, driver: SvaBindingOps) {
    this.dev = dev;
    this.mm = mm;
    this.pasid = pasid;
    this.driver = driver;
  }

  /** Binds of this (device, mm) not yet unbound. */
  get users(): number {
    return this.refs;
  }

  get bondState(): SvaBondState {
    return this.state;
  }
}

/** The core's per-mm SVA record (`struct iommu_mm_data`): the view drivers see, the bonds and the notifier. */
class SvaMmData {
  readonly bonds = new Map<IommuDevice, SvaBond>();
  released = false;

  constructor(
    readonly mm: Mm,
    readonly view: SvaMm,
    readonly notifier: MmuNotifier,
  ) {}
}

export interface IommuSvaOptions {
  readonly kernel: Kernel;
  readonly ioasid: IoasidCore;
  readonly iopf: IopfQueue;
  /** Whether `dev` is a device of this core (probed and not released). */
  readonly isProbed: (dev: IommuDevice) => boolean;
  /** PASIDs the SVA set may hold (taken from the IOASID capacity when the first bind needs it). Default 1024. */
  readonly pasidQuota?: number;
}

/**
 * Shared virtual addressing in the core (drivers/iommu/iommu-sva.c): binds
 * an mm — never a task (the 2017 SVA API review, Joerg Roedel) — to devices.
 *
 * - One PASID per mm for the mm's life (Linux drivers/iommu/iommu-sva-lib.c: iommu_sva_alloc_pasid()): allocated from the
 *   host's IOASID namespace, in an SVA set, by the mm's first bind, in
 *   [1, maxPasids of that device); freed when the mm is freed.
 * - Per-device limit (the 2017 SVA API review, Sinan Kaya/Jean-Philippe Brucker): a bind to a device whose
 *   `maxPasids` the mm's PASID does not fit under fails with EOVERFLOW.
 * - A bond per (device, mm), counted: a second bind returns the same bond.
 * - An mmu notifier per bound mm forwards invalidations to every bond's
 *   driver binding and, at exit, stops the devices (the owners' callbacks),
 *   tears every PASID entry down (drivers disable fault reporting first) and
 *   flushes the fault queue, so the owners' later unbinds have nothing to do.
 *
 * Every failing bind leaves everything as it was (bonds, PASID, notifier,
 * mm references). Unbind cannot fail.
 */
export class IommuSva {
  readonly #kernel: Kernel;
  readonly #ioasid: IoasidCore;
  readonly #iopf: IopfQueue;
  readonly #isProbed: (dev: IommuDevice) => boolean;
  readonly #quota: number;
  #set: IoasidSet | null = null;
  readonly #mms = new Map<Mm, SvaMmData>();
  readonly #byPasid = new Map<HostPasid, SvaMmData>();

  constructor(opts: IommuSvaOptions) {
    const quota = opts.pasidQuota ?? 1024;
    if (!Number.isInteger(quota) || quota < 1) throw new KernelError(Errno.EINVAL, `SVA PASID quota ${quota} must be a positive integer`);
    this.#kernel = opts.kernel;
    this.#ioasid = opts.ioasid;
    this.#iopf = opts.iopf;
    this.#isProbed = opts.isProbed;
    this.#quota = quota;
  }

  /** Bonds alive now (bound or released, not yet unbound), over all mms. */
  get liveBonds(): number {
    let n = 0;
    for (const d of this.#mms.values()) n += d.bonds.size;
    return n;
  }

  /** The SVA IOASID set, once the first bind made it. */
  get pasidSet(): IoasidSet | null {
    return this.#set;
  }

  /** The bond of `dev` and `mm`, if any. */
  bondOf(dev: IommuDevice, mm: Mm): SvaBond | null {
    return this.#mms.get(mm)?.bonds.get(dev) ?? null;
  }

  /** Whether `dev` has bonds (bound or released). */
  hasBonds(dev: IommuDevice): boolean {
    for (const d of this.#mms.values()) if (d.bonds.has(dev)) return true;
    return false;
  }

  /**
   * `iommu_sva_bind_device(dev, mm)`. Returns the bond (with the mm's PASID).
   *
   * Errors, each leaving everything unchanged: ENODEV `dev` is not a probed
   * device or SVA is not enabled on it; EINVAL a sub-device (SVA binds the
   * physical device), the mm is exiting or gone, or another stop callback
   * is refused by the driver, or `opts` is not an options object whose
   * `stop`, when given, is a function (checked before anything else is
   * touched: a bad callback would otherwise only surface at mm exit, inside
   * the release path); EOVERFLOW the mm's PASID is at or above the
   * device's `maxPasids`; ENOSPC no PASID left in [1, maxPasids) or in the
   * SVA set's quota; ENOMEM injected (`ioasid.set_alloc`, `ioasid.alloc`,
   * `mm.notifier-alloc`, `iommu.sva-bond`, or the driver's).
   */
  bindDevice(dev: IommuDevice, mm: Mm, opts: SvaBindOptions = {}): SvaBond {
    this.#kernel.scheduler.atomic.mightSleep("iommu_sva_bind_device");
    if (!this.#isProbed(dev)) throw new KernelError(Errno.ENODEV, `${dev.name} is not a device of this IOMMU core`);
    if (dev.isSubDevice) throw new KernelError(Errno.EINVAL, `${dev.name} is a sub-device; SVA binds its physical device`);
    const iommu = dev.iommu;
    if (iommu === null || !dev.hasFeature("sva")) throw new KernelError(Errno.ENODEV, `SVA is not enabled on ${dev.name}`);
    if (mm.state !== "live" || mm.users === 0) throw new KernelError(Errno.EINVAL, `${mm.name} is ${mm.state}; a dying mm cannot be bound`);
    checkBindOptions(opts);

    let data = this.#mms.get(mm);
    const existing = data?.bonds.get(dev);
    if (existing !== undefined) {
      if (existing.state !== "bound") throw new KernelBug(`${mm.name}: a ${existing.state} bond on a live mm`);
      existing.refs++;
      if (opts.stop !== undefined && !existing.stops.includes(opts.stop)) existing.stops.push(opts.stop);
      this.#trace("sva.bind", existing, { mm: mm.name, refs: existing.refs, driverCalled: false });
      return existing;
    }

    const had = mm.pasid;
    if (had !== null && had >= dev.maxPasids) {
      throw new KernelError(Errno.EOVERFLOW, `${mm.name}'s PASID ${had} does not fit ${dev.name}'s ${dev.maxPasids} PASIDs`);
    }
    const undo: (() => void)[] = [];
    try {
      const pasid = had ?? this.#allocPasid(dev, mm, undo);
      const fresh = data === undefined;
      if (data === undefined) {
        const d: SvaMmData = new SvaMmData(mm, { pgd: mm.pgd, levels: mm.levels, pasid, name: mm.name, format: mm.format }, this.#notifierFor(() => d));
        mm.registerNotifier(d.notifier);
        undo.push(() => mm.unregisterNotifier(d.notifier));
        data = d;
      }
      this.#kernel.faults.inject("iommu.sva-bond");
      const driver = iommu.ops.svaBind(dev, data.view);
      const bond = new SvaBond(dev, mm, pasid, driver);
      if (opts.stop !== undefined) bond.stops.push(opts.stop);
      // Committed: nothing below can fail.
      data.bonds.set(dev, bond);
      if (fresh) {
        mm.mmgrab();
        this.#mms.set(mm, data);
        this.#byPasid.set(pasid, data);
      }
      this.#trace("sva.bind", bond, { mm: mm.name, refs: 1, driverCalled: true });
      return bond;
    } catch (e) {
      for (const u of undo.reverse()) u();
      throw e;
    }
  }

  /**
   * `iommu_sva_unbind_device`: drops one reference; the last one tears the
   * PASID entry down on the device (the driver flushes and drains its page
   * requests) and flushes the fault queue of the PASID. The device driver
   * must have stopped the device's use of the PASID first. After a release
   * at mm exit, or once the device is gone, there is nothing left to tear
   * down and this only drops the reference. Cannot fail; unbinding a bond
   * with no references left is a kernel bug.
   */
  unbindDevice(bond: SvaBond): void {
    this.#kernel.scheduler.atomic.mightSleep("iommu_sva_unbind_device");
    if (bond.refs === 0) throw new KernelBug(`unbinding ${bond.mm.name} from ${bond.dev.name} with no reference left`);
    bond.refs--;
    const driverCalled = bond.refs === 0 && bond.state === "bound";
    this.#trace("sva.unbind", bond, { mm: bond.mm.name, refs: bond.refs, driverCalled });
    if (bond.refs === 0) this.#end(bond);
  }

  /**
   * Binds `mm` to every device of `group` (the 2017 SVA API series' `bind_group`, for
   * VFIO), all or nothing: if one fails, those already bound by this call
   * are unbound and, if this call gave the mm its PASID, the PASID goes
   * back. Errors as {@link bindDevice}; EINVAL for an empty group.
   */
  bindGroup(group: IommuGroup, mm: Mm, opts: SvaBindOptions = {}): SvaBond[] {
    checkBindOptions(opts);
    if (group.devices.length === 0) throw new KernelError(Errno.EINVAL, `group ${group.id} has no devices`);
    const hadPasid = mm.pasid !== null;
    const bonds: SvaBond[] = [];
    try {
      for (const dev of group.devices) bonds.push(this.bindDevice(dev, mm, opts));
    } catch (e) {
      for (const b of bonds.reverse()) this.unbindDevice(b);
      const pasid = mm.pasid;
      if (!hadPasid && pasid !== null && !this.#mms.has(mm)) {
        mm.clearPasid();
        this.#freePasid(pasid);
      }
      throw e;
    }
    return bonds;
  }

  /** Unbinds what {@link bindGroup} returned. */
  unbindGroup(bonds: readonly SvaBond[]): void {
    for (const b of bonds) this.unbindDevice(b);
  }

  /**
   * The device is going away (hot-unplug, driver unbind): every bond on it
   * ends now, whatever its references; their owners' later unbinds only drop
   * references. Cannot fail.
   */
  releaseDevice(dev: IommuDevice): void {
    for (const d of [...this.#mms.values()]) {
      const bond = d.bonds.get(dev);
      if (bond !== undefined && bond.state !== "unbound") this.#end(bond);
    }
  }

  /** The live mm bound at `pasid` on `dev`, for the fault queue. */
  faultTarget(dev: IommuDevice, pasid: HostPasid): Mm | null {
    const d = this.#byPasid.get(pasid);
    if (d === undefined || d.released) return null;
    return d.bonds.get(dev)?.state === "bound" ? d.mm : null;
  }

  // --------------------------------------------------------------- internals

  #allocPasid(dev: IommuDevice, mm: Mm, undo: (() => void)[]): HostPasid {
    const max = dev.maxPasids - 1;
    if (max < 1) throw new KernelError(Errno.ENOSPC, `${dev.name} has no PASID to give (maxPasids ${dev.maxPasids})`);
    this.#set ??= this.#ioasid.allocSet(this, Math.min(this.#quota, this.#ioasid.available), "none");
    const pasid = asHostPasid(this.#ioasid.alloc(this.#set, 1, max, mm));
    mm.setPasid(pasid, () => {
      this.#freePasid(pasid);
    });
    undo.push(() => {
      mm.clearPasid();
      this.#freePasid(pasid);
    });
    return pasid;
  }

  #freePasid(pasid: HostPasid): void {
    this.#byPasid.delete(pasid);
    if (this.#set !== null) this.#ioasid.free(this.#set, asIoasid(pasid));
  }

  #notifierFor(data: () => SvaMmData): MmuNotifier {
    return {
      invalidateRange: (_mm, start, end) => {
        for (const b of data().bonds.values()) if (b.state === "bound") b.driver.invalidateRange(start, end);
      },
      release: () => {
        this.#release(data());
      },
    };
  }

  /**
   * The mm exits while bound: the owners stop their devices, then each
   * driver binding is released (fault reporting off, entry torn down,
   * flushed) and the PASID's pending faults are answered, before exit_mmap
   * unmaps anything.
   *
   * Nothing here may stop half way: the mm's exit cannot be refused or
   * retried, so a stop callback or a driver that throws is reported (a
   * WARN, as `mmu_notifier_release` callers get no error back) and the
   * teardown goes on. Every bond ends "released" and the owners' unbinds
   * still find a consistent record.
   */
  #release(d: SvaMmData): void {
    d.released = true;
    const bonds = [...d.bonds.values()].filter((b) => b.state === "bound");
    for (const b of bonds) for (const stop of b.stops) this.#guarded(b, "stop callback", () => stop(b));
    for (const b of bonds) {
      b.state = "released";
      this.#guarded(b, "driver release", () => b.driver.release());
      this.#guarded(b, "fault queue flush", () => this.#iopf.flush(b.dev, b.pasid));
    }
    this.#kernel.trace.emit("sva.release", "IOMMU", { hpasid: d.view.pasid }, { mm: d.mm.name, bonds: bonds.length });
  }

  /** Ends a bond: tears the driver binding down if still bound, and forgets the mm when it was its last bond. */
  #end(bond: SvaBond): void {
    const d = this.#mms.get(bond.mm);
    if (d?.bonds.get(bond.dev) !== bond) return;
    const wasBound = bond.state === "bound";
    // The owners' references stay: each owner still unbinds once, and that only drops its reference.
    bond.state = "unbound";
    d.bonds.delete(bond.dev);
    if (wasBound) {
      // Unbind cannot fail: a driver that throws anyway is reported and the core's records still end.
      this.#guarded(bond, "driver unbind", () => bond.driver.unbind());
      this.#guarded(bond, "fault queue flush", () => this.#iopf.flush(bond.dev, bond.pasid));
    }
    if (d.bonds.size > 0) return;
    bond.mm.unregisterNotifier(d.notifier);
    this.#mms.delete(bond.mm);
    // The PASID stays with the mm until the mm is freed; lookups by PASID stop now.
    this.#byPasid.delete(d.view.pasid);
    bond.mm.mmdrop();
  }

  /**
   * Runs one step of a teardown that must not stop half way. What it throws
   * (a driver's KernelError, a callback's TypeError) is a bug of the code
   * called: reported as the kernel's WARN would be (a log line and a
   * trace event, both kept by the run) and the teardown continues.
   */
  #guarded(bond: SvaBond, what: string, step: () => void): void {
    try {
      step();
    } catch (e) {
      const error = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
      const message = `${bond.mm.name} on ${bond.dev.name} (PASID ${bond.pasid}): ${what} threw (${error}); teardown continued`;
      this.#kernel.log.warn(`sva.${what}`, message, "IOMMU");
      this.#kernel.trace.emit("sva.warn", "IOMMU", { device: bond.dev.name, hpasid: bond.pasid }, { mm: bond.mm.name, step: what, error });
    }
  }

  #trace(kind: "sva.bind" | "sva.unbind", bond: SvaBond, payload: { mm: string; refs: number; driverCalled: boolean }): void {
    const ids: TraceIds = { device: bond.dev.name, hpasid: bond.pasid };
    this.#kernel.trace.emit(kind, "IOMMU", ids, payload);
  }
}

/**
 * EINVAL unless `opts` is an options object whose `stop`, if present, is a
 * function. The options come from a device driver (and, through VFIO, from
 * user space): a bad one must be refused at bind, not found at mm exit.
 */
function checkBindOptions(opts: unknown): asserts opts is SvaBindOptions {
  if (typeof opts !== "object" || opts === null) throw new KernelError(Errno.EINVAL, `SVA bind options must be an object, got ${opts === null ? "null" : typeof opts}`);
  const stop: unknown = (opts as { readonly stop?: unknown }).stop;
  if (stop !== undefined && typeof stop !== "function") throw new KernelError(Errno.EINVAL, `SVA bind option stop must be a function, got ${stop === null ? "null" : typeof stop}`);
}
