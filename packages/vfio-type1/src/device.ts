import { Errno, KernelError } from "@vsva/kernel";
import type { IommuDevice } from "@vsva/iommu-core";
import type { VfioGroup } from "./group.js";
import type { VfioUser } from "./user.js";
import { VfioDeviceFile } from "./files/device-file.js";
import type { DmaFaultRegions } from "./fault-region.js";

/** A region of a VFIO device (what VFIO_DEVICE_GET_REGION_INFO reports and pread/pwrite reach). */
export interface VfioRegion {
  readonly index: number;
  readonly size: number;
  /** RegionFlag bits. */
  readonly flags: number;
  /** A device-specific region's VFIO_REGION_INFO_CAP_TYPE. */
  readonly type?: { readonly type: number; readonly subtype: number };
}

/**
 * What a bus driver gives VFIO for one device (`struct vfio_device_ops`):
 * vfio-pci for a physical function, the vendor's mdev driver (the VDCM) for
 * an mdev. Region accesses are already bounds-checked against `regions()`.
 */
export interface VfioDeviceOps {
  /** DeviceFlag bits (PCI, RESET …). */
  readonly flags: number;
  readonly numIrqs: number;
  regions(): readonly VfioRegion[];
  read(index: number, offset: number, length: number): Uint8Array;
  /** Returns the bytes taken. */
  write(index: number, offset: number, bytes: Uint8Array): number;
  /** The user opened the device (first open): the VMM starts using it. */
  open?(): void;
  /** The last file closed: quiesce the device (a VMM death ends here). */
  release?(): void;
}

/**
 * A device bound to VFIO. `iommuDevice` is what VFIO hands the IOMMU core:
 * the physical device, or for an IOMMU-backed mdev its sub-device (which the
 * core resolves to the parent through the aux domain). An mdev that is not
 * IOMMU-backed has none, and VFIO never calls the core for it (Alex
 * Williamson's review of "vfio/type1: Add vSVA support for IOMMU-backed
 * mdevs", 2020: such a device would reach intel_svm_bind_gpasid as NULL).
 */
export class VfioDevice {
  readonly name: string;
  readonly kind: "pci" | "mdev";
  readonly iommuDevice: IommuDevice | null;
  readonly ops: VfioDeviceOps;
  /** The nested DMA fault and response regions (physical functions only). */
  readonly faults: DmaFaultRegions | null;
  /** @internal */
  group: VfioGroup | null = null;
  readonly #files = new Set<VfioDeviceFile>();

  constructor(name: string, kind: "pci" | "mdev", iommuDevice: IommuDevice | null, ops: VfioDeviceOps, faults: DmaFaultRegions | null = null) {
    this.name = name;
    this.kind = kind;
    this.iommuDevice = iommuDevice;
    this.ops = ops;
    this.faults = faults;
  }

  get iommuBacked(): boolean {
    return this.iommuDevice !== null;
  }

  get openFiles(): number {
    return this.#files.size;
  }

  /** @internal GROUP_GET_DEVICE_FD. */
  open(user: VfioUser): VfioDeviceFile {
    const group = this.group;
    if (group === null) throw new KernelError(Errno.ENODEV, `${this.name} is not in a VFIO group`);
    if (this.#files.size === 0) this.ops.open?.();
    const f = new VfioDeviceFile(user, this, () => {
      this.#files.delete(f);
      group.openDevices--;
      if (this.#files.size === 0) this.ops.release?.();
      group.putContainerUser();
    });
    this.#files.add(f);
    group.openDevices++;
    group.getContainerUser();
    return f;
  }
}
