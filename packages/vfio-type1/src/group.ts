import type { IommuGroup } from "@vsva/iommu-core";
import type { VfioContainer } from "./container.js";
import type { VfioDevice } from "./device.js";
import type { VfioGroupFile } from "./files/group-file.js";

/**
 * A VFIO group (`struct vfio_group`): an IOMMU group whose devices are bound
 * to VFIO, or the singleton group of an mdev (vfio_mdev makes one per mdev).
 */
export class VfioGroup {
  readonly id: number;
  /** The IOMMU group behind it; null for an mdev's group. */
  readonly iommuGroup: IommuGroup | null;
  readonly devices: VfioDevice[] = [];
  /** @internal */
  container: VfioContainer | null = null;
  /** @internal the open group file (a group opens once at a time). */
  opened: VfioGroupFile | null = null;
  /** @internal */
  openDevices = 0;
  /** Devices of the IOMMU group not bound to VFIO (a viable group has none). */
  readonly #unbound: () => number;
  #containerUsers = 0;

  constructor(id: number, iommuGroup: IommuGroup | null, unbound: () => number) {
    this.id = id;
    this.iommuGroup = iommuGroup;
    this.#unbound = unbound;
  }

  get isMdevGroup(): boolean {
    return this.iommuGroup === null;
  }

  /** vfio_group_viable: every device of the IOMMU group is bound to VFIO. */
  get viable(): boolean {
    return this.#unbound() === 0;
  }

  /** @internal the group file's SET_CONTAINER, or a device file opening. */
  getContainerUser(): void {
    this.#containerUsers++;
  }

  /** @internal when the last user goes, the group leaves its container. */
  putContainerUser(): void {
    if (this.#containerUsers === 0) return;
    this.#containerUsers--;
    if (this.#containerUsers === 0 && this.container !== null) this.container.removeGroup(this);
  }
}
