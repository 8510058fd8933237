/**
 * VT-d fault reason codes (FRCD.FR), the subset this unit raises.
 * Codes and meanings: VT-d spec appendix A (non-recoverable fault reasons), confirmed against the fault-reason
 * string tables of Linux drivers/iommu/intel/dmar.c.
 */
export const FaultReason = {
  /** Invalid root-table address (SM). */
  ROOT_TABLE_INVALID: 0x30,
  /**
   * A translation request while RTADDR.TTM is not scalable mode. The spec's table names 0x31
   * "TTM 0 for request with PASID" (Linux drivers/iommu/intel/dmar.c: dma_remap_sm_fault_reasons[]);
   * only scalable mode is modelled, so this unit, like QEMU (hw/i386/intel_iommu_internal.h:
   * VTD_FR_RTADDR_INV_TTM), reports any request under any other TTM with it.
   */
  RTADDR_INV_TTM: 0x31,
  /**
   * A page request while RTADDR.TTM is not scalable mode: the spec's table gives page requests
   * their own code, 0x32 "TTM 0 for page group request" (Linux drivers/iommu/intel/dmar.c:
   * dma_remap_sm_fault_reasons[]), distinct from the 0x31 a translation request gets.
   */
  PAGE_REQUEST_INV_TTM: 0x32,
  ROOT_ENTRY_FETCH: 0x38,
  ROOT_ENTRY_NOT_PRESENT: 0x39,
  ROOT_ENTRY_RSVD: 0x3a,
  CONTEXT_ENTRY_FETCH: 0x40,
  CONTEXT_ENTRY_NOT_PRESENT: 0x41,
  CONTEXT_ENTRY_RSVD: 0x42,
  CONTEXT_ENTRY_INVALID: 0x43,
  DTE_CLEAR: 0x44,
  PASIDE_CLEAR: 0x45,
  PASID_TOO_LARGE: 0x46,
  PRE_CLEAR: 0x47,
  RID_PASID_ERROR: 0x48,
  PASID_DIR_FETCH: 0x50,
  PASID_DIR_NOT_PRESENT: 0x51,
  PASID_DIR_RSVD: 0x52,
  PASID_ENTRY_FETCH: 0x58,
  PASID_ENTRY_NOT_PRESENT: 0x59,
  PASID_ENTRY_RSVD: 0x5a,
  /** 0x5B "Invalid PASID entry" per the spec's table (dma_remap_sm_fault_reasons[]); 0x58, which older QEMU used, is the fetch error. */
  PASID_ENTRY_INVALID: 0x5b,
  ERE_CLEAR: 0x5c,
  SRE_CLEAR: 0x5d,
  FL_ENTRY_FETCH: 0x70,
  FL_NOT_PRESENT: 0x71,
  FL_RSVD: 0x72,
  FL_ROOT_FETCH: 0x73,
  NESTED_FL_ADDR_BEYOND_SL: 0x74,
  NESTED_FL_ROOT_SL_READ: 0x75,
  NESTED_FL_ENTRY_SL_READ: 0x76,
  NESTED_FL_ENTRY_SL_WRITE: 0x77,
  SL_ENTRY_FETCH: 0x78,
  SL_PERMISSION: 0x79,
  SL_RSVD: 0x7a,
  SL_ROOT_INVALID: 0x7b,
  NON_CANONICAL: 0x80,
  FL_USER_SUPERVISOR: 0x81,
  NO_EXECUTE: 0x82,
  ADDR_BEYOND_HAW: 0x83,
  SL_OUTPUT_BEYOND_MAX: 0x84,
  WRITE_DENIED: 0x85,
  READ_DENIED: 0x86,
} as const;

export type FaultReasonCode = (typeof FaultReason)[keyof typeof FaultReason];

const NAMES = new Map<number, string>(Object.entries(FaultReason).map(([k, v]) => [v, k]));

export function faultReasonName(code: number): string {
  return NAMES.get(code) ?? `FR_0x${code.toString(16)}`;
}
