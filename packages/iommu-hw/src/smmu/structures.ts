import { defineLayout } from "@vsva/pgtable";

/**
 * SMMUv3 in-memory structures (SMMUv3 spec §5.2, §5.4), declared once as data
 * with wide-bit numbering (bit N is bit N mod 64 of dword N div 64).
 * Address fields read back with `getAddr` relative to their own 64-bit word.
 *
 * STE and CD fields not in the sources (MTCFG, MemAttr, ALLOCCFG, PRIVCFG,
 * INSTCFG, NSCFG, DCP, WXN, PAN, …, all read from the spec alone) are left undeclared and are
 * not checked: neither QEMU nor, as far as the sources show, the
 * architecture makes a non-zero value there ILLEGAL, and Linux may set some.
 */

export const STE_BYTES = 64;
export const CD_BYTES = 64;
export const L1_DESC_BYTES = 8;

export const Ste = defineLayout("STE", 512, {
  V: [0, 0],
  CONFIG: [3, 1],
  S1FMT: [5, 4],
  S1CONTEXTPTR: [51, 6],
  S1CDMAX: [63, 59],
  S1DSS: [65, 64],
  S1CIR: [67, 66],
  S1COR: [69, 68],
  S1CSH: [71, 70],
  MEV: [83, 83],
  S2FWB: [89, 89],
  S1STALLD: [91, 91],
  EATS: [93, 92],
  STRW: [95, 94],
  SHCFG: [109, 108],
  S2VMID: [143, 128],
  S2T0SZ: [165, 160],
  S2SL0: [167, 166],
  S2IR0: [169, 168],
  S2OR0: [171, 170],
  S2SH0: [173, 172],
  S2TG: [175, 174],
  S2PS: [178, 176],
  S2AA64: [179, 179],
  S2ENDI: [180, 180],
  S2AFFD: [181, 181],
  S2PTW: [182, 182],
  // ⚠ Older QEMU put S2HD/S2HA/S2S one bit higher; current QEMU and Linux agree on these (SMMUv3 spec §5.2).
  S2HD: [183, 183],
  S2HA: [184, 184],
  S2S: [185, 185],
  S2R: [186, 186],
  S2TTB: [243, 196],
});

/** STE.Config (SMMUv3 spec §5.2). 0b000–0b011 abort; QEMU and the architecture treat all of 0b0xx as abort. */
export const SteConfig = { ABORT: 0, BYPASS: 4, S1_TRANS: 5, S2_TRANS: 6, NESTED: 7 } as const;
export const S1Dss = { TERMINATE: 0, BYPASS: 1, SSID0: 2 } as const;
export const S1Fmt = { LINEAR: 0, L2_4K: 1, L2_64K: 2 } as const;
export const Strw = { NSEL1: 0, EL2: 2 } as const;

/** Level-1 stream-table descriptor (SMMUv3 spec §5.1). */
export const L1Std = defineLayout("L1STD", 64, { SPAN: [4, 0], L2PTR: [51, 6] });

/** Level-1 CD-table descriptor (SMMUv3 spec §5.3). */
export const L1Cd = defineLayout("L1CD", 64, { V: [0, 0], L2PTR: [51, 12] });

export const Cd = defineLayout("CD", 512, {
  T0SZ: [5, 0],
  TG0: [7, 6],
  IR0: [9, 8],
  OR0: [11, 10],
  SH0: [13, 12],
  EPD0: [14, 14],
  ENDI: [15, 15],
  T1SZ: [21, 16],
  TG1: [23, 22],
  IR1: [25, 24],
  OR1: [27, 26],
  SH1: [29, 28],
  EPD1: [30, 30],
  V: [31, 31],
  IPS: [34, 32],
  AFFD: [35, 35],
  TBI: [39, 38],
  AA64: [41, 41],
  HD: [42, 42],
  HA: [43, 43],
  S: [44, 44],
  R: [45, 45],
  A: [46, 46],
  ASET: [47, 47],
  ASID: [63, 48],
  NSCFG0: [64, 64],
  HAD0: [65, 65],
  TTB0: [115, 68],
  NSCFG1: [128, 128],
  HAD1: [129, 129],
  TTB1: [179, 132],
  MAIR0: [223, 192],
  MAIR1: [255, 224],
});

/** TG0 (and S2TG) encoding: 0 = 4 KiB, 1 = 64 KiB, 2 = 16 KiB. TG1 differs: 2 = 4 KiB (SMMUv3 spec §5.4). */
export const TG0_4K = 0;
export const TG1_4K = 2;

// --- commands (SMMUv3 spec chapter 4): 16 bytes; every bit no field declares is reserved → CERROR_ILL ----------

export const CMD_BYTES = 16;

export const CmdOp = {
  PREFETCH_CONFIG: 0x01,
  PREFETCH_ADDR: 0x02,
  CFGI_STE: 0x03,
  CFGI_STE_RANGE: 0x04,
  CFGI_CD: 0x05,
  CFGI_CD_ALL: 0x06,
  TLBI_NH_ALL: 0x10,
  TLBI_NH_ASID: 0x11,
  TLBI_NH_VA: 0x12,
  TLBI_NH_VAA: 0x13,
  TLBI_EL3_ALL: 0x18,
  TLBI_EL3_VA: 0x1a,
  TLBI_EL2_ALL: 0x20,
  TLBI_EL2_ASID: 0x21,
  TLBI_EL2_VA: 0x22,
  TLBI_EL2_VAA: 0x23,
  TLBI_S12_VMALL: 0x28,
  TLBI_S2_IPA: 0x2a,
  TLBI_NSNH_ALL: 0x30,
  ATC_INV: 0x40,
  PRI_RESP: 0x41,
  RESUME: 0x44,
  STALL_TERM: 0x45,
  SYNC: 0x46,
} as const;

export const CMD_NAMES: Readonly<Record<number, string>> = Object.fromEntries(Object.entries(CmdOp).map(([k, v]) => [v, `CMD_${k}`]));

const op = { OPCODE: [7, 0] } as const;
/** SSec must be 0 for non-secure software (this model has no secure side). */
const ssec = { SSEC: { msb: 10, lsb: 10, access: "RsvdZ" } } as const;
const sid = { SID: [63, 32] } as const;
const ssid = { SSV: [11, 11], SSID: [31, 12] } as const;
const range = { NUM: [16, 12], SCALE: [24, 20] } as const;
const tlbiVa = { LEAF: [64, 64], TTL: [73, 72], TG: [75, 74] } as const;

export const CmdPrefetchConfig = defineLayout("CMD_PREFETCH_CONFIG", 128, { ...op, ...ssec, ...ssid, ...sid });
export const CmdPrefetchAddr = defineLayout("CMD_PREFETCH_ADDR", 128, { ...op, ...ssec, ...ssid, ...sid, SIZE: [68, 64], ADDR: [127, 76] });
export const CmdCfgiSte = defineLayout("CMD_CFGI_STE", 128, { ...op, ...ssec, ...sid, LEAF: [64, 64] });
export const CmdCfgiSteRange = defineLayout("CMD_CFGI_STE_RANGE", 128, { ...op, ...ssec, ...sid, RANGE: [68, 64] });
export const CmdCfgiCd = defineLayout("CMD_CFGI_CD", 128, { ...op, ...ssec, SSID: [31, 12], ...sid, LEAF: [64, 64] });
export const CmdCfgiCdAll = defineLayout("CMD_CFGI_CD_ALL", 128, { ...op, ...ssec, ...sid });
export const CmdTlbiNhAll = defineLayout("CMD_TLBI_NH_ALL", 128, { ...op, VMID: [47, 32] });
export const CmdTlbiNhAsid = defineLayout("CMD_TLBI_NH_ASID", 128, { ...op, VMID: [47, 32], ASID: [63, 48] });
export const CmdTlbiNhVa = defineLayout("CMD_TLBI_NH_VA", 128, { ...op, ...range, VMID: [47, 32], ASID: [63, 48], ...tlbiVa, ADDR: [127, 76] });
export const CmdTlbiNhVaa = defineLayout("CMD_TLBI_NH_VAA", 128, { ...op, ...range, VMID: [47, 32], ...tlbiVa, ADDR: [127, 76] });
export const CmdTlbiEl2All = defineLayout("CMD_TLBI_EL2_ALL", 128, { ...op });
export const CmdTlbiEl2Asid = defineLayout("CMD_TLBI_EL2_ASID", 128, { ...op, ASID: [63, 48] });
export const CmdTlbiEl2Va = defineLayout("CMD_TLBI_EL2_VA", 128, { ...op, ...range, ASID: [63, 48], ...tlbiVa, ADDR: [127, 76] });
export const CmdTlbiEl2Vaa = defineLayout("CMD_TLBI_EL2_VAA", 128, { ...op, ...range, ...tlbiVa, ADDR: [127, 76] });
export const CmdTlbiS12Vmall = defineLayout("CMD_TLBI_S12_VMALL", 128, { ...op, VMID: [47, 32] });
export const CmdTlbiS2Ipa = defineLayout("CMD_TLBI_S2_IPA", 128, { ...op, ...range, VMID: [47, 32], ...tlbiVa, ADDR: [115, 76] });
export const CmdTlbiNsnhAll = defineLayout("CMD_TLBI_NSNH_ALL", 128, { ...op });
export const CmdAtcInv = defineLayout("CMD_ATC_INV", 128, { ...op, GLOBAL: [9, 9], ...ssid, ...sid, SIZE: [69, 64], ADDR: [127, 76] });
/** ⚠ Resp at dword1 13:12 as Linux has it (QEMU's generic macro reads 12:11 and does not implement PRI_RESP), SMMUv3 spec chapter 4. */
export const CmdPriResp = defineLayout("CMD_PRI_RESP", 128, { ...op, ...ssec, ...ssid, ...sid, PRGINDEX: [72, 64], RESP: [77, 76] });
export const CmdResume = defineLayout("CMD_RESUME", 128, { ...op, ...ssec, RESP: [13, 12], ...sid, STAG: [79, 64] });
export const CmdStallTerm = defineLayout("CMD_STALL_TERM", 128, { ...op, ...ssec, ...sid });
export const CmdSync = defineLayout("CMD_SYNC", 128, { ...op, CS: [13, 12], MSH: [23, 22], MSIATTR: [27, 24], MSIDATA: [63, 32], MSIADDR: [115, 66] });

export const SyncCs = { NONE: 0, IRQ: 1, SEV: 2 } as const;
export const PriRespCode = { DENIED: 0, FAILURE: 1, SUCCESS: 2 } as const;
export const ResumeResp = { TERMINATE: 0, RETRY: 1, ABORT: 2 } as const;
/** ATC_INV.SIZE that means "every address". */
export const ATC_INV_SIZE_ALL = 52;

// --- event records (SMMUv3 spec §7.3): 32 bytes ---------------------------------------------------------

export const EVENT_BYTES = 32;

const evCommon = {
  EVENTID: [7, 0], SSV: [11, 11], SSID: [31, 12], SID: [63, 32],
  STAG: [79, 64], STALL: [95, 95], PNU: [97, 97], IND: [98, 98], RNW: [99, 99], S2: [103, 103], CLASS: [105, 104], TT_READ: [108, 108],
  /** InputAddr is 64 bits; declared as two halves (a field is at most 53 bits). */
  INPUT_ADDR_LO: [159, 128], INPUT_ADDR_HI: [191, 160],
} as const;
/** Translation-class events: the IPA of a stage-2 fault in dword 3. */
export const EventRecord = defineLayout("EVENT", 256, { ...evCommon, IPA: [243, 204] });
/** F_STE_FETCH, F_CD_FETCH, F_WALK_EABT: the fetch address in dword 3. */
export const EventFetchRecord = defineLayout("EVENT_FETCH", 256, { ...evCommon, FETCH_ADDR: [243, 195] });

export const EventClass = { CD: 0, TT: 1, IN: 2 } as const;

/**
 * Event record type codes (SMMUv3 spec §7.3, Event records; the same numbers as Linux
 * drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3.h: EVT_ID_*). A `TranslateFault.reason` of an
 * SMMUv3 unit is one of these or {@link ABORT_NO_EVENT}.
 */
export const EventId = {
  F_UUT: 0x01,
  C_BAD_STREAMID: 0x02,
  F_STE_FETCH: 0x03,
  C_BAD_STE: 0x04,
  F_BAD_ATS_TREQ: 0x05,
  F_STREAM_DISABLED: 0x06,
  F_TRANSL_FORBIDDEN: 0x07,
  C_BAD_SUBSTREAMID: 0x08,
  F_CD_FETCH: 0x09,
  C_BAD_CD: 0x0a,
  F_WALK_EABT: 0x0b,
  F_TRANSLATION: 0x10,
  F_ADDR_SIZE: 0x11,
  F_ACCESS: 0x12,
  F_PERMISSION: 0x13,
  F_TLB_CONFLICT: 0x20,
  F_CFG_CONFLICT: 0x21,
  E_PAGE_REQUEST: 0x24,
  F_VMS_FETCH: 0x25,
} as const;

/**
 * Not an event: a transaction terminated without a record (STE.Config
 * abort, or GBPA.ABORT while SMMUEN = 0). `TranslateFault.reason` is 0 then.
 */
export const ABORT_NO_EVENT = 0;

/** A code `TranslateFault.reason` takes on an SMMUv3 unit. */
export type EventIdCode = (typeof EventId)[keyof typeof EventId] | typeof ABORT_NO_EVENT;

const EVENT_NAMES = new Map<number, string>([[ABORT_NO_EVENT, "ABORT"], ...Object.entries(EventId).map(([k, v]) => [v, k] as [number, string])]);

export function eventName(id: number): string {
  return EVENT_NAMES.get(id) ?? `EVENT_0x${id.toString(16)}`;
}

// --- PRI queue entries (SMMUv3 spec §8.1): 16 bytes -------------------------------------------------------------

export const PRI_BYTES = 16;
export const PriEntry = defineLayout("PRIQ_ENTRY", 128, {
  SID: [31, 0], SSID: [51, 32], PRIV: [58, 58], EXEC: [59, 59], READ: [60, 60], WRITE: [61, 61], LAST: [62, 62], SSV: [63, 63],
  PRGINDEX: [72, 64], ADDR: [127, 76],
});
