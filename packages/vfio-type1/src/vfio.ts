import { Errno, KernelError, type Kernel } from "@vsva/kernel";
import type { IommuCore, IommuDevice } from "@vsva/iommu-core";
import type { IoasidCore } from "@vsva/ioasid";
import { VfioContainer } from "./container.js";
import type { IovaRange } from "./dma/dma-args.js";
import { VfioDevice, type VfioDeviceOps } from "./device.js";
import { VfioContainerFile } from "./files/container-file.js";
import { VfioGroupFile } from "./files/group-file.js";
import { VfioGroup } from "./group.js";
import { NestingDispatch } from "./nesting.js";
import type { VfioUser } from "./user.js";
import { VfioMm } from "./vfio-mm.js";
import { DmaFaultRegions } from "./fault-region.js";
import { withFaultRegions } from "./fault-region-ops.js";

export interface VfioOptions {
  readonly kernel: Kernel;
  readonly core: IommuCore;
  readonly ioasid: IoasidCore;
  /** Per-VM PASID quota (the series' `pasid_quota` module parameter, default VFIO_DEFAULT_PASID_QUOTA = 1000). */
  readonly pasidQuota?: number;
  /** Mappings per container (`dma_entry_limit`, default U16_MAX = 65535). */
  readonly dmaEntryLimit?: number;
  /**
   * IOVA ranges the IOMMU reserves (iommu_get_resv_regions). The default is
   * the x86 interrupt window VT-d reports, 0xfee00000–0xfeefffff
   * (drivers/iommu/intel/iommu.c: intel_iommu_get_resv_regions).
   */
  readonly reserved?: readonly IovaRange[];
}

export const VFIO_DEFAULT_PASID_QUOTA = 1000;
export const VFIO_DEFAULT_DMA_ENTRY_LIMIT = 65535;
export const X86_MSI_WINDOW: IovaRange = { start: 0xfee0_0000, end: 0xfeef_ffff };

/** Groups of mdevs get numbers above any IOMMU group's, as vfio_mdev's own groups do. */
const MDEV_GROUP_BASE = 10_000;

/**
 * VFIO on one host (drivers/vfio/vfio.c with the type1 backend): devices are
 * bound to it (vfio-pci, or an mdev from a vendor driver such as the VDCM),
 * users open `/dev/vfio/vfio` and `/dev/vfio/$GROUP`.
 */
export class Vfio {
  readonly kernel: Kernel;
  readonly core: IommuCore;
  readonly ioasid: IoasidCore;
  readonly #pasidQuota: number;
  readonly #dmaEntryLimit: number;
  readonly #reserved: readonly IovaRange[];
  readonly #groups = new Map<number, VfioGroup>();
  readonly #bound = new Set<IommuDevice>();
  readonly #mms = new Map<object, VfioMm>();
  readonly #containerMm = new WeakMap<VfioContainer, VfioMm>();
  readonly #nesting: NestingDispatch;
  #nextMdevGroup = MDEV_GROUP_BASE;

  constructor(opts: VfioOptions) {
    this.kernel = opts.kernel;
    this.core = opts.core;
    this.ioasid = opts.ioasid;
    this.#pasidQuota = opts.pasidQuota ?? VFIO_DEFAULT_PASID_QUOTA;
    this.#dmaEntryLimit = opts.dmaEntryLimit ?? VFIO_DEFAULT_DMA_ENTRY_LIMIT;
    this.#reserved = opts.reserved ?? [X86_MSI_WINDOW];
    this.#nesting = new NestingDispatch(this.kernel, this.core, (c) => {
      const mm = this.#containerMm.get(c);
      if (mm === undefined) throw new KernelError(Errno.EOPNOTSUPP, "container has no vfio_mm");
      return mm;
    });
  }

  /**
   * Binds a physical device to VFIO (vfio-pci's probe): its IOMMU group
   * becomes a VFIO group, viable once every device in it is bound. EBUSY:
   * already bound; ENODEV: the device has no IOMMU group.
   */
  bindPciDevice(dev: IommuDevice, ops: VfioDeviceOps): VfioDevice {
    if (this.#bound.has(dev)) throw new KernelError(Errno.EBUSY, `${dev.name} is already bound to VFIO`);
    const ig = dev.group;
    if (ig === null || dev.isSubDevice) throw new KernelError(Errno.ENODEV, `${dev.name} has no IOMMU group`);
    let g = this.#groups.get(ig.id);
    if (g === undefined) {
      g = new VfioGroup(ig.id, ig, () => ig.devices.filter((d) => !this.#bound.has(d)).length);
      this.#groups.set(ig.id, g);
    }
    const faults = new DmaFaultRegions({ respond: (resp) => this.core.pageResponse(dev, resp) });
    const vdev = new VfioDevice(dev.name, "pci", dev, withFaultRegions(ops, faults), faults);
    vdev.group = g;
    g.devices.push(vdev);
    this.#bound.add(dev);
    return vdev;
  }

  /**
   * Registers an mdev (vfio_mdev): `iommuDevice` is its IOMMU sub-device when
   * it is IOMMU-backed (an aux domain on the parent), null when it is not.
   * Each mdev gets a group of its own.
   */
  addMdev(name: string, iommuDevice: IommuDevice | null, ops: VfioDeviceOps): VfioDevice {
    if (iommuDevice !== null && !iommuDevice.isSubDevice) throw new KernelError(Errno.EINVAL, `${iommuDevice.name} is not a sub-device`);
    const g = new VfioGroup(this.#nextMdevGroup++, null, () => 0);
    // An IOMMU-backed mdev has the DMA fault regions too: a guest binding PASIDs through it gets their page requests there.
    const sub = iommuDevice;
    const faults = sub === null ? null : new DmaFaultRegions({ respond: (resp) => this.core.pageResponse(sub, resp) });
    const vdev = new VfioDevice(name, "mdev", iommuDevice, faults === null ? ops : withFaultRegions(ops, faults), faults);
    vdev.group = g;
    g.devices.push(vdev);
    this.#groups.set(g.id, g);
    return vdev;
  }

  /**
   * Takes a device away from VFIO (driver unbind, mdev removal). EBUSY while
   * a user has its group open or the group is in a container, as vfio_del_group_dev waits.
   */
  removeDevice(vdev: VfioDevice): void {
    const g = vdev.group;
    if (g === null) return;
    if (g.opened !== null || g.container !== null) throw new KernelError(Errno.EBUSY, `${vdev.name}: group ${g.id} is in use`);
    g.devices.splice(g.devices.indexOf(vdev), 1);
    vdev.group = null;
    if (vdev.iommuDevice !== null) this.#bound.delete(vdev.iommuDevice);
    if (g.devices.length === 0) this.#groups.delete(g.id);
  }

  group(id: number): VfioGroup | undefined {
    return this.#groups.get(id);
  }

  get groupIds(): number[] {
    return [...this.#groups.keys()].sort((a, b) => a - b);
  }

  /** `open("/dev/vfio/vfio")`: a new container. */
  openContainer(user: VfioUser): VfioContainerFile {
    const container = new VfioContainer({
      kernel: this.kernel,
      core: this.core,
      ioasid: this.ioasid,
      user,
      limits: { dmaEntryLimit: this.#dmaEntryLimit, reserved: this.#reserved },
      mmFor: (u) => {
        const mm = this.#mmFor(u);
        this.#containerMm.set(container, mm);
        return mm;
      },
    });
    const f = new VfioContainerFile(user, container, this.#nesting);
    user.install(f);
    return f;
  }

  /** `open("/dev/vfio/$GROUP")`: ENOENT for no such group, EBUSY when it is already open. */
  openGroup(user: VfioUser, id: number): VfioGroupFile {
    const g = this.#groups.get(id);
    if (g === undefined) throw new KernelError(Errno.ENOENT, `no VFIO group ${id}`);
    if (g.opened !== null) throw new KernelError(Errno.EBUSY, `VFIO group ${id} is already open`);
    const f = new VfioGroupFile(user, g);
    g.opened = f;
    user.install(f);
    return f;
  }

  /** The series' vfio_mm for a process: one per mm, shared by its nesting containers. */
  #mmFor(user: VfioUser): VfioMm {
    let mm = this.#mms.get(user.mm);
    if (mm === undefined) {
      const key = user.mm;
      mm = new VfioMm(this.ioasid, key, this.#pasidQuota, () => this.#mms.delete(key));
      this.#mms.set(key, mm);
    }
    return mm;
  }

  /** Live vfio_mm objects (one per process with a nesting container). */
  get liveMms(): number {
    return this.#mms.size;
  }
}
