import { defineLayout } from "@vsva/pgtable";

/**
 * Invalidation-queue descriptors (VT-d spec 6.5.2) and the page-request
 * descriptor (chapter 7), as 128-bit layouts over qw0/qw1. With IQA.DW=1 a
 * descriptor is 256 bits and qw2/qw3 are reserved except where a type says
 * otherwise (private data of a page group response). Every layout names
 * TYPE_HI (Type[6:4] at bits 11:9) so that non-zero values there read as an
 * unknown type, not as a reserved-bit violation.
 *
 * The PFSID fields of the two device-TLB types (source ID of the physical
 * function, split as bits 15:12 and 63:52) are declared: they mean something
 * only when the unit reports ECAP.DIT, and the executor treats a non-zero
 * value as a reserved-field error otherwise. Linux fills them from
 * `device_domain_info.pfsid`, 0 without DIT (drivers/iommu/intel/iommu.c:
 * iommu_enable_dev_iotlb(); dmar.c: qi_flush_dev_iotlb()).
 */

export const InvType = {
  CONTEXT_CACHE: 1,
  IOTLB: 2,
  DEVICE_TLB: 3,
  INTERRUPT_ENTRY: 4,
  WAIT: 5,
  PASID_IOTLB: 6,
  PASID_CACHE: 7,
  PASID_DEVICE_TLB: 8,
  PAGE_GROUP_RESPONSE: 9,
} as const;

export const INV_TYPE_NAMES: Readonly<Record<number, string>> = {
  1: "context-cache",
  2: "iotlb",
  3: "device-tlb",
  4: "interrupt-entry",
  5: "wait",
  6: "pasid-iotlb",
  7: "pasid-cache",
  8: "pasid-device-tlb",
  9: "page-group-response",
};

/** The type fields alone, to dispatch before picking a layout. */
export const DescType = defineLayout("inv descriptor type", 128, {
  TYPE: [3, 0],
  TYPE_HI: [11, 9],
});

export const ContextCacheDesc = defineLayout("context-cache invalidate", 128, {
  TYPE: [3, 0],
  G: [5, 4],
  TYPE_HI: [11, 9],
  DID: [31, 16],
  SID: [47, 32],
  FM: [49, 48],
});

export const IotlbDesc = defineLayout("IOTLB invalidate", 128, {
  TYPE: [3, 0],
  G: [5, 4],
  DW: [6, 6],
  DR: [7, 7],
  TYPE_HI: [11, 9],
  DID: [31, 16],
  AM: [69, 64],
  IH: [70, 70],
  ADDR: [127, 76],
});

export const DeviceTlbDesc = defineLayout("device-TLB invalidate", 128, {
  TYPE: [3, 0],
  TYPE_HI: [11, 9],
  PFSID_LO: [15, 12],
  MIP: [20, 16],
  SID: [47, 32],
  PFSID_HI: [63, 52],
  S: [64, 64],
  ADDR: [127, 76],
});

export const InterruptEntryDesc = defineLayout("interrupt-entry-cache invalidate", 128, {
  TYPE: [3, 0],
  G: [4, 4],
  TYPE_HI: [11, 9],
  IM: [31, 27],
  IIDX: [47, 32],
});

export const WaitDesc = defineLayout("invalidation wait", 128, {
  TYPE: [3, 0],
  IF: [4, 4],
  SW: [5, 5],
  FN: [6, 6],
  PD: [7, 7],
  TYPE_HI: [11, 9],
  STDATA: [63, 32],
  // STADDR is bits 127:66 (address bits 63:2); split so each part fits a number.
  STADDR: [116, 66],
  STADDR_HI: [127, 117],
});

export const PasidIotlbDesc = defineLayout("PASID-based IOTLB invalidate", 128, {
  TYPE: [3, 0],
  G: [5, 4],
  TYPE_HI: [11, 9],
  DID: [31, 16],
  PASID: [51, 32],
  AM: [69, 64],
  IH: [70, 70],
  ADDR: [127, 76],
});

export const PasidCacheDesc = defineLayout("PASID-cache invalidate", 128, {
  TYPE: [3, 0],
  G: [5, 4],
  TYPE_HI: [11, 9],
  DID: [31, 16],
  PASID: [51, 32],
});

export const PasidDeviceTlbDesc = defineLayout("PASID-based device-TLB invalidate", 128, {
  TYPE: [3, 0],
  MIP: [8, 4],
  TYPE_HI: [11, 9],
  PFSID_LO: [15, 12],
  SID: [31, 16],
  PASID: [51, 32],
  PFSID_HI: [63, 52],
  G: [64, 64],
  S: [75, 75],
  ADDR: [127, 76],
});

/**
 * Page group response (VT-d spec 7.7). PDP is accepted with the private
 * data in qw2/qw3: Linux sets it when the request carried private data
 * (drivers/iommu/intel/svm.c: intel_svm_page_response()).
 */
export const PageGroupResponseDesc = defineLayout("page group response", 128, {
  TYPE: [3, 0],
  PP: [4, 4],
  PDP: [5, 5],
  TYPE_HI: [11, 9],
  RC: [15, 12],
  RID: [31, 16],
  PASID: [51, 32],
  LPIG: [66, 66],
  PRGI: [75, 67],
});

/** PFSID as the two device-TLB types split it: bits 3:0 in PFSID_LO, 15:4 in PFSID_HI. */
export function pfsidFields(pfsid: number): { PFSID_LO: number; PFSID_HI: number } {
  return { PFSID_LO: pfsid & 0xf, PFSID_HI: (pfsid >>> 4) & 0xfff };
}

/** Granularities of the types that have them (A3.1, A3.2, A3.6, A3.7). */
export const CcGran = { GLOBAL: 1, DOMAIN: 2, DEVICE: 3 } as const;
export const IotlbGran = { GLOBAL: 1, DOMAIN: 2, PAGE: 3 } as const;
export const PiotlbGran = { PASID: 2, PAGE: 3 } as const;
export const PcGran = { DOMAIN: 0, PASID: 1, GLOBAL: 3 } as const;

/** Page-group response codes (A4.2). */
export const ResponseCode = { SUCCESS: 0, INVALID: 1, FAILURE: 0xf } as const;

/** A4.1: the 256-bit page-request descriptor hardware writes into the page-request queue. */
export const PageRequestDesc = defineLayout("page request", 256, {
  TYPE: [7, 0],
  PP: [8, 8],
  PDP: [9, 9],
  RID: [31, 16],
  PASID: [51, 32],
  ER: [52, 52],
  PM: [53, 53],
  RD: [64, 64],
  WR: [65, 65],
  LPIG: [66, 66],
  PRGI: [75, 67],
  ADDR: [127, 76],
  PRIV_DATA0: [159, 128],
  PRIV_DATA1: [191, 160],
  PRIV_DATA2: [223, 192],
  PRIV_DATA3: [255, 224],
});
export const PAGE_REQUEST_TYPE = 1;
export const PAGE_REQUEST_BYTES = 32;
