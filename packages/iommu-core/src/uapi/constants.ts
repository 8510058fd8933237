/**
 * Constants of include/uapi/linux/iommu.h as the 2020 vSVA series defined them
 * (spec-facts.md Part C; merged values where a revision differed, §D1 #25).
 */

/** PCIe PASIDs are 20 bits wide; VT-d's PASID_MAX. */
export const PASID_BITS = 20;
export const PASID_MAX = 1 << PASID_BITS;

export const IOMMU_GPASID_BIND_VERSION_1 = 1;
export const IOMMU_CACHE_INVALIDATE_INFO_VERSION_1 = 1;

/** `enum iommu_pasid_format`-style values shared by bind data and nesting info. */
export const PasidFormat = {
  /** Nesting info reports 0 when the IOMMU has no nesting format (SMMU, seed 004). */
  NONE: 0,
  INTEL_VTD: 1,
} as const;
export type PasidFormat = (typeof PasidFormat)[keyof typeof PasidFormat];
/** IOMMU_PASID_FORMAT_LAST as merged (MLS's proposed ARM_SMMU_V3 = 2 never was). */
export const IOMMU_PASID_FORMAT_LAST = 2;

/** iommu_gpasid_bind_data.flags */
export const IOMMU_SVA_GPASID_VAL = 1 << 0;

/** iommu_gpasid_bind_data_vtd.flags (bit -> PASID-entry effect in spec-facts C1.3). */
export const VtdGpasidFlag = {
  SRE: 1 << 0,
  EAFE: 1 << 1,
  PCD: 1 << 2,
  PWT: 1 << 3,
  EMTE: 1 << 4,
  CD: 1 << 5,
  /** Added around v5.11; we accept it (the newest layout of the series). */
  WPE: 1 << 6,
} as const;
/** IOMMU_SVA_VTD_GPASID_LAST: any bit at or above it is unknown. */
export const IOMMU_SVA_VTD_GPASID_LAST = 1 << 7;
export const IOMMU_SVA_VTD_GPASID_MTS_MASK = VtdGpasidFlag.CD | VtdGpasidFlag.EMTE | VtdGpasidFlag.PCD | VtdGpasidFlag.PWT;

/** iommu_cache_invalidate_info.cache: a bitmap of cache types. */
export const CacheInvType = {
  IOTLB: 1 << 0,
  DEV_IOTLB: 1 << 1,
  PASID: 1 << 2,
} as const;
export type CacheInvType = (typeof CacheInvType)[keyof typeof CacheInvType];
export const IOMMU_CACHE_INV_TYPE_NR = 3;

/** enum iommu_inv_granularity */
export const InvGranularity = {
  DOMAIN: 0,
  PASID: 1,
  ADDR: 2,
} as const;
export type InvGranularity = (typeof InvGranularity)[keyof typeof InvGranularity];
export const IOMMU_INV_GRANU_NR = 3;

/** iommu_inv_pasid_info.flags */
export const InvPasidFlag = { PASID: 1 << 0, ARCHID: 1 << 1 } as const;
/** iommu_inv_addr_info.flags */
export const InvAddrFlag = { PASID: 1 << 0, ARCHID: 1 << 1, LEAF: 1 << 2 } as const;

/**
 * iommu_nesting_info.features, as the vSVA series' tree defines them
 * (Liu Yi L, "vfio: expose virtual Shared Virtual Addressing to VMs",
 * include/uapi/linux/iommu.h): BIND_PGTBL = bit 0, CACHE_INVLD = bit 1. The
 * earlier SYSWIDE_PASID bit is gone in that revision: whether PASIDs are
 * allocated system-wide is told by VFIO's PASID_REQUEST support instead.
 */
export const NestingFeature = {
  BIND_PGTBL: 1 << 0,
  CACHE_INVLD: 1 << 1,
} as const;
export const NESTING_FEATURES_KNOWN = NestingFeature.BIND_PGTBL | NestingFeature.CACHE_INVLD;
