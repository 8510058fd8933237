// VFIO type1 (drivers/vfio/vfio.c, drivers/vfio/vfio_iommu_type1.c) with the
// 2020 vSVA series' additions.

export { Vfio, type VfioOptions, VFIO_DEFAULT_PASID_QUOTA, VFIO_DEFAULT_DMA_ENTRY_LIMIT, X86_MSI_WINDOW } from "./vfio.js";
export { VfioUser, type VfioUserOptions, type UserPages } from "./user.js";
export { GuestRamPages } from "./guest-ram-pages.js";
export { VfioDevice, type VfioDeviceOps, type VfioRegion } from "./device.js";
export { regionOffset, REGION_OFFSET_SHIFT } from "./region.js";
export { VfioGroup } from "./group.js";
export { vfioPciOps, walkExtCaps, type PciConfigAccess, VfioPciRegion, PciExtCap, HIDDEN_EXT_CAPS, VFIO_PCI_NUM_IRQS } from "./vfio-pci.js";
export { VfioContainer } from "./container.js";
export { VfioMm } from "./vfio-mm.js";
export { VfioFile } from "./files/file.js";
export { VfioContainerFile } from "./files/container-file.js";
export { VfioGroupFile } from "./files/group-file.js";
export { VfioDeviceFile } from "./files/device-file.js";
export { type IoctlArg } from "./files/ioctl-table.js";
export { VFIO_FAULT_POINTS } from "./fault-points.js";
import "./trace-events.js";


// The UAPI: ioctl numbers, extension IDs, the structs as layouts, capability chains.
export { VFIO_TYPE, VFIO_BASE, VFIO_API_VERSION, VfioIoctl, VfioExtension, ioctlName } from "./uapi/ioctl.js";
export {
  GroupStatusLayout, GroupFlag, DeviceInfoLayout, DeviceFlag, RegionInfoLayout, RegionFlag, InfoCapHeaderLayout,
  IommuType1InfoLayout, IommuInfoFlag, IommuInfoCap, CapIovaRangeLayout, IovaRangeLayout, CapDmaAvailLayout,
  DmaMapLayout, DmaMapFlag, DMA_MAP_FLAGS_KNOWN, DmaUnmapLayout, DmaUnmapFlag, PasidRequestLayout, PasidRequestFlag,
  NestingOpLayout, NESTING_OP_MASK, NestingOp,
} from "./uapi/structs.js";
export { type InfoCap, buildCapChain, walkCapChain } from "./uapi/info-caps.js";

// DMA mappings: the container's IOVA tree and the argument rules of MAP/UNMAP_DMA.
export { DmaTree, type VfioDma } from "./dma/dma-tree.js";
export { type IovaRange, type MapArgs, type UnmapArgs, minPageMask, checkMapArgs, checkMapInRanges, checkUnmapArgs, clampRange } from "./dma/dma-args.js";
export { planUnmap } from "./dma/unmap-plan.js";
// Argument builders for user space (a VMM's side of the UAPI), one per ioctl struct.
export * as vfioUapi from "./uapi/builders.js";
