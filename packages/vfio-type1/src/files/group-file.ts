import { Errno, KernelError } from "@vsva/kernel";
import { GroupFlag, GroupStatusLayout } from "../uapi/structs.js";
import { VfioIoctl } from "../uapi/ioctl.js";
import type { VfioGroup } from "../group.js";
import type { VfioUser } from "../user.js";
import { VfioFile } from "./file.js";
import { type IoctlArg, dispatchIoctl, ioctlTable } from "./ioctl-table.js";
import { VfioContainerFile } from "./container-file.js";
import type { VfioDeviceFile } from "./device-file.js";

const TABLE = ioctlTable<VfioGroupFile>([
  { cmd: VfioIoctl.GROUP_GET_STATUS, arg: "struct", minsz: GroupStatusLayout.offsetOfEnd("flags"), handler: (f, u) => f.getStatus(u) },
  { cmd: VfioIoctl.GROUP_SET_CONTAINER, arg: "ptr", handler: (f, u) => f.setContainer(u) },
  { cmd: VfioIoctl.GROUP_UNSET_CONTAINER, arg: "none", handler: (f) => f.unsetContainer() },
  { cmd: VfioIoctl.GROUP_GET_DEVICE_FD, arg: "ptr", handler: (f, u) => f.getDeviceFd(u) },
]);

/** `/dev/vfio/$GROUP` (drivers/vfio/vfio.c, vfio_group_fops). */
export class VfioGroupFile extends VfioFile {
  readonly group: VfioGroup;
  readonly user: VfioUser;

  /** @internal made by Vfio.openGroup */
  constructor(user: VfioUser, group: VfioGroup) {
    super(user.allocFd());
    this.user = user;
    this.group = group;
  }

  protected dispatch(cmd: number, arg: IoctlArg): number {
    return dispatchIoctl(TABLE, this, `vfio group ${this.group.id}`, cmd, arg);
  }

  /** VFIO_GROUP_GET_STATUS: VIABLE when every device of the group is bound to VFIO; CONTAINER_SET. */
  getStatus(user: Uint8Array): number {
    let flags = 0;
    if (this.group.viable) flags |= GroupFlag.VIABLE;
    if (this.group.container !== null) flags |= GroupFlag.CONTAINER_SET;
    GroupStatusLayout.set(user, "flags", flags);
    return 0;
  }

  /**
   * VFIO_GROUP_SET_CONTAINER: the argument points at the container's
   * descriptor. EINVAL: the group already has a container, or is not viable;
   * EBADF: not an open container of this process; and what attaching the
   * group to the container's IOMMU returns.
   */
  setContainer(user: Uint8Array): number {
    if (user.length < 4) throw new KernelError(Errno.EFAULT, "SET_CONTAINER: the container fd needs 4 user bytes");
    const fd = new DataView(user.buffer, user.byteOffset, 4).getInt32(0, true);
    if (this.group.container !== null) throw new KernelError(Errno.EINVAL, `group ${this.group.id} already has a container`);
    // vfio_group_set_container refuses a group with a device bound to another driver.
    if (!this.group.viable) throw new KernelError(Errno.EINVAL, `group ${this.group.id} is not viable`);
    const file = this.user.file(fd);
    if (!(file instanceof VfioContainerFile)) throw new KernelError(Errno.EINVAL, `fd ${fd} is not a VFIO container`);
    file.container.addGroup(this.group);
    this.group.getContainerUser();
    return 0;
  }

  /** VFIO_GROUP_UNSET_CONTAINER: EINVAL without a container, EBUSY while device files are open. */
  unsetContainer(): number {
    const c = this.group.container;
    if (c === null) throw new KernelError(Errno.EINVAL, `group ${this.group.id} has no container`);
    if (this.group.openDevices > 0) throw new KernelError(Errno.EBUSY, `group ${this.group.id} has ${this.group.openDevices} open device files`);
    this.group.putContainerUser();
    return 0;
  }

  /**
   * VFIO_GROUP_GET_DEVICE_FD with the device's name, NUL-terminated. EINVAL:
   * no container with an IOMMU set, or the group is not viable; ENODEV: no
   * such device in the group. Returns the new descriptor.
   */
  getDeviceFd(user: Uint8Array): number {
    const nul = user.indexOf(0);
    if (nul < 0) throw new KernelError(Errno.EFAULT, "GET_DEVICE_FD: the name is not NUL-terminated inside the user buffer");
    const name = new TextDecoder().decode(user.subarray(0, nul));
    const c = this.group.container;
    if (c?.iommuType === null || c === null || !this.group.viable) throw new KernelError(Errno.EINVAL, `group ${this.group.id}: no container with an IOMMU set`);
    const dev = this.group.devices.find((d) => d.name === name);
    if (dev === undefined) throw new KernelError(Errno.ENODEV, `group ${this.group.id} has no device "${name}"`);
    const f: VfioDeviceFile = dev.open(this.user);
    this.user.install(f);
    return f.fd;
  }

  protected release(): void {
    this.user.forget(this.fd);
    this.group.opened = null;
    // vfio_group_fops_release → vfio_group_try_dissolve_container: the
    // container goes when its last user (this file or a device file) does.
    this.group.putContainerUser();
  }
}
