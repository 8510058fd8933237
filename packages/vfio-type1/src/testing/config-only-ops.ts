import type { VfioDeviceOps } from "../device.js";
import { DeviceFlag, RegionFlag } from "../uapi/structs.js";

/** vfio-pci's config region index. */
export const VFIO_PCI_CONFIG_REGION_INDEX = 7;

/** Device ops shaped like vfio-pci's (regions 0–8, BARs empty) with a 4 KiB config region over `bytes`. */
export function configOnlyOps(bytes = new Uint8Array(4096)): VfioDeviceOps & { opened: number } {
  const ops = {
    opened: 0,
    flags: DeviceFlag.PCI,
    numIrqs: 5,
    regions: () =>
      Array.from({ length: 9 }, (_, index) =>
        index === VFIO_PCI_CONFIG_REGION_INDEX ? { index, size: bytes.length, flags: RegionFlag.READ | RegionFlag.WRITE } : { index, size: 0, flags: 0 },
      ),
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
