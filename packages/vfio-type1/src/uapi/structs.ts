import { defineStruct } from "@vsva/iommu-core";

/**
 * The VFIO UAPI structs (include/uapi/linux/vfio.h, v5.10, plus the 2020 vSVA
 * series' additions), declared once as data. Little-endian, natural C
 * alignment of x86-64/arm64.
 */

/** struct vfio_group_status. */
export const GroupStatusLayout = defineStruct("vfio_group_status", 8, {
  argsz: [0, "u32"],
  flags: [4, "u32"],
});
export const GroupFlag = { VIABLE: 1 << 0, CONTAINER_SET: 1 << 1 } as const;

/** struct vfio_device_info (v5.10: cap_offset added, 20 bytes). */
export const DeviceInfoLayout = defineStruct("vfio_device_info", 20, {
  argsz: [0, "u32"],
  flags: [4, "u32"],
  num_regions: [8, "u32"],
  num_irqs: [12, "u32"],
  cap_offset: [16, "u32"],
});
export const DeviceFlag = { RESET: 1 << 0, PCI: 1 << 1, PLATFORM: 1 << 2, CAPS: 1 << 7 } as const;

/** struct vfio_region_info. */
export const RegionInfoLayout = defineStruct("vfio_region_info", 32, {
  argsz: [0, "u32"],
  flags: [4, "u32"],
  index: [8, "u32"],
  cap_offset: [12, "u32"],
  size: [16, "u64"],
  offset: [24, "u64"],
});
export const RegionFlag = { READ: 1 << 0, WRITE: 1 << 1, MMAP: 1 << 2, CAPS: 1 << 3 } as const;

/** struct vfio_info_cap_header: `next` is an offset from the start of the INFO buffer, 0 ends the chain. */
export const InfoCapHeaderLayout = defineStruct("vfio_info_cap_header", 8, {
  id: [0, "u16"],
  version: [2, "u16"],
  next: [4, "u32"],
});

/** struct vfio_iommu_type1_info (24 bytes with its tail padding). */
export const IommuType1InfoLayout = defineStruct("vfio_iommu_type1_info", 24, {
  argsz: [0, "u32"],
  flags: [4, "u32"],
  iova_pgsizes: [8, "u64"],
  cap_offset: [16, "u32"],
  pad: [20, "bytes", 4],
});
export const IommuInfoFlag = { PGSIZES: 1 << 0, CAPS: 1 << 1 } as const;

/** IDs of the capabilities VFIO_IOMMU_GET_INFO chains (see ioctl.ts for why NESTING is 4). */
export const IommuInfoCap = { IOVA_RANGE: 1, MIGRATION: 2, DMA_AVAIL: 3, NESTING: 4 } as const;

/** struct vfio_iommu_type1_info_cap_iova_range, before its ranges. */
export const CapIovaRangeLayout = defineStruct("vfio_iommu_type1_info_cap_iova_range", 16, {
  header: [0, "bytes", 8],
  nr_iovas: [8, "u32"],
  reserved: [12, "u32"],
});
/** struct vfio_iova_range: `end` is inclusive. */
export const IovaRangeLayout = defineStruct("vfio_iova_range", 16, {
  start: [0, "u64"],
  end: [8, "u64"],
});

/** struct vfio_iommu_type1_info_dma_avail. */
export const CapDmaAvailLayout = defineStruct("vfio_iommu_type1_info_dma_avail", 12, {
  header: [0, "bytes", 8],
  avail: [8, "u32"],
});

/** struct vfio_iommu_type1_dma_map. */
export const DmaMapLayout = defineStruct("vfio_iommu_type1_dma_map", 32, {
  argsz: [0, "u32"],
  flags: [4, "u32"],
  vaddr: [8, "u64"],
  iova: [16, "u64"],
  size: [24, "u64"],
});
export const DmaMapFlag = { READ: 1 << 0, WRITE: 1 << 1 } as const;
export const DMA_MAP_FLAGS_KNOWN = DmaMapFlag.READ | DmaMapFlag.WRITE;

/** struct vfio_iommu_type1_dma_unmap (the dirty bitmap in data[] is not modelled). */
export const DmaUnmapLayout = defineStruct("vfio_iommu_type1_dma_unmap", 24, {
  argsz: [0, "u32"],
  flags: [4, "u32"],
  iova: [8, "u64"],
  size: [16, "u64"],
});
/** GET_DIRTY_BITMAP is v5.10; ALL is v5.12 (VFIO_UNMAP_ALL). */
export const DmaUnmapFlag = { GET_DIRTY_BITMAP: 1 << 0, ALL: 1 << 1 } as const;

/** struct vfio_iommu_type1_pasid_request (series v7). */
export const PasidRequestLayout = defineStruct("vfio_iommu_type1_pasid_request", 16, {
  argsz: [0, "u32"],
  flags: [4, "u32"],
  min: [8, "u32"],
  max: [12, "u32"],
});
export const PasidRequestFlag = { ALLOC: 1 << 0, FREE: 1 << 1 } as const;

/** struct vfio_iommu_type1_nesting_op (series v7): an op in flags[15:0], then the IOMMU UAPI struct. */
export const NestingOpLayout = defineStruct("vfio_iommu_type1_nesting_op", 8, {
  argsz: [0, "u32"],
  flags: [4, "u32"],
});
export const NESTING_OP_MASK = 0xffff;
export const NestingOp = { BIND_PGTBL: 0, UNBIND_PGTBL: 1, CACHE_INVLD: 2 } as const;
export type NestingOp = (typeof NestingOp)[keyof typeof NestingOp];
