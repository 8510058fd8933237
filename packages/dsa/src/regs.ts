import { defineLayout } from "@vsva/pgtable";

/**
 * The accelerator's registers and in-memory structures, declared once as
 * layouts. Offsets, bit positions and codes follow the Intel Data Streaming
 * Accelerator Architecture Specification (rev 1.0+, chapter 9 "Registers",
 * chapter 8 "Descriptor and completion record formats") as Linux mirrors them
 * in `drivers/dma/idxd/registers.h` (BAR0 registers, command and command
 * error codes) and `include/uapi/linux/idxd.h` (descriptor flags, opcodes,
 * completion status codes). Where the two disagree (field renames such as
 * token_limit → rdbuf_limit between kernel versions), the newer Linux names
 * are used; the bit positions did not move.
 *
 * Only the DSA 1.0 subset a driver needs is declared: bits no field covers are
 * reserved and read 0.
 */

/** BAR0 register offsets (`registers.h`: IDXD_*_OFFSET). */
export const DsaReg = {
  VERSION: 0x00,
  GENCAP: 0x10,
  WQCAP: 0x20,
  GRPCAP: 0x30,
  ENGCAP: 0x38,
  OPCAP: 0x40,
  OFFSETS: 0x60,
  GENCFG: 0x80,
  GENCTRL: 0x88,
  GENSTS: 0x90,
  INTCAUSE: 0x98,
  CMD: 0xa0,
  CMDSTS: 0xa8,
  CMDCAP: 0xb0,
  SWERR: 0xc0,
} as const;

/**
 * Where this model places its tables, in units of 0x100 bytes as the OFFSETS
 * register reports them (`registers.h`: IDXD_TABLE_MULT); the driver reads
 * them from OFFSETS, never assumes them.
 */
export const DSA_TABLE_MULT = 0x100;
export const DSA_GRPCFG_TABLE = 0x4;
export const DSA_WQCFG_TABLE = 0x8;
export const DSA_GRPCFG_STRIDE = 64;
/** WQCFG stride is 32 << WQCAP.WQCFG_SIZE bytes (`registers.h`: IDXD_WQCFG_MIN = 5); DSA 1.0 has 32-byte entries. */
export const DSA_WQCFG_STRIDE = 32;
/** Size of BAR0 in this model. */
export const DSA_BAR0_SIZE = 0x1000;

export const DsaVersion = defineLayout("DSA VERSION", 32, {
  MINOR: { msb: 3, lsb: 0, access: "RO" },
  MAJOR: { msb: 7, lsb: 4, access: "RO" },
});

export const DsaGenCap = defineLayout("DSA GENCAP", 64, {
  BLOCK_ON_FAULT: { msb: 0, lsb: 0, access: "RO" },
  OVERLAP_COPY: { msb: 1, lsb: 1, access: "RO" },
  CACHE_CONTROL_MEM: { msb: 2, lsb: 2, access: "RO" },
  CACHE_CONTROL_CACHE: { msb: 3, lsb: 3, access: "RO" },
  CMD_CAP: { msb: 4, lsb: 4, access: "RO" },
  DEST_READBACK: { msb: 8, lsb: 8, access: "RO" },
  DRAIN_READBACK: { msb: 9, lsb: 9, access: "RO" },
  /** Largest transfer is 2^MAX_XFER_SHIFT bytes. */
  MAX_XFER_SHIFT: { msb: 20, lsb: 16, access: "RO" },
  MAX_BATCH_SHIFT: { msb: 24, lsb: 21, access: "RO" },
  MAX_IMS_MULT: { msb: 30, lsb: 25, access: "RO" },
  CONFIG_EN: { msb: 31, lsb: 31, access: "RO" },
});

export const DsaWqCap = defineLayout("DSA WQCAP", 64, {
  TOTAL_WQ_SIZE: { msb: 15, lsb: 0, access: "RO" },
  NUM_WQS: { msb: 23, lsb: 16, access: "RO" },
  WQCFG_SIZE: { msb: 27, lsb: 24, access: "RO" },
  SHARED_MODE: { msb: 48, lsb: 48, access: "RO" },
  DEDICATED_MODE: { msb: 49, lsb: 49, access: "RO" },
  WQ_ATS_SUPPORT: { msb: 50, lsb: 50, access: "RO" },
  PRIORITY: { msb: 51, lsb: 51, access: "RO" },
  OCCUPANCY: { msb: 52, lsb: 52, access: "RO" },
});

export const DsaGrpCap = defineLayout("DSA GRPCAP", 64, {
  NUM_GROUPS: { msb: 7, lsb: 0, access: "RO" },
  TOTAL_RDBUFS: { msb: 15, lsb: 8, access: "RO" },
  RDBUF_CTRL: { msb: 16, lsb: 16, access: "RO" },
  RDBUF_LIMIT: { msb: 17, lsb: 17, access: "RO" },
});

export const DsaEngCap = defineLayout("DSA ENGCAP", 64, {
  NUM_ENGINES: { msb: 7, lsb: 0, access: "RO" },
});

/** OFFSETS: where the tables are, each ×{@link DSA_TABLE_MULT}. */
export const DsaOffsets = defineLayout("DSA OFFSETS", 128, {
  GRPCFG: { msb: 15, lsb: 0, access: "RO" },
  WQCFG: { msb: 31, lsb: 16, access: "RO" },
  MSIX_PERM: { msb: 47, lsb: 32, access: "RO" },
  IMS: { msb: 63, lsb: 48, access: "RO" },
});

export const DsaGenCfg = defineLayout("DSA GENCFG", 32, {
  RDBUF_LIMIT: { msb: 7, lsb: 0, access: "RW" },
  USER_INT_EN: { msb: 12, lsb: 12, access: "RW" },
});

export const DsaGenCtrl = defineLayout("DSA GENCTRL", 32, {
  SOFTERR_INT_EN: { msb: 0, lsb: 0, access: "RW" },
  HALT_INT_EN: { msb: 1, lsb: 1, access: "RW" },
});

/** GENSTS.STATE values (`registers.h`: IDXD_DEVICE_STATE_*). */
export const DsaDeviceState = { DISABLED: 0, ENABLED: 1, DRAIN: 2, HALT: 3 } as const;

export const DsaGenSts = defineLayout("DSA GENSTS", 32, {
  STATE: { msb: 1, lsb: 0, access: "RO" },
  RESET_TYPE: { msb: 3, lsb: 2, access: "RO" },
});

export const DsaIntCause = defineLayout("DSA INTCAUSE", 32, {
  ERR: { msb: 0, lsb: 0, access: "RW1C" },
  CMD: { msb: 1, lsb: 1, access: "RW1C" },
});

export const DsaCmd = defineLayout("DSA CMD", 32, {
  OPERAND: { msb: 19, lsb: 0, access: "RW" },
  COMMAND: { msb: 24, lsb: 20, access: "RW" },
  INT_REQ: { msb: 31, lsb: 31, access: "RW" },
});

export const DsaCmdSts = defineLayout("DSA CMDSTS", 32, {
  ERR: { msb: 7, lsb: 0, access: "RO" },
  RESULT: { msb: 23, lsb: 8, access: "RO" },
  ACTIVE: { msb: 31, lsb: 31, access: "RO" },
});

/** Commands (CMD.COMMAND; `registers.h`: enum idxd_cmd). */
export const DsaCommand = {
  ENABLE_DEVICE: 1,
  DISABLE_DEVICE: 2,
  DRAIN_ALL: 3,
  ABORT_ALL: 4,
  RESET_DEVICE: 5,
  ENABLE_WQ: 6,
  DISABLE_WQ: 7,
  DRAIN_WQ: 8,
  ABORT_WQ: 9,
  RESET_WQ: 10,
  DRAIN_PASID: 11,
  ABORT_PASID: 12,
} as const;

/** CMDSTS.ERR codes (`registers.h`: IDXD_CMDSTS_*). */
export const DsaCmdErr = {
  SUCCESS: 0x00,
  INVAL_CMD: 0x01,
  INVAL_WQIDX: 0x02,
  DEV_ENABLED: 0x10,
  CONFIG: 0x11,
  BUSMASTER_EN: 0x12,
  WQ_SIZE_ERANGE: 0x14,
  DEV_NOTEN: 0x20,
  WQ_ENABLED: 0x21,
  WQ_SIZE: 0x22,
  WQ_PRIOR: 0x23,
  WQ_MODE: 0x24,
  BOF_EN: 0x25,
  PASID_EN: 0x26,
  MAX_XFER_SIZE: 0x28,
  DIS_DEV_EN: 0x31,
  DEV_NOT_EN: 0x32,
} as const;

export const DsaSwErr = defineLayout("DSA SWERR", 256, {
  VALID: { msb: 0, lsb: 0, access: "RW1C" },
  OVERFLOW: { msb: 1, lsb: 1, access: "RW1C" },
  DESC_VALID: { msb: 2, lsb: 2, access: "RO" },
  WQ_IDX_VALID: { msb: 3, lsb: 3, access: "RO" },
  BATCH: { msb: 4, lsb: 4, access: "RO" },
  FAULT_RW: { msb: 5, lsb: 5, access: "RO" },
  PRIV: { msb: 6, lsb: 6, access: "RO" },
  /** Same numbering as the completion status. */
  ERROR: { msb: 15, lsb: 8, access: "RO" },
  WQ_IDX: { msb: 23, lsb: 16, access: "RO" },
  OPERATION: { msb: 39, lsb: 32, access: "RO" },
  PASID: { msb: 59, lsb: 40, access: "RO" },
  BATCH_IDX: { msb: 79, lsb: 64, access: "RO" },
  INVALID_FLAGS: { msb: 127, lsb: 96, access: "RO" },
  FAULT_ADDR_LO: { msb: 159, lsb: 128, access: "RO" },
  FAULT_ADDR_HI: { msb: 191, lsb: 160, access: "RO" },
});

/** WQCFG.MODE (`registers.h`: WQCFG_MODE_DEDICATED / _SHARED). */
export const WqMode = { SHARED: 0, DEDICATED: 1 } as const;
/** WQCFG.STATE. */
export const WqState = { DISABLED: 0, ENABLED: 1 } as const;

/** One WQ configuration entry (32 bytes, `registers.h`: union wqcfg). */
export const DsaWqCfg = defineLayout("DSA WQCFG", 256, {
  SIZE: { msb: 15, lsb: 0, access: "RW" },
  THRESHOLD: { msb: 47, lsb: 32, access: "RW" },
  MODE: { msb: 64, lsb: 64, access: "RW" },
  BOF: { msb: 65, lsb: 65, access: "RW" },
  PRIORITY: { msb: 71, lsb: 68, access: "RW" },
  PASID: { msb: 91, lsb: 72, access: "RW" },
  PASID_EN: { msb: 92, lsb: 92, access: "RW" },
  PRIV: { msb: 93, lsb: 93, access: "RW" },
  MAX_XFER_SHIFT: { msb: 100, lsb: 96, access: "RW" },
  MAX_BATCH_SHIFT: { msb: 104, lsb: 101, access: "RW" },
  OCCUPANCY: { msb: 207, lsb: 192, access: "RO" },
  STATE: { msb: 223, lsb: 222, access: "RO" },
});

/** One group configuration entry (64 bytes): which WQs and engines form the group. Stored, not interpreted (one engine serves every WQ). */
export const DsaGrpCfg = defineLayout("DSA GRPCFG", 512, {
  WQS: { msb: 31, lsb: 0, access: "RW" },
  ENGINES: { msb: 287, lsb: 256, access: "RW" },
  TC_A: { msb: 322, lsb: 320, access: "RW" },
  TC_B: { msb: 325, lsb: 323, access: "RW" },
});

// --- in-memory structures ---------------------------------------------------

/** Opcodes (`uapi/linux/idxd.h`: enum dsa_opcode). */
export const DsaOpcode = {
  NOOP: 0x00,
  BATCH: 0x01,
  DRAIN: 0x02,
  MEMMOVE: 0x03,
  MEMFILL: 0x04,
  COMPARE: 0x05,
} as const;

/** Descriptor flags, bit values within the 24-bit flags field (`uapi/linux/idxd.h`: IDXD_OP_FLAG_*). */
export const DescFlag = {
  FENCE: 0x0001,
  BOF: 0x0002,
  CRAV: 0x0004,
  RCR: 0x0008,
  RCI: 0x0010,
  CRSTS: 0x0020,
  CR: 0x0080,
  CC: 0x0100,
  ADDR1_TCS: 0x0200,
  ADDR2_TCS: 0x0400,
  ADDR3_TCS: 0x0800,
  CR_TCS: 0x1000,
  STORD: 0x2000,
  DRDBK: 0x4000,
  DSTS: 0x8000,
} as const;

/** Every flag bit the device defines; any other set bit is an invalid-flags error. */
export const DESC_DEFINED_FLAGS = Object.values(DescFlag).reduce((a, b) => a | b, 0);

/**
 * The 64-byte work descriptor (`uapi/linux/idxd.h`: struct dsa_hw_desc).
 * 64-bit addresses are declared as halves (a layout field holds at most 53
 * bits). For MEMFILL the 8-byte pattern sits where SRC is; for COMPARE the
 * second source sits where DST is.
 */
export const DsaDesc = defineLayout("DSA descriptor", 512, {
  PASID: [19, 0],
  RSVD_PASID: { msb: 30, lsb: 20, access: "RsvdZ" },
  PRIV: [31, 31],
  FLAGS: [55, 32],
  OPCODE: [63, 56],
  COMPL_LO: [95, 64],
  COMPL_HI: [127, 96],
  SRC_LO: [159, 128],
  SRC_HI: [191, 160],
  DST_LO: [223, 192],
  DST_HI: [255, 224],
  XFER_SIZE: [287, 256],
  INT_HANDLE: [303, 288],
  EXPECTED_RES: [327, 320],
});
export const DSA_DESC_SIZE = 64;

/** The 32-byte completion record (`uapi/linux/idxd.h`: struct dsa_completion_record). */
export const DsaCompletion = defineLayout("DSA completion record", 256, {
  STATUS: [6, 0],
  /** The faulting access was a write (DSA_COMP_STATUS_WRITE). */
  FAULT_WRITE: [7, 7],
  RESULT: [15, 8],
  BYTES_COMPLETED: [63, 32],
  FAULT_ADDR_LO: [95, 64],
  FAULT_ADDR_HI: [127, 96],
  INVALID_FLAGS: [151, 128],
});
export const DSA_COMPLETION_SIZE = 32;
/** A completion record must be 32-byte aligned (DSA spec 8.1: Completion Record Address). */
export const DSA_COMPLETION_ALIGN = 32;

/** Completion status codes (`uapi/linux/idxd.h`: DSA_COMP_*); also the SWERR error numbering. */
export const DsaStatus = {
  NONE: 0x00,
  SUCCESS: 0x01,
  PAGE_FAULT_NOBOF: 0x03,
  BAD_OPCODE: 0x10,
  INVALID_FLAGS: 0x11,
  NOZERO_RESERVE: 0x12,
  XFER_ERANGE: 0x13,
  OVERLAP_BUFFERS: 0x16,
  CRA_XLAT: 0x1a,
  CRA_ALIGN: 0x1b,
  PRIV_BAD: 0x1d,
  TRANSLATION_FAIL: 0x22,
} as const;
export type DsaStatusCode = (typeof DsaStatus)[keyof typeof DsaStatus];
