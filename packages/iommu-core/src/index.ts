export { IommuCore, type IommuCoreOptions, type ProbeOptions, type EnableFeatureOptions } from "./iommu-core.js";
export { Iommu } from "./iommu.js";
export { IommuDevice } from "./device.js";
export { IommuGroup } from "./group.js";
export { type IommuDomain, BlockedDomain, IdentityDomain, PagingDomain, NestedDomain } from "./domain.js";
export {
  type IommuCap,
  type DevFeature,
  type DomainType,
  type DomainAllocRequest,
  type SvaMm,
  type PageRequestFault,
  type PageResponse,
  type MapPagesResult,
  type DomainOpsBase,
  type BlockedDomainOps,
  type IdentityDomainOps,
  type PagingDomainOps,
  type NestingParentOps,
  type SvaBindingOps,
  type DriverDomain,
  type IommuOps,
  type IommuCoreUplink,
  type DeviceFaultHandler,
  IommuProt,
  IOMMU_PROT_KNOWN,
} from "./ops.js";
export { iommuPgsize, pgsizesFromBitmap, type PgsizeChoice } from "./pgsize.js";
export { Mm, type MmOptions, type MmapOptions, type MmState, type MmFaultResult, MMAP_MIN_ADDR } from "./mm/mm.js";
export { type MmuNotifier } from "./mm/mmu-notifier.js";
export { type MmArch, type PgtableFormat } from "./mm/cpu-pgtable.js";
export { Prot, PROT_KNOWN, type MmAccess, vmaAllows } from "./mm/prot.js";
export { type Vma } from "./mm/vma.js";
export { PhysMemBacking } from "./mm/phys-backing.js";
export { IommuSva, SvaBond, type SvaBondState, type SvaBindOptions, type IommuSvaOptions } from "./sva.js";
export { IopfQueue, type IopfQueueOptions } from "./iopf.js";
export {
  PageAllocator,
  type PageAllocatorOptions,
  type PageAllocatorStats,
  type PageBacking,
  type LivePage,
  PAGE_SHIFT,
  PAGE_SIZE,
  MAX_PAGE_ORDER,
} from "./page-alloc.js";
export {
  PASID_BITS,
  PASID_MAX,
  IOMMU_GPASID_BIND_VERSION_1,
  IOMMU_CACHE_INVALIDATE_INFO_VERSION_1,
  PasidFormat,
  IOMMU_PASID_FORMAT_LAST,
  IOMMU_SVA_GPASID_VAL,
  VtdGpasidFlag,
  IOMMU_SVA_VTD_GPASID_LAST,
  IOMMU_SVA_VTD_GPASID_MTS_MASK,
  CacheInvType,
  IOMMU_CACHE_INV_TYPE_NR,
  InvGranularity,
  IOMMU_INV_GRANU_NR,
  InvPasidFlag,
  InvAddrFlag,
  NestingFeature,
  NESTING_FEATURES_KNOWN,
} from "./uapi/constants.js";
export {
  type StructLayout,
  type FieldDecl,
  type ScalarType,
  type TrailingBytesRule,
  defineStruct,
  copyFromUser,
  copyToUser,
  readArgsz,
} from "./uapi/struct-layout.js";
export {
  GpasidBindLayout,
  GpasidBindVtdLayout,
  type GpasidBindData,
  type GpasidBindVtd,
  type GpasidBindFields,
  type UapiDecodeOptions,
  decodeGpasidBindData,
  encodeGpasidBindData,
  sameGpasidBinding,
} from "./uapi/gpasid-bind.js";
export {
  CacheInvalidateLayout,
  InvPasidInfoLayout,
  InvAddrInfoLayout,
  CACHE_INV_VALID,
  type CacheInvalidateInfo,
  type CacheInvalidateFields,
  type InvTarget,
  decodeCacheInvalidateInfo,
  encodeCacheInvalidateInfo,
} from "./uapi/cache-invalidate.js";
export {
  NestingInfoLayout,
  NestingInfoVtdLayout,
  type NestingInfo,
  type NestingInfoVtd,
  EMPTY_NESTING_INFO,
  nestingInfoSize,
  reportNestingInfo,
  decodeNestingInfo,
} from "./uapi/nesting-info.js";
export {
  PageResponseLayout,
  PageResponseCode,
  IOMMU_PAGE_RESP_VERSION_1,
  IOMMU_PAGE_RESP_PASID_VALID,
  encodePageResponse,
  decodePageResponse,
} from "./uapi/page-response.js";
export {
  IommuFaultLayout,
  FaultUnrecoverableLayout,
  FaultPageRequestLayout,
  IommuFaultType,
  IommuFaultReason,
  FaultPerm,
  FaultUnrecovFlag,
  FaultPageRequestFlag,
  type FaultPermissions,
  type FaultPageRequestRecord,
  type FaultUnrecoverableRecord,
  type IommuFaultRecord,
  encodeIommuFault,
  decodeIommuFault,
  pageRequestRecord,
} from "./uapi/iommu-fault.js";
export { IOMMU_CORE_FAULT_POINTS } from "./fault-points.js";
