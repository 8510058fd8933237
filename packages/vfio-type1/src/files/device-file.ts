import { Errno, KernelError } from "@vsva/kernel";
import type { VfioDevice } from "../device.js";
import { REGION_OFFSET_SHIFT, regionOffset } from "../region.js";
import { VfioIoctl } from "../uapi/ioctl.js";
import { DeviceInfoLayout, RegionFlag, RegionInfoLayout } from "../uapi/structs.js";
import { buildCapChain } from "../uapi/info-caps.js";

/** VFIO_REGION_INFO_CAP_TYPE: {u32 type; u32 subtype} of a device-specific region. */
const REGION_INFO_CAP_TYPE = 1;
import type { VfioUser } from "../user.js";
import { VfioFile } from "./file.js";
import { type IoctlArg, dispatchIoctl, ioctlTable } from "./ioctl-table.js";

const TABLE = ioctlTable<VfioDeviceFile>([
  { cmd: VfioIoctl.DEVICE_GET_INFO, arg: "struct", minsz: DeviceInfoLayout.offsetOfEnd("num_irqs"), handler: (f, u) => f.getInfo(u) },
  { cmd: VfioIoctl.DEVICE_GET_REGION_INFO, arg: "struct", minsz: RegionInfoLayout.offsetOfEnd("offset"), handler: (f, u) => f.getRegionInfo(u) },
]);

/** A device descriptor from VFIO_GROUP_GET_DEVICE_FD (vfio_device_fops). */
export class VfioDeviceFile extends VfioFile {
  readonly device: VfioDevice;
  readonly user: VfioUser;
  readonly #onRelease: () => void;

  /** @internal made by VfioDevice.open */
  constructor(user: VfioUser, device: VfioDevice, onRelease: () => void) {
    super(user.allocFd());
    this.user = user;
    this.device = device;
    this.#onRelease = onRelease;
  }

  protected dispatch(cmd: number, arg: IoctlArg): number {
    return dispatchIoctl(TABLE, this, `vfio device ${this.device.name}`, cmd, arg);
  }

  /** VFIO_DEVICE_GET_INFO: flags, region and IRQ counts; no capabilities (cap_offset 0 when argsz reaches it). */
  getInfo(user: Uint8Array): number {
    const argsz = DeviceInfoLayout.get(user, "argsz");
    DeviceInfoLayout.set(user, "flags", this.device.ops.flags);
    DeviceInfoLayout.set(user, "num_regions", this.#numRegions());
    DeviceInfoLayout.set(user, "num_irqs", this.device.ops.numIrqs);
    if (argsz >= DeviceInfoLayout.size && user.length >= DeviceInfoLayout.size) DeviceInfoLayout.set(user, "cap_offset", 0);
    return 0;
  }

  /**
   * VFIO_DEVICE_GET_REGION_INFO: EINVAL for an index past the last region. A
   * device-specific region carries VFIO_REGION_INFO_CAP_TYPE; an argsz too
   * small for it gets CAPS, cap_offset 0 and the size needed (vfio_pci_ioctl).
   */
  getRegionInfo(user: Uint8Array): number {
    const L = RegionInfoLayout;
    const index = L.get(user, "index");
    const r = this.device.ops.regions().find((x) => x.index === index);
    if (r === undefined) throw new KernelError(Errno.EINVAL, `${this.device.name}: no region ${index}`);
    let flags = r.flags;
    let capOffset = 0;
    if (r.type !== undefined) {
      const body = new Uint8Array(8);
      const dv = new DataView(body.buffer);
      dv.setUint32(0, r.type.type, true);
      dv.setUint32(4, r.type.subtype, true);
      const chain = buildCapChain([{ id: REGION_INFO_CAP_TYPE, version: 1, body }], L.size);
      flags |= RegionFlag.CAPS;
      const argsz = L.get(user, "argsz");
      if (argsz < L.size + chain.length) L.set(user, "argsz", L.size + chain.length);
      else {
        if (user.length < L.size + chain.length) throw new KernelError(Errno.EFAULT, `GET_REGION_INFO: argsz ${argsz} beyond the ${user.length} user bytes`);
        user.set(chain, L.size);
        capOffset = L.size;
      }
    }
    L.set(user, "flags", flags);
    L.set(user, "cap_offset", capOffset);
    L.set(user, "size", BigInt(r.size));
    L.set(user, "offset", BigInt(regionOffset(r.index)));
    return 0;
  }

  /** pread(2) on the device file: `offset` selects the region (index << 40) and the place in it. EINVAL outside a region. */
  pread(offset: number, length: number): Uint8Array {
    if (this.closed) throw new KernelError(Errno.EBADF, `fd ${this.fd} is closed`);
    const { index, at } = this.#locate(offset, length);
    return this.device.ops.read(index, at, length);
  }

  /** pwrite(2): returns the bytes taken. */
  pwrite(offset: number, bytes: Uint8Array): number {
    if (this.closed) throw new KernelError(Errno.EBADF, `fd ${this.fd} is closed`);
    const { index, at } = this.#locate(offset, bytes.length);
    return this.device.ops.write(index, at, bytes);
  }

  #numRegions(): number {
    return this.device.ops.regions().reduce((n, r) => Math.max(n, r.index + 1), 0);
  }

  #locate(offset: number, length: number): { index: number; at: number } {
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length <= 0) {
      throw new KernelError(Errno.EINVAL, `${this.device.name}: bad access at ${offset}, ${length} bytes`);
    }
    const index = Math.floor(offset / 2 ** REGION_OFFSET_SHIFT);
    const at = offset - regionOffset(index);
    const r = this.device.ops.regions().find((x) => x.index === index);
    if (r === undefined || at + length > r.size) throw new KernelError(Errno.EINVAL, `${this.device.name}: [${at}, +${length}) is outside region ${index}`);
    return { index, at };
  }

  protected release(): void {
    this.user.forget(this.fd);
    this.#onRelease();
  }
}
