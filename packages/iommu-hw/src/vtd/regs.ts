import { defineLayout } from "@vsva/pgtable";

/**
 * The VT-d register file, declared once as data (VT-d spec chapter 10, register descriptions). Each layout
 * gives bit ranges and access; the register file derives its writable,
 * write-1-to-clear and read masks from the access of every field.
 *
 * Fields whose value is reported by hardware only (CAP, ECAP, GSTS, IQH...) are
 * RO; command registers are WO (read as zero); RW1C status bits are cleared by
 * writing 1. Bits no field covers are reserved: they read 0 and ignore writes.
 */

export const RegOffset = {
  VER: 0x000,
  CAP: 0x008,
  ECAP: 0x010,
  GCMD: 0x018,
  GSTS: 0x01c,
  RTADDR: 0x020,
  CCMD: 0x028,
  FSTS: 0x034,
  FECTL: 0x038,
  FEDATA: 0x03c,
  FEADDR: 0x040,
  FEUADDR: 0x044,
  IQH: 0x080,
  IQT: 0x088,
  IQA: 0x090,
  ICS: 0x09c,
  IECTL: 0x0a0,
  IEDATA: 0x0a4,
  IEADDR: 0x0a8,
  IEUADDR: 0x0ac,
  IQERCD: 0x0b0,
  IRTA: 0x0b8,
  PQH: 0x0c0,
  PQT: 0x0c8,
  PQA: 0x0d0,
  PRS: 0x0dc,
  PECTL: 0x0e0,
  PEDATA: 0x0e4,
  PEADDR: 0x0e8,
  PEUADDR: 0x0ec,
  /** Virtual command interface, VT-d 3.0–3.2 layout (VT-d §10.4 VCMD/VCRSP, the one the 2020 vSVA work used). */
  VCCAP: 0xe00,
  VCMD: 0xe10,
  VCRSP: 0xe20,
} as const;

/** Size of the MMIO window (covers the VCMD registers, as the QEMU vSVA RFC did). */
export const REG_WINDOW = 0x1000;
/** Where the IOTLB register block (IVA, IOTLB) sits: ECAP.IRO, in 16-byte units. */
export const DEFAULT_IRO = 0x50; // 0x500
/** Where the fault-recording registers start: CAP.FRO, in 16-byte units. */
export const DEFAULT_FRO = 0x40; // 0x400

export const VerReg = defineLayout("VER", 32, {
  MIN: { msb: 3, lsb: 0, access: "RO" },
  MAX: { msb: 7, lsb: 4, access: "RO" },
});

export const CapReg = defineLayout("CAP", 64, {
  ND: { msb: 2, lsb: 0, access: "RO" },
  AFL: { msb: 3, lsb: 3, access: "RO" },
  RWBF: { msb: 4, lsb: 4, access: "RO" },
  PLMR: { msb: 5, lsb: 5, access: "RO" },
  PHMR: { msb: 6, lsb: 6, access: "RO" },
  CM: { msb: 7, lsb: 7, access: "RO" },
  SAGAW: { msb: 12, lsb: 8, access: "RO" },
  MGAW: { msb: 21, lsb: 16, access: "RO" },
  ZLR: { msb: 22, lsb: 22, access: "RO" },
  FRO: { msb: 33, lsb: 24, access: "RO" },
  SLLPS: { msb: 37, lsb: 34, access: "RO" },
  PSI: { msb: 39, lsb: 39, access: "RO" },
  NFR: { msb: 47, lsb: 40, access: "RO" },
  MAMV: { msb: 53, lsb: 48, access: "RO" },
  DWD: { msb: 54, lsb: 54, access: "RO" },
  DRD: { msb: 55, lsb: 55, access: "RO" },
  FL1GP: { msb: 56, lsb: 56, access: "RO" },
  PI: { msb: 59, lsb: 59, access: "RO" },
  FL5LP: { msb: 60, lsb: 60, access: "RO" },
});

export const EcapReg = defineLayout("ECAP", 64, {
  C: { msb: 0, lsb: 0, access: "RO" },
  QI: { msb: 1, lsb: 1, access: "RO" },
  DT: { msb: 2, lsb: 2, access: "RO" },
  IR: { msb: 3, lsb: 3, access: "RO" },
  EIM: { msb: 4, lsb: 4, access: "RO" },
  PT: { msb: 6, lsb: 6, access: "RO" },
  SC: { msb: 7, lsb: 7, access: "RO" },
  IRO: { msb: 17, lsb: 8, access: "RO" },
  MHMV: { msb: 23, lsb: 20, access: "RO" },
  NEST: { msb: 26, lsb: 26, access: "RO" },
  PRS: { msb: 29, lsb: 29, access: "RO" },
  ERS: { msb: 30, lsb: 30, access: "RO" },
  SRS: { msb: 31, lsb: 31, access: "RO" },
  NWFS: { msb: 33, lsb: 33, access: "RO" },
  EAFS: { msb: 34, lsb: 34, access: "RO" },
  PSS: { msb: 39, lsb: 35, access: "RO" },
  PASID: { msb: 40, lsb: 40, access: "RO" },
  DIT: { msb: 41, lsb: 41, access: "RO" },
  PDS: { msb: 42, lsb: 42, access: "RO" },
  SMTS: { msb: 43, lsb: 43, access: "RO" },
  VCS: { msb: 44, lsb: 44, access: "RO" },
  SLADS: { msb: 45, lsb: 45, access: "RO" },
  SLTS: { msb: 46, lsb: 46, access: "RO" },
  FLTS: { msb: 47, lsb: 47, access: "RO" },
  SMPWCS: { msb: 48, lsb: 48, access: "RO" },
  RPS: { msb: 49, lsb: 49, access: "RO" },
});

/** GCMD: write-only command bits (VT-d §10.4 GCMD/GSTS); reads return 0. */
export const GcmdReg = defineLayout("GCMD", 32, {
  CFI: { msb: 23, lsb: 23, access: "WO" },
  SIRTP: { msb: 24, lsb: 24, access: "WO" },
  IRE: { msb: 25, lsb: 25, access: "WO" },
  QIE: { msb: 26, lsb: 26, access: "WO" },
  WBF: { msb: 27, lsb: 27, access: "WO" },
  EAFL: { msb: 28, lsb: 28, access: "WO" },
  SFL: { msb: 29, lsb: 29, access: "WO" },
  SRTP: { msb: 30, lsb: 30, access: "WO" },
  TE: { msb: 31, lsb: 31, access: "WO" },
});

/** GSTS: the status bit of each command, at the same position. */
export const GstsReg = defineLayout("GSTS", 32, {
  CFIS: { msb: 23, lsb: 23, access: "RO" },
  IRTPS: { msb: 24, lsb: 24, access: "RO" },
  IRES: { msb: 25, lsb: 25, access: "RO" },
  QIES: { msb: 26, lsb: 26, access: "RO" },
  WBFS: { msb: 27, lsb: 27, access: "RO" },
  AFLS: { msb: 28, lsb: 28, access: "RO" },
  FLS: { msb: 29, lsb: 29, access: "RO" },
  RTPS: { msb: 30, lsb: 30, access: "RO" },
  TES: { msb: 31, lsb: 31, access: "RO" },
});

export const RtaddrReg = defineLayout("RTADDR", 64, {
  TTM: [11, 10],
  RTA: [63, 12],
});

export const CcmdReg = defineLayout("CCMD", 64, {
  DID: [15, 0],
  SID: { msb: 31, lsb: 16, access: "WO" },
  FM: { msb: 33, lsb: 32, access: "WO" },
  CAIG: { msb: 60, lsb: 59, access: "RO" },
  CIRG: [62, 61],
  ICC: [63, 63],
});

export const FstsReg = defineLayout("FSTS", 32, {
  PFO: { msb: 0, lsb: 0, access: "RW1C" },
  PPF: { msb: 1, lsb: 1, access: "RO" },
  IQE: { msb: 4, lsb: 4, access: "RW1C" },
  ICE: { msb: 5, lsb: 5, access: "RW1C" },
  ITE: { msb: 6, lsb: 6, access: "RW1C" },
  FRI: { msb: 15, lsb: 8, access: "RO" },
});

/** FECTL, IECTL and PECTL share one shape: interrupt mask and (read-only) pending. */
export const EventCtlReg = defineLayout("EVENTCTL", 32, {
  IP: { msb: 30, lsb: 30, access: "RO" },
  IM: [31, 31],
});

export const EventDataReg = defineLayout("EVENTDATA", 32, { DATA: [15, 0] });
export const EventAddrReg = defineLayout("EVENTADDR", 32, { ADDR: [31, 2] });
export const EventUaddrReg = defineLayout("EVENTUADDR", 32, { UADDR: [31, 0] });

export const IqaReg = defineLayout("IQA", 64, {
  QS: [2, 0],
  DW: [11, 11],
  IQA: [63, 12],
});

/** IQH is advanced by hardware; software only reads it. */
export const IqhReg = defineLayout("IQH", 64, { QH: { msb: 18, lsb: 4, access: "RO" } });
export const IqtReg = defineLayout("IQT", 64, { QT: [18, 4] });

export const IcsReg = defineLayout("ICS", 32, { IWC: { msb: 0, lsb: 0, access: "RW1C" } });

export const IqercdReg = defineLayout("IQERCD", 64, {
  IQEI: { msb: 3, lsb: 0, access: "RO" },
  ITESID: { msb: 47, lsb: 32, access: "RO" },
  ICESID: { msb: 63, lsb: 48, access: "RO" },
});

export const IrtaReg = defineLayout("IRTA", 64, {
  S: [3, 0],
  EIME: [11, 11],
  IRTA: [63, 12],
});

export const PqaReg = defineLayout("PQA", 64, {
  PQS: [2, 0],
  PQA: [63, 12],
});
export const PqhReg = defineLayout("PQH", 64, { PQH: [18, 5] });
export const PqtReg = defineLayout("PQT", 64, { PQT: [18, 5] });

export const PrsReg = defineLayout("PRS", 32, {
  PPR: { msb: 0, lsb: 0, access: "RW1C" },
  PRO: { msb: 1, lsb: 1, access: "RW1C" },
});

/** The IOTLB register block at ECAP.IRO×16 (register-based invalidation, VT-d §10.4 IOTLB registers). */
export const IvaReg = defineLayout("IVA", 64, {
  AM: { msb: 5, lsb: 0, access: "WO" },
  IH: { msb: 6, lsb: 6, access: "WO" },
  ADDR: { msb: 63, lsb: 12, access: "WO" },
});
export const IotlbReg = defineLayout("IOTLB", 64, {
  DID: [47, 32],
  DW: [48, 48],
  DR: [49, 49],
  IAIG: { msb: 58, lsb: 57, access: "RO" },
  IIRG: [61, 60],
  IVT: [63, 63],
});

/**
 * Fault-recording register (VT-d §10.4 FRCD), 128 bits. Everything is hardware-written
 * except F, which software clears by writing 1 (its PASID value field is 20 bits, as every PASID).
 */
export const FrcdReg = defineLayout("FRCD", 128, {
  FI: { msb: 63, lsb: 12, access: "RO" },
  SID: { msb: 79, lsb: 64, access: "RO" },
  PRIV: { msb: 93, lsb: 93, access: "RO" },
  EXE: { msb: 94, lsb: 94, access: "RO" },
  PP: { msb: 95, lsb: 95, access: "RO" },
  FR: { msb: 103, lsb: 96, access: "RO" },
  PV: { msb: 123, lsb: 104, access: "RO" },
  AT: { msb: 125, lsb: 124, access: "RO" },
  T1: { msb: 126, lsb: 126, access: "RO" },
  F: { msb: 127, lsb: 127, access: "RW1C" },
});

/** Virtual command interface, VT-d 3.0–3.2 layout (VT-d §10.4 VCMD/VCRSP). */
export const VccapReg = defineLayout("VCCAP", 64, { PAS: { msb: 0, lsb: 0, access: "RO" } });
export const VcmdReg = defineLayout("VCMD", 64, {
  CMD: [7, 0],
  OPERAND: [27, 8],
});
export const VcrspReg = defineLayout("VCRSP", 64, {
  IP: { msb: 0, lsb: 0, access: "RO" },
  SC: { msb: 2, lsb: 1, access: "RO" },
  RSLT: { msb: 27, lsb: 8, access: "RO" },
});
