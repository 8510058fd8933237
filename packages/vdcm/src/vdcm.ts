import { Errno, type Kernel, KernelError, NOTIFY_DONE, NOTIFY_OK, type VmId, type Workqueue } from "@vsva/kernel";
import { type IoasidCore, type IoasidEvent, type IoasidNotifierBlock, type IoasidNotifyData, IoasidPriority } from "@vsva/ioasid";
import type { IommuCore, IommuDevice } from "@vsva/iommu-core";
import type { Vfio } from "@vsva/vfio-type1";
import type { HostWq } from "./host-wq.js";
import { attempt, type MdevProgram, VdcmMdev } from "./mdev.js";
import "./trace-events.js";

export interface VdcmOptions {
  readonly kernel: Kernel;
  readonly ioasid: IoasidCore;
  readonly core: IommuCore;
  readonly vfio: Vfio;
  /** The accelerator's physical device as the IOMMU core knows it: its mdevs are its sub-devices. */
  readonly parent: IommuDevice;
  /** GENCAP.MAX_XFER_SHIFT the virtual devices advertise (default 21: 2 MiB, the host device's default). */
  readonly maxXferShift?: number;
}

/** Which VM an mdev is for: its id for traces, and the mm token of its IOASID set (what VFIO creates the VM's set with). */
export interface MdevTarget {
  readonly vm: VmId;
  readonly mm: object;
}

/** One VM with mdevs on this VDCM: its notifier, registered by mm token. */
interface VmEntry {
  readonly vm: VmId;
  readonly mm: object;
  readonly nb: IoasidNotifierBlock;
  readonly mdevs: Set<VdcmMdev>;
}

/** A hardware WQ that holds a host PASID for an mdev, for invariant checks. */
export interface HeldPasid extends MdevProgram {
  readonly mdev: VdcmMdev;
  /** What the hardware WQCFG holds, read back through the host driver. */
  readonly hardware: number | null;
}

/**
 * The VDCM of one accelerator (the idxd mdev vendor driver: drivers/dma/idxd/
 * mdev.c in the 2020 "idxd: add mdev support" series, drivers/vfio/mdev/idxd/
 * later): it composes mdevs from work queues the host driver lends, each a
 * sub-device of the accelerator in the IOMMU core (IOMMU-backed through the
 * parent's aux domain once VFIO attaches it to a container) and a VFIO mdev
 * whose regions are the virtual config space, the virtual BAR0 and the portal
 * BAR; and it subscribes to each VM's IOASID set at DEVICE priority, so FREE
 * clears any hardware WQ still holding the PASID (see {@link VdcmMdev}).
 */
export class Vdcm {
  readonly parent: IommuDevice;
  readonly #o: VdcmOptions;
  readonly #wq: Workqueue;
  readonly #mdevs = new Map<string, VdcmMdev>();
  readonly #lent = new Set<HostWq>();
  readonly #vms = new Map<object, VmEntry>();
  /** Whether the constructor turned aux domains on (so destroy turns them off). */
  readonly #auxOurs: boolean;
  #destroyed = false;

  /**
   * Turns on aux domains for the parent (iommu_dev_enable_feature(AUX), as
   * idxd's mdev host init does) and makes the VDCM's work queue. Errors:
   * EINVAL/ENODEV from the IOMMU core (the parent cannot have aux domains);
   * EEXIST a VDCM for this parent already has its work queue on this kernel.
   */
  constructor(opts: VdcmOptions) {
    this.#o = opts;
    this.parent = opts.parent;
    const xfer = opts.maxXferShift ?? 21;
    if (!Number.isInteger(xfer) || xfer < 12 || xfer > 31) throw new KernelError(Errno.EINVAL, `vdcm: max transfer shift ${xfer} (12..31)`);
    this.#auxOurs = !opts.parent.hasFeature("aux");
    if (this.#auxOurs) opts.core.enableFeature(opts.parent, "aux");
    this.#wq = opts.kernel.scheduler.createWorkqueue(`vdcm ${opts.parent.name}`);
  }

  get mdevs(): readonly VdcmMdev[] {
    return [...this.#mdevs.values()];
  }

  mdev(name: string): VdcmMdev | undefined {
    return this.#mdevs.get(name);
  }

  /**
   * Creates an mdev on `hostWq` for the VM `target` (mdev create through
   * sysfs, the vendor's create op): a sub-device of the parent in the IOMMU
   * core and an IOMMU-backed mdev in VFIO. The first mdev of a VM registers
   * the VDCM's notifier by the VM's mm token at DEVICE priority (it may come
   * before VFIO has made the VM's set). All or nothing.
   *
   * Errors: EINVAL bad name, a WQ that is neither dedicated nor shared, or
   * an mm already registered with another VM id; EEXIST the name is taken;
   * EBUSY the WQ is lent to another mdev or already holds a PASID, or the
   * VM's set already owns IDs (a notifier registered now would miss their
   * events); ENOMEM (fault points `vdcm.mdev_alloc`, `iommu.subdev-alloc`,
   * `ioasid.notifier_mm`).
   */
  createMdev(name: string, hostWq: HostWq, target: MdevTarget): VdcmMdev {
    const { kernel, ioasid, core, vfio } = this.#o;
    if (this.#destroyed) throw new KernelError(Errno.ENODEV, `vdcm ${this.parent.name} is destroyed`);
    if (typeof name !== "string" || name.length === 0) throw new KernelError(Errno.EINVAL, "an mdev needs a name");
    if (this.#mdevs.has(name)) throw new KernelError(Errno.EEXIST, `mdev ${name} exists`);
    const mode: unknown = typeof hostWq === "object" && (hostWq as HostWq | null) !== null ? hostWq.mode : null;
    if (mode !== "dedicated" && mode !== "shared") throw new KernelError(Errno.EINVAL, `${name}: not a work queue`);
    if (this.#lent.has(hostWq)) throw new KernelError(Errno.EBUSY, `WQ ${hostWq.id} is lent to another mdev`);
    if (hostWq.mode === "dedicated" && hostWq.pasid !== null) throw new KernelError(Errno.EBUSY, `WQ ${hostWq.id} already holds PASID ${hostWq.pasid}`);
    if (typeof target !== "object" || (target as MdevTarget | null) === null || typeof target.mm !== "object" || (target.mm as object | null) === null) throw new KernelError(Errno.EINVAL, `${name}: no VM mm token`);
    let entry = this.#vms.get(target.mm);
    if (entry !== undefined && entry.vm !== target.vm) throw new KernelError(Errno.EINVAL, `mm token is VM ${entry.vm}'s, not VM ${target.vm}'s`);
    kernel.faults.inject("vdcm.mdev_alloc");
    let fresh: VmEntry | null = null;
    if (entry === undefined) {
      const e: VmEntry = { vm: target.vm, mm: target.mm, mdevs: new Set(), nb: { priority: IoasidPriority.DEVICE, call: (ev, data) => this.#onEvent(e, ev, data) } };
      ioasid.registerNotifierMm(target.mm, e.nb);
      fresh = e;
      entry = e;
    }
    let sub: IommuDevice | null = null;
    try {
      sub = core.addSubDevice(this.parent, name);
      const mdev = new VdcmMdev(
        { kernel, ioasid, core, workqueue: this.#wq },
        { name, hostWq, vm: target.vm, mm: target.mm, sub, maxXferShift: this.#o.maxXferShift ?? 21 },
      );
      mdev.vfioDevice = vfio.addMdev(name, sub, mdev.ops);
      entry.mdevs.add(mdev);
      if (fresh !== null) this.#vms.set(target.mm, fresh);
      this.#mdevs.set(name, mdev);
      this.#lent.add(hostWq);
      kernel.trace.emit("vdcm.mdev-create", "VDCM", { vm: target.vm, device: name }, { wq: hostWq.id, mode: hostWq.mode });
      return mdev;
    } catch (e) {
      if (sub !== null) core.releaseDevice(sub);
      if (fresh !== null) ioasid.unregisterNotifierMm(target.mm, fresh.nb);
      throw e;
    }
  }

  /**
   * Removes an mdev (mdev remove): VFIO lets go of it first (EBUSY while a
   * user has its group open or in a container, and then nothing changed);
   * then the hardware WQ is quiesced and cleared and the reference put at
   * once, the sub-device released and the WQ given back. The VM's last mdev
   * takes the notifier with it. ENOENT not an mdev of this VDCM.
   */
  removeMdev(mdev: VdcmMdev): void {
    const { kernel, ioasid, core, vfio } = this.#o;
    if (!(mdev instanceof VdcmMdev) || this.#mdevs.get(mdev.name) !== mdev) throw new KernelError(Errno.ENOENT, "not an mdev of this VDCM");
    const vdev = mdev.vfioDevice;
    if (vdev !== null) vfio.removeDevice(vdev);
    mdev.teardown();
    core.releaseDevice(mdev.sub);
    this.#mdevs.delete(mdev.name);
    this.#lent.delete(mdev.hostWq);
    const entry = this.#vms.get(mdev.mm);
    entry?.mdevs.delete(mdev);
    if (entry?.mdevs.size === 0) {
      this.#vms.delete(mdev.mm);
      const err = attempt(() => ioasid.unregisterNotifierMm(entry.mm, entry.nb));
      if (err !== null) kernel.log.warn("vdcm.unregister", `VDCM notifier for VM ${entry.vm} was not registered: ${err.message}`, "VDCM");
    }
    kernel.trace.emit("vdcm.mdev-remove", "VDCM", { vm: mdev.vm, device: mdev.name }, { wq: mdev.hostWq.id });
  }

  /**
   * The VDCM goes (the idxd mdev host release, on driver unbind): every mdev
   * removed as {@link removeMdev} does, then aux domains turned off for the
   * parent if the VDCM turned them on. All or nothing: EBUSY, and nothing
   * removed, while any mdev's group is open or in a container. Destroying
   * twice does nothing; a destroyed VDCM creates no mdev (ENODEV).
   */
  destroy(): void {
    if (this.#destroyed) return;
    const busy = this.mdevs.find((m) => m.vfioDevice?.group != null && (m.vfioDevice.group.opened !== null || m.vfioDevice.group.container !== null));
    if (busy !== undefined) throw new KernelError(Errno.EBUSY, `vdcm ${this.parent.name}: mdev ${busy.name} is in use`);
    for (const m of this.mdevs) this.removeMdev(m);
    // Drains or clearings a FREE queued and nothing ran yet have run in each removal; the queue is empty.
    this.#wq.flush();
    if (this.#auxOurs) {
      const err = attempt(() => this.#o.core.disableFeature(this.parent, "aux"));
      if (err !== null) this.#o.kernel.log.warn("vdcm.destroy", `vdcm ${this.parent.name}: turning aux domains off: ${err.message}`, "VDCM");
    }
    this.#destroyed = true;
    this.#o.kernel.trace.emit("vdcm.destroy", "VDCM", { device: this.parent.name }, {});
  }

  /** Every hardware WQ that holds a host PASID for an mdev, with what its register says. */
  heldPasids(): HeldPasid[] {
    const out: HeldPasid[] = [];
    for (const m of this.#mdevs.values()) {
      const p = m.programmed;
      if (p !== null) out.push({ ...p, mdev: m, hardware: m.hostWq.pasid });
    }
    return out;
  }

  /** VMs with a registered notifier. */
  get vms(): number {
    return this.#vms.size;
  }

  /** The VM's notifier (atomic context): only FREE concerns the VDCM. */
  #onEvent(entry: VmEntry, event: IoasidEvent, data: IoasidNotifyData): number {
    if (event !== "FREE") return NOTIFY_DONE;
    let hit = false;
    for (const m of entry.mdevs) if (m.onFree(data)) hit = true;
    return hit ? NOTIFY_OK : NOTIFY_DONE;
  }
}
