import {
  asSpid,
  Errno,
  type GuestPasid,
  type HostPasid,
  type Ioasid,
  isKernelError,
  type Kernel,
  KernelError,
  type VmId,
  Work,
  type Workqueue,
} from "@vsva/kernel";
import type { IoasidCore, IoasidNotifyData, IoasidSet } from "@vsva/ioasid";
import type { IommuCore, IommuDevice } from "@vsva/iommu-core";
import { buildEndpointConfig, type EndpointConfig, PCI_CFG_SPACE_EXP_SIZE } from "@vsva/iommu-hw";
import { DSA_DESC_SIZE, DsaCmd, DsaCmdErr, DsaCommand, DsaDesc, DsaDeviceState, DsaWqCfg, WqState } from "@vsva/dsa";
import { DeviceFlag, RegionFlag, type VfioDevice, type VfioDeviceOps, type VfioRegion, VfioPciRegion, VFIO_PCI_NUM_IRQS } from "@vsva/vfio-type1";
import type { HostWq } from "./host-wq.js";
import { CMD_ERR_HW, VBAR0_SIZE, VirtualBar0 } from "./vbar0.js";
import "./trace-events.js";

/** vfio-pci's region index of BAR2, the portal BAR (VFIO_PCI_BAR2_REGION_INDEX). */
export const VDCM_PORTAL_REGION = 2;
/**
 * The portal BAR: one WQ's 16 KiB of portals as drivers/dma/idxd of
 * v5.6–v5.10 lays them out (IDXD_PORTAL_SIZE): page 0 the unlimited portal,
 * page 1 the limited one; pages 2 and 3 (interrupt-handle portals) are not
 * modelled.
 */
export const VDCM_PORTAL_SIZE = 0x4000;
const PORTAL_PAGE = 0x1000;
/** PCI_DEVICE_ID_INTEL_DSA_SPR0, the identity the mdev's config space shows (the vDCM's idxd_pci_config). */
const DSA_VENDOR_ID = 0x8086;
const DSA_DEVICE_ID = 0x0b25;
const DSA_MDEV_SUBSYSTEM_ID = 0x2010;

/** What the VDCM gives each of its mdevs. */
export interface MdevEnv {
  readonly kernel: Kernel;
  readonly ioasid: IoasidCore;
  readonly core: IommuCore;
  /** Where FREE's clearing runs (it needs thread context: the WQ drain sleeps). */
  readonly workqueue: Workqueue;
}

export interface MdevInit {
  readonly name: string;
  readonly hostWq: HostWq;
  readonly vm: VmId;
  readonly mm: object;
  readonly sub: IommuDevice;
  readonly maxXferShift: number;
}

/** The host PASID the hardware WQ holds for this mdev, and what backs it. */
export interface MdevProgram {
  readonly hpasid: HostPasid;
  /** The guest PASID it was translated from; null for the mdev's default (aux-domain) PASID. */
  readonly gpasid: GuestPasid | null;
  /** The VM's set the reference is held in (null for the default PASID, which needs none: it lives as long as the aux domain). */
  readonly set: IoasidSet | null;
  readonly priv: boolean;
}

interface Held extends MdevProgram {
  /** FREE was notified: the clearing is queued and the guest's WQ already shows disabled. */
  freeing: boolean;
}

type ClearCause = "GUEST" | "FREE" | "RELEASE" | "REMOVE" | "RESET";

/** Runs `fn`; returns the KernelError it threw, or null. Anything else is a bug and propagates. */
export function attempt(fn: () => void): KernelError | null {
  try {
    fn();
    return null;
  } catch (e) {
    if (isKernelError(e)) return e;
    throw e;
  }
}

class Refused extends Error {
  constructor(
    readonly err: number,
    readonly reason: string,
  ) {
    super(reason);
  }
}

/**
 * One mdev the VDCM composed from a host work queue: what the guest sees
 * (config space, virtual BAR0, the portal BAR), the emulation of its
 * commands, and the host PASID the hardware WQ holds for it.
 *
 * The PASID rules follow the IOASID design's "VDCM PASID Programming"
 * (`Documentation/driver-api/ioasid.rst` as proposed with the vSVA series on
 * the iommu list, 2020), with the command emulation of the idxd mdev series
 * (drivers/dma/idxd/vdev.c: vidxd_wq_enable() and friends):
 * - ENABLE_WQ on a dedicated WQ with PASID_EN: the guest PASID in the virtual
 *   WQCFG is looked up by SPID in the VM's IOASID set, which takes a
 *   reference (step 10 of the normal guest life cycle), and the host PASID is
 *   programmed into the hardware WQ; without PASID_EN (or with guest PASID 0)
 *   the mdev's default PASID, that of its aux domain, is used with PRIV set;
 * - a PASID that does not resolve is refused with the device's own error
 *   (CMDSTS 0x26, PASID_EN), nothing changed;
 * - disabling the WQ (DISABLE_WQ, DISABLE_DEVICE, RESET_*, FLR) quiesces and
 *   clears the hardware WQ, then puts the reference (steps 14-16);
 * - FREE of the host PASID (DEVICE priority) queues that clearing as work
 *   (free-before-unbind steps 21, 24, 26); release and removal do it at once.
 * The guest reads back only what it wrote: its own guest PASID.
 */
export class VdcmMdev {
  readonly name: string;
  readonly hostWq: HostWq;
  readonly vm: VmId;
  readonly mm: object;
  /** The mdev as the IOMMU core sees it: a sub-device of the parent, IOMMU-backed through its aux domain. */
  readonly sub: IommuDevice;
  readonly config: EndpointConfig;
  readonly bar0: VirtualBar0;
  readonly ops: VfioDeviceOps;
  /** @internal set once VFIO has it. */
  vfioDevice: VfioDevice | null = null;
  readonly #env: MdevEnv;
  readonly #clearWork: Work;
  readonly #regions: readonly VfioRegion[];
  #held: Held | null = null;
  #removed = false;
  /** Shared WQ: host PASIDs freed while the guest may have descriptors of theirs queued, drained by {@link #drainWork}. */
  readonly #drains = new Set<HostPasid>();
  readonly #drainWork: Work;
  /** A VMM has the device open: only then can a guest have descriptors queued on a shared WQ. */
  #inUse = false;

  constructor(env: MdevEnv, init: MdevInit) {
    this.#env = env;
    this.name = init.name;
    this.hostWq = init.hostWq;
    this.vm = init.vm;
    this.mm = init.mm;
    this.sub = init.sub;
    this.bar0 = new VirtualBar0({ mode: init.hostWq.mode, size: init.hostWq.size, maxXferShift: init.maxXferShift });
    // The config space of a DSA function as vfio-pci would show it: the PASID
    // capability visible (the vSVA series' "vfio/pci: Expose PCIe PASID
    // capability to userspace"), ATS, and no PRI (vfio-pci hides it: page
    // requests reach a VM through the VFIO fault region, not the device).
    this.config = buildEndpointConfig({
      id: { vendorId: DSA_VENDOR_ID, deviceId: DSA_DEVICE_ID, subsystemId: DSA_MDEV_SUBSYSTEM_ID },
      portType: "rcEndpoint",
      flr: true,
      pasid: { maxWidth: Math.max(1, Math.min(20, init.sub.pasidWidth)), exec: false, priv: true },
      ats: { invalidateQueueDepth: 1 },
    });
    this.config.space.onWrite(this.config.devCtl, (_before, after) => {
      if (this.config.devCtl.getIn(after, "INITIATE_FLR") === 1) this.#resetDevice("RESET");
    });
    this.#clearWork = new Work(`vdev_clear_wk ${init.name}`, () => {
      if (this.#held?.freeing === true) this.#clear("FREE");
    });
    this.#drainWork = new Work(`vdev_drain_pasid_wk ${init.name}`, () => this.#drainFreed());
    const regions: VfioRegion[] = [];
    for (let i = 0; i < VfioPciRegion.NUM; i++) {
      const size = i === VfioPciRegion.BAR0 ? VBAR0_SIZE : i === VDCM_PORTAL_REGION ? VDCM_PORTAL_SIZE : i === VfioPciRegion.CONFIG ? PCI_CFG_SPACE_EXP_SIZE : 0;
      regions.push({ index: i, size, flags: size === 0 ? 0 : RegionFlag.READ | RegionFlag.WRITE });
    }
    this.#regions = regions;
    this.ops = {
      flags: DeviceFlag.PCI | DeviceFlag.RESET,
      numIrqs: VFIO_PCI_NUM_IRQS,
      regions: () => this.#regions,
      read: (index, offset, length) => this.#read(index, offset, length),
      write: (index, offset, bytes) => this.#write(index, offset, bytes),
      open: () => {
        this.#inUse = true;
      },
      release: () => {
        this.#inUse = false;
        this.#resetDevice("RELEASE");
      },
    };
  }

  /** What the hardware WQ holds for this mdev (null: nothing of this mdev's). */
  get programmed(): MdevProgram | null {
    const h = this.#held;
    return h === null ? null : { hpasid: h.hpasid, gpasid: h.gpasid, set: h.set, priv: h.priv };
  }

  /** Whether a queued FREE clearing is pending. */
  get clearPending(): boolean {
    return this.#clearWork.pending;
  }

  // ------------------------------------------------------------ guest accesses

  #read(index: number, offset: number, length: number): Uint8Array {
    if (index === VfioPciRegion.BAR0) return this.bar0.read(offset, length);
    if (index === VfioPciRegion.CONFIG) return this.#configRead(offset, length);
    if (index === VDCM_PORTAL_REGION) return new Uint8Array(length).fill(0xff); // portals are write-only: reads return all-ones
    throw new KernelError(Errno.EINVAL, `${this.name}: region ${index} is empty`);
  }

  #write(index: number, offset: number, bytes: Uint8Array): number {
    if (!(bytes instanceof Uint8Array)) throw new KernelError(Errno.EFAULT, `${this.name}: no bytes to write`);
    if (index === VfioPciRegion.BAR0) {
      const cmd = this.bar0.write(offset, bytes);
      if (cmd !== null) this.#command(cmd);
      return bytes.length;
    }
    if (index === VfioPciRegion.CONFIG) {
      if (!(bytes.length === 1 || bytes.length === 2 || bytes.length === 4) || offset % bytes.length !== 0) {
        throw new KernelError(Errno.EINVAL, `${this.name}: config write of ${bytes.length} bytes at ${offset}: 1, 2 or 4 aligned bytes only`);
      }
      let v = 0;
      for (let i = 0; i < bytes.length; i++) v |= (bytes[i] ?? 0) << (8 * i);
      this.config.space.write(offset, bytes.length, v >>> 0);
      return bytes.length;
    }
    if (index === VDCM_PORTAL_REGION) return this.#portal(offset, bytes);
    throw new KernelError(Errno.EINVAL, `${this.name}: region ${index} is empty`);
  }

  #configRead(offset: number, length: number): Uint8Array {
    const out = new Uint8Array(length);
    for (let i = 0; i < length; i++) {
      const at = offset + i;
      out[i] = this.config.space.read(at, 1) & 0xff;
    }
    return out;
  }

  /**
   * A 64-byte store to a portal. A dedicated WQ's (MOVDIR64B) is posted and
   * goes to the hardware WQ, whose WQCFG stamps the host PASID; one to a
   * disabled virtual WQ is dropped, as the device drops it. A shared WQ's
   * (ENQCMD) carries the guest's PASID: the portal is trapped here, so the
   * VDCM translates it by SPID in the VM's set as the vDCM does for trapped
   * portals (drivers/vfio/mdev/idxd/vdev.c), and a PASID that does not
   * resolve drops the descriptor (EINVAL). Returns 64 when taken, 0 for
   * ENQCMD's retry. EINVAL for anything but an aligned 64-byte store to page
   * 0 or 1.
   */
  #portal(offset: number, bytes: Uint8Array): number {
    const page = Math.floor(offset / PORTAL_PAGE);
    if (bytes.length !== DSA_DESC_SIZE || offset % DSA_DESC_SIZE !== 0 || page > 1) {
      throw new KernelError(Errno.EINVAL, `${this.name}: portal store of ${bytes.length} bytes at ${offset}: one aligned 64-byte store to page 0 or 1`);
    }
    const live = this.bar0.enabled && this.bar0.wqEnabled && !this.#removed;
    if (this.hostWq.mode === "dedicated") {
      if (live && this.#held !== null && !this.#held.freeing) this.hostWq.movdir64b(bytes);
      return DSA_DESC_SIZE;
    }
    if (!live) return 0;
    const d = DsaDesc.alloc();
    new Uint8Array(d.buffer, d.byteOffset, DSA_DESC_SIZE).set(bytes);
    const g = DsaDesc.get(d, "PASID");
    const set = this.#env.ioasid.findSetByToken(this.mm, "mm");
    let h = 0;
    const err = attempt(() => {
      if (set === null) throw new KernelError(Errno.ENOENT, `VM ${this.vm} has no IOASID set`);
      h = this.#env.ioasid.findBySpid(set, asSpid(g), false);
    });
    if (err !== null) throw new KernelError(Errno.EINVAL, `${this.name}: ENQCMD with guest PASID ${g}: ${err.message}`, { cause: err });
    DsaDesc.set(d, "PASID", h);
    return this.hostWq.enqcmd(new Uint8Array(d.buffer, d.byteOffset, DSA_DESC_SIZE)) === "accepted" ? DSA_DESC_SIZE : 0;
  }

  // ------------------------------------------------------------ commands

  #command(cmd: number): void {
    const v = Uint32Array.of(cmd);
    const op = DsaCmd.get(v, "COMMAND");
    const operand = DsaCmd.get(v, "OPERAND");
    let err: number = DsaCmdErr.SUCCESS;
    let reason = "";
    try {
      this.#exec(op, operand);
    } catch (e) {
      if (!(e instanceof Refused)) throw e;
      err = e.err;
      reason = e.reason;
      this.#env.kernel.log.warn(`vdcm.cmd.${this.name}`, `${this.name}: command ${op} refused (CMDSTS 0x${err.toString(16)}): ${reason}`, "VDCM");
    }
    this.bar0.complete(cmd, err);
    this.#env.kernel.trace.emit("vdcm.command", "VDCM", { vm: this.vm, device: this.name }, { command: op, operand, err, reason });
  }

  /** Whether a WQ-mask operand (bits 15:0 a bitmap, 19:16 which 16) names the virtual WQ 0. */
  static #namesWq0(operand: number): boolean {
    return (operand & 1) === 1 && (operand >>> 16) === 0;
  }

  #exec(op: number, operand: number): void {
    const b = this.bar0;
    switch (op) {
      case DsaCommand.ENABLE_DEVICE:
        if (b.enabled) throw new Refused(DsaCmdErr.DEV_ENABLED, "device already enabled");
        if (!this.config.command.flag("BUS_MASTER")) throw new Refused(DsaCmdErr.BUSMASTER_EN, "bus mastering is off in the config space");
        b.setDeviceState(DsaDeviceState.ENABLED);
        return;
      case DsaCommand.DISABLE_DEVICE: {
        if (!b.enabled) throw new Refused(DsaCmdErr.DIS_DEV_EN, "device not enabled");
        const cleared = this.#disableWq("GUEST");
        b.setDeviceState(DsaDeviceState.DISABLED);
        if (!cleared) throw new Refused(CMD_ERR_HW, "the hardware WQ could not be cleared");
        return;
      }
      case DsaCommand.DRAIN_ALL:
      case DsaCommand.ABORT_ALL:
        // No abort reaches the hardware WQ through the host driver's handle: an abort completes by draining (decision).
        if (b.wqEnabled) this.#hw(() => this.hostWq.drain());
        return;
      case DsaCommand.RESET_DEVICE:
        this.#resetDevice("RESET");
        return;
      case DsaCommand.ENABLE_WQ:
        this.#enableWq(operand);
        return;
      case DsaCommand.DISABLE_WQ:
      case DsaCommand.DRAIN_WQ:
      case DsaCommand.ABORT_WQ:
      case DsaCommand.RESET_WQ: {
        if (!VdcmMdev.#namesWq0(operand) || !b.wqEnabled) throw new Refused(DsaCmdErr.DEV_NOT_EN, "the named WQ is not enabled");
        if (op === DsaCommand.DRAIN_WQ || op === DsaCommand.ABORT_WQ) {
          this.#hw(() => this.hostWq.drain());
          return;
        }
        const cleared = this.#disableWq("GUEST");
        if (op === DsaCommand.RESET_WQ) b.resetWqcfg();
        if (!cleared) throw new Refused(CMD_ERR_HW, "the hardware WQ could not be cleared");
        return;
      }
      default:
        throw new Refused(DsaCmdErr.INVAL_CMD, `command ${op} is not emulated`);
    }
  }

  /** A host WQ operation on the guest's behalf: a KernelError from the hardware becomes the device's HW_ERR. */
  #hw(fn: () => void): void {
    const err = attempt(fn);
    if (err !== null) throw new Refused(CMD_ERR_HW, err.message);
  }

  #enableWq(wq: number): void {
    const b = this.bar0;
    if (wq !== 0) throw new Refused(DsaCmdErr.INVAL_WQIDX, `no virtual WQ ${wq}`);
    if (!b.enabled) throw new Refused(DsaCmdErr.DEV_NOTEN, "device not enabled");
    if (b.wqEnabled) throw new Refused(DsaCmdErr.WQ_ENABLED, "WQ already enabled");
    const c = b.wqcfg;
    const pasidEn = DsaWqCfg.get(c, "PASID_EN") === 1;
    const pasidCap = this.config.pasid;
    if (pasidEn && pasidCap?.flag("ENABLE") !== true) throw new Refused(DsaCmdErr.PASID_EN, "PASID_EN set but the PASID capability is not enabled");
    if (this.hostWq.mode === "shared") {
      if (!pasidEn) throw new Refused(DsaCmdErr.PASID_EN, "a shared WQ needs PASID_EN");
      b.setWqState(WqState.ENABLED);
      return;
    }
    const g = DsaWqCfg.get(c, "PASID");
    const guestPriv = DsaWqCfg.get(c, "PRIV") === 1;
    if (pasidEn && guestPriv && pasidCap?.flag("PRIV_ENABLE") !== true) throw new Refused(DsaCmdErr.PASID_EN, "PRIV set but privileged mode is not enabled");
    if (!pasidEn || g === 0) this.#programDefault();
    else this.#programGuest(g as GuestPasid, guestPriv);
    b.setWqState(WqState.ENABLED);
  }

  /** The mdev's default PASID, that of its aux domain, with PRIV set (vidxd_wq_enable without a guest PASID). */
  #programDefault(): void {
    const { core } = this.#env;
    const domain = this.sub.domain;
    if (domain === null) throw new Refused(DsaCmdErr.PASID_EN, "the mdev has no aux domain yet (its group is in no VFIO container)");
    let hpasid = 0 as HostPasid;
    const err = attempt(() => {
      hpasid = core.auxGetPasid(domain, this.sub);
    });
    if (err !== null) throw new Refused(DsaCmdErr.PASID_EN, `no default PASID: ${err.message}`);
    this.#hw(() => this.hostWq.setPasid(hpasid, true));
    this.#held = { hpasid, gpasid: null, set: null, priv: true, freeing: false };
    this.#env.kernel.trace.emit("vdcm.program", "VDCM", { vm: this.vm, device: this.name, hpasid }, { source: "default-pasid", priv: true });
  }

  /** A guest PASID: translated by SPID in the VM's set, which takes the reference the VDCM holds while the WQ has it. */
  #programGuest(gpasid: GuestPasid, priv: boolean): void {
    const { ioasid } = this.#env;
    const set = ioasid.findSetByToken(this.mm, "mm");
    if (set === null) throw new Refused(DsaCmdErr.PASID_EN, `guest PASID ${gpasid}: VM ${this.vm} has no IOASID set`);
    let id = 0 as Ioasid;
    const err = attempt(() => {
      id = ioasid.findBySpid(set, asSpid(gpasid));
    });
    if (err !== null) throw new Refused(DsaCmdErr.PASID_EN, `guest PASID ${gpasid} does not resolve in VM ${this.vm}'s set: ${err.message}`);
    const hpasid = id as number as HostPasid;
    const hwErr = attempt(() => this.hostWq.setPasid(hpasid, priv));
    if (hwErr !== null) {
      this.#put(set, id);
      throw new Refused(CMD_ERR_HW, `programming host PASID ${hpasid}: ${hwErr.message}`);
    }
    this.#held = { hpasid, gpasid, set, priv, freeing: false };
    this.#env.kernel.trace.emit("vdcm.program", "VDCM", { vm: this.vm, device: this.name, gpasid, hpasid }, { source: "guest-pasid", priv }, this.#refcount(id));
  }

  /** The guest's WQ disabled, the hardware WQ cleared; false when the hardware refused the clearing. */
  #disableWq(cause: ClearCause): boolean {
    if (this.bar0.wqEnabled) this.bar0.setWqState(WqState.DISABLED);
    return this.#clear(cause);
  }

  /** RESET_DEVICE, FLR, the last close: the WQ cleared, then the registers back to their creation values. */
  #resetDevice(cause: ClearCause): void {
    if (cause === "RELEASE" && this.hostWq.mode === "shared") this.#drainVm();
    this.#disableWq(cause);
    this.bar0.reset();
    if (cause === "RELEASE") this.config.space.reset();
  }

  // ------------------------------------------------------------ FREE and teardown

  /**
   * FREE of an IOASID reached the VM's notifier (atomic context): if this
   * mdev's hardware WQ holds it, the guest's WQ shows disabled at once (no
   * new submissions) and the clearing is queued; the reference is held until
   * the hardware WQ is clear. True when this mdev had it.
   */
  onFree(data: IoasidNotifyData): boolean {
    if (this.hostWq.mode === "shared") return this.#onFreeShared(data);
    const h = this.#held;
    if (h?.set == null || h.set !== data.set || h.hpasid !== (data.id as number) || h.freeing) return false;
    h.freeing = true;
    this.bar0.setWqState(WqState.DISABLED);
    this.#env.kernel.trace.emit("vdcm.free-notified", "VDCM", { vm: this.vm, device: this.name, hpasid: h.hpasid, ...(h.gpasid === null ? {} : { gpasid: h.gpasid }) }, {});
    this.#env.workqueue.queueWork(this.#clearWork);
    return true;
  }

  /**
   * A shared WQ holds no PASID of its own: the guest's ENQCMDs carry the host
   * PASID KVM translated. KVM (CPU priority, called first) has already
   * removed the translation, so no new descriptor can carry it; descriptors
   * already queued still can, so the device must drain the PASID before it
   * can reach anyone else. Draining sleeps, so it is queued as work; it is
   * queued ahead of the IOMMU driver's teardown work (DEVICE before IOMMU
   * priority, one FIFO of ready work), so the queued descriptors finish
   * while the PASID still translates to the freed address space and before
   * the IOMMU's reference, the last, is dropped. As Linux's idxd does for a
   * process on a shared WQ (drivers/dma/idxd/cdev.c: idxd_cdev_release()
   * drains the PASID before unbinding).
   */
  #onFreeShared(data: IoasidNotifyData): boolean {
    const hpasid = data.id as number as HostPasid;
    // Not in use: the last close drained every PASID of the VM, and nothing has been submitted since.
    if (this.#drains.has(hpasid) || this.#removed || !this.#inUse) return false;
    this.#drains.add(hpasid);
    this.#env.kernel.trace.emit("vdcm.free-notified", "VDCM", { vm: this.vm, device: this.name, hpasid }, {});
    this.#env.workqueue.queueWork(this.#drainWork);
    return true;
  }

  /** The queued DRAIN_PASIDs, in the order FREE came. A refusal is logged: the PASID's descriptors then fault once its entry is gone, never reach another user's space. */
  #drainFreed(): void {
    for (const hpasid of [...this.#drains]) {
      this.#drains.delete(hpasid);
      const err = attempt(() => this.hostWq.drainPasid(hpasid));
      if (err !== null) this.#env.kernel.log.warn(`vdcm.drain.${this.name}`, `${this.name}: draining host PASID ${hpasid} failed: ${err.message}`, "VDCM");
      this.#env.kernel.trace.emit("vdcm.drain-pasid", "VDCM", { vm: this.vm, device: this.name, hpasid }, { ok: err === null });
    }
  }

  /**
   * The VMM let go of a shared-WQ mdev (its last close, or the VM dying):
   * every PASID of the VM's set is drained now, in thread context. VFIO
   * releases a device before the container it is in is torn down (Linux
   * drivers/vfio/vfio.c: the container is dissolved only once no device
   * file is open), so this runs while the VM's PASIDs are still bound and
   * allocated: whatever the guest left queued completes under its own
   * translation, before the unbinds and frees of the container's release.
   * Refusals are logged, as for FREE's drain.
   */
  #drainVm(): void {
    const { ioasid } = this.#env;
    const set = ioasid.findSetByToken(this.mm, "mm");
    if (set === null) return;
    const ids: HostPasid[] = [];
    attempt(() => ioasid.setForEachIoasid(set, (id) => ids.push(id as number as HostPasid)));
    for (const hpasid of ids) this.#drains.add(hpasid);
    this.#env.workqueue.cancelWork(this.#drainWork);
    this.#drainFreed();
  }

  /** Host PASIDs freed whose drain is still queued (shared WQ). */
  get drainsPending(): readonly HostPasid[] {
    return [...this.#drains];
  }

  /** Removal: the WQ quiesced and cleared now, nothing left queued; the mdev takes no more accesses. */
  teardown(): void {
    // Drains still queued run now (removal is thread context), before the mdev goes.
    if (this.#env.workqueue.cancelWork(this.#drainWork)) this.#drainFreed();
    this.#disableWq("REMOVE");
    this.#removed = true;
  }

  /**
   * Quiesce and clear the hardware WQ, then put the reference. Never lazy:
   * the reference goes only once the WQ no longer holds the PASID. If the
   * hardware refuses, the reference stays held (the PASID cannot be
   * reclaimed, so it cannot reach another guest on this device), the record
   * stays for the next disable, release or removal to try again, and it is
   * logged; a removal that still fails keeps the reference for good.
   */
  #clear(cause: ClearCause): boolean {
    const h = this.#held;
    if (h === null) return true;
    if (cause !== "FREE") this.#env.workqueue.cancelWork(this.#clearWork);
    const ids = { vm: this.vm, device: this.name, hpasid: h.hpasid, ...(h.gpasid === null ? {} : { gpasid: h.gpasid }) };
    const err = attempt(() => this.hostWq.clearPasid());
    if (err !== null) {
      // Kept (the next disable, release or removal tries again); a removal lets the record go but never the reference.
      if (cause === "REMOVE") this.#held = null;
      this.#env.kernel.log.warn(`vdcm.clear.${this.name}`, `${this.name}: clearing host PASID ${h.hpasid} failed, its reference stays held: ${err.message}`, "VDCM");
      this.#env.kernel.trace.emit("vdcm.clear-failed", "VDCM", ids, { errno: err.errno, reason: err.message });
      return false;
    }
    this.#held = null;
    if (h.set === null) {
      this.#env.kernel.trace.emit("vdcm.clear", "VDCM", ids, { cause, ref: false });
      return true;
    }
    const id = h.hpasid as number as Ioasid;
    this.#put(h.set, id);
    this.#env.kernel.trace.emit("vdcm.clear", "VDCM", ids, { cause, ref: true }, this.#refcount(id));
    return true;
  }

  #put(set: IoasidSet, id: Ioasid): void {
    const err = attempt(() => this.#env.ioasid.put(set, id));
    if (err !== null) this.#env.kernel.log.warn("vdcm.put", `${this.name}: could not put IOASID ${id}: ${err.message}`, "VDCM");
  }

  #refcount(id: Ioasid): number {
    let n = 0;
    attempt(() => {
      n = this.#env.ioasid.refcount(id);
    });
    return n;
  }
}

