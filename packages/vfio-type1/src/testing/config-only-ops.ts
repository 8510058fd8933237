import type { VfioDeviceOps } from "../device.js";
import { DeviceFlag, RegionFlag } from "../uapi/structs.js";

/** vfio-pci's config region index. */
export const VFIO_PCI_CONFIG_REGION_INDEX = 7;

/** Device ops with just a 4 KiB config region over `bytes` (reads and writes land there). */
export function configOnlyOps(bytes = new Uint8Array(4096)): VfioDeviceOps & { opened: number } {
  const ops = {
    opened: 0,
    flags: DeviceFlag.PCI,
    numIrqs: 5,
    regions: () => [{ index: VFIO_PCI_CONFIG_REGION_INDEX, size: bytes.length, flags: RegionFlag.READ | RegionFlag.WRITE }],
    read: (_index: number, offset: number, length: number) => bytes.slice(offset, offset + length),
    write: (_index: number, offset: number, data: Uint8Array) => {
      bytes.set(data, offset);
      return data.length;
    },
    open: () => {
      ops.opened++;
    },
    release: () => {
      ops.opened--;
    },
  };
  return ops;
}
