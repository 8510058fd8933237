import type { VfioDeviceOps, VfioRegion } from "./device.js";
import { type DmaFaultRegions, VFIO_REGION_TYPE_NESTED, VfioNestedSubtype } from "./fault-region.js";
import { RegionFlag } from "./uapi/structs.js";

/**
 * Adds the nested DMA fault and response regions after a device's own ones
 * (device-specific regions follow vfio-pci's fixed nine), each with its
 * VFIO_REGION_INFO_CAP_TYPE (type NESTED, subtype DMA_FAULT / DMA_FAULT_RESPONSE).
 */
export function withFaultRegions(ops: VfioDeviceOps, faults: DmaFaultRegions): VfioDeviceOps {
  const own = ops.regions();
  const base = own.reduce((n, r) => Math.max(n, r.index + 1), 0);
  const fault: VfioRegion = { index: base, size: faults.fault.length, flags: RegionFlag.READ | RegionFlag.WRITE, type: { type: VFIO_REGION_TYPE_NESTED, subtype: VfioNestedSubtype.DMA_FAULT } };
  const response: VfioRegion = { index: base + 1, size: faults.response.length, flags: RegionFlag.READ | RegionFlag.WRITE, type: { type: VFIO_REGION_TYPE_NESTED, subtype: VfioNestedSubtype.DMA_FAULT_RESPONSE } };
  const regions = [...own, fault, response];
  return {
    ...ops,
    regions: () => regions,
    read: (index, offset, length) =>
      index === fault.index ? faults.readFault(offset, length) : index === response.index ? faults.readResponse(offset, length) : ops.read(index, offset, length),
    write: (index, offset, bytes) =>
      index === fault.index ? faults.writeFault(offset, bytes) : index === response.index ? faults.writeResponse(offset, bytes) : ops.write(index, offset, bytes),
    open: () => {
      faults.open();
      ops.open?.();
    },
    // The regions' reader is gone: its unanswered groups are answered before the device's own release (see DmaFaultRegions.close).
    release: () => {
      faults.close();
      ops.release?.();
    },
  };
}
