/**
 * VT-d fault reason codes (FRCD.FR), the subset this unit raises.
 * Codes and meanings: VT-d spec appendix A (non-recoverable fault reasons), confirmed against the fault-reason
 * string tables of Linux drivers/iommu/intel/dmar.c.
 */
export const FaultReason = {
  /** Invalid root-table address (SM). */
  ROOT_TABLE_INVALID: 0x30,
  /** TTM is not scalable mode (QEMU widens the meaning to "invalid TTM"; we follow, see D1 #5). */
  RTADDR_INV_TTM: 0x31,
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
  /** D1 #4: 0x5B, not old QEMU's 0x58 (which is a fetch error). */
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
