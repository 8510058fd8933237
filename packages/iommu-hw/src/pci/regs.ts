import { defineLayout } from "@vsva/pgtable";

/**
 * PCI Express configuration registers of the endpoint, declared once as data.
 * Bit positions and IDs are from the PCI Local Bus / PCI Express base
 * specifications as mirrored in Linux `include/uapi/linux/pci_regs.h` (facts
 * only). Each layout is one dword (or a few) as placed in config space; the
 * access of every field drives the writable / RW1C / WO masks. Bits no field
 * covers are reserved: they read 0 and ignore writes.
 *
 * Only what this endpoint implements is declared: a feature the device does
 * not have (I/O space, VGA snooping, BARs, link registers) is simply absent and
 * therefore reads as zero, which is how PCIe says "not supported".
 */

/** Standard (type 0) header offsets. */
export const PciHeader = {
  ID: 0x00,
  COMMAND_STATUS: 0x04,
  CLASS: 0x08,
  MISC: 0x0c,
  SUBSYSTEM: 0x2c,
  CAP_PTR: 0x34,
  INTERRUPT: 0x3c,
  /** First byte after the standard header: where capabilities may start. */
  END: 0x40,
  /** First byte of PCIe extended configuration space. */
  EXT_START: 0x100,
} as const;

/** Capability IDs (standard list). */
export const PCI_CAP_ID_EXP = 0x10;

/** Extended capability IDs. */
export const PciExtCapId = {
  ATS: 0x000f,
  PRI: 0x0013,
  PASID: 0x001b,
} as const;

/** PCI Express Capabilities register Device/Port Type values. */
export const PciExpType = {
  ENDPOINT: 0x0,
  LEGACY_ENDPOINT: 0x1,
  /** Root Complex Integrated Endpoint: what on-die accelerators (DSA, IAA) are. */
  RC_ENDPOINT: 0x9,
} as const;

export const PciId = defineLayout("PCI vendor/device ID", 32, {
  VENDOR_ID: { msb: 15, lsb: 0, access: "RO" },
  DEVICE_ID: { msb: 31, lsb: 16, access: "RO" },
});

export const PciCommandStatus = defineLayout("PCI command/status", 32, {
  // Command (15:0). I/O space, special cycles, MWI, VGA snoop, IDSEL stepping
  // and fast back-to-back are hardwired 0 on a PCIe function: not declared.
  MEMORY_SPACE: { msb: 1, lsb: 1, access: "RW" },
  BUS_MASTER: { msb: 2, lsb: 2, access: "RW" },
  PARITY_ERROR_RESPONSE: { msb: 6, lsb: 6, access: "RW" },
  SERR_ENABLE: { msb: 8, lsb: 8, access: "RW" },
  INTX_DISABLE: { msb: 10, lsb: 10, access: "RW" },
  // Status (31:16).
  INTERRUPT_STATUS: { msb: 19, lsb: 19, access: "RO" },
  CAP_LIST: { msb: 20, lsb: 20, access: "RO" },
  MASTER_DATA_PARITY_ERROR: { msb: 24, lsb: 24, access: "RW1C" },
  SIGNALED_TARGET_ABORT: { msb: 27, lsb: 27, access: "RW1C" },
  RECEIVED_TARGET_ABORT: { msb: 28, lsb: 28, access: "RW1C" },
  RECEIVED_MASTER_ABORT: { msb: 29, lsb: 29, access: "RW1C" },
  SIGNALED_SYSTEM_ERROR: { msb: 30, lsb: 30, access: "RW1C" },
  DETECTED_PARITY_ERROR: { msb: 31, lsb: 31, access: "RW1C" },
});

export const PciClass = defineLayout("PCI class/revision", 32, {
  REVISION_ID: { msb: 7, lsb: 0, access: "RO" },
  PROG_IF: { msb: 15, lsb: 8, access: "RO" },
  SUBCLASS: { msb: 23, lsb: 16, access: "RO" },
  BASE_CLASS: { msb: 31, lsb: 24, access: "RO" },
});

export const PciMisc = defineLayout("PCI cache line/header type", 32, {
  CACHE_LINE_SIZE: { msb: 7, lsb: 0, access: "RW" },
  // Latency timer is hardwired 0 on PCIe; BIST is not implemented.
  HEADER_LAYOUT: { msb: 22, lsb: 16, access: "RO" },
  MULTI_FUNCTION: { msb: 23, lsb: 23, access: "RO" },
});

export const PciSubsystem = defineLayout("PCI subsystem ID", 32, {
  SUBSYSTEM_VENDOR_ID: { msb: 15, lsb: 0, access: "RO" },
  SUBSYSTEM_ID: { msb: 31, lsb: 16, access: "RO" },
});

export const PciCapPtr = defineLayout("PCI capabilities pointer", 32, {
  // Bits 1:0 of the pointer are reserved (capabilities are dword aligned).
  CAP_PTR: { msb: 7, lsb: 0, access: "RO" },
});

export const PciInterrupt = defineLayout("PCI interrupt line/pin", 32, {
  INTERRUPT_LINE: { msb: 7, lsb: 0, access: "RW" },
  INTERRUPT_PIN: { msb: 15, lsb: 8, access: "RO" },
});

// --- PCI Express capability (ID 0x10), version 2 --------------------------

/** Size of a version-2 PCI Express capability with link and slot registers. */
export const PCIE_CAP_SIZEOF = 0x3c;

export const PcieCapHeader = defineLayout("PCIe capability header", 32, {
  CAP_ID: { msb: 7, lsb: 0, access: "RO" },
  NEXT: { msb: 15, lsb: 8, access: "RO" },
  VERSION: { msb: 19, lsb: 16, access: "RO" },
  PORT_TYPE: { msb: 23, lsb: 20, access: "RO" },
  SLOT_IMPLEMENTED: { msb: 24, lsb: 24, access: "RO" },
  IRQ_MESSAGE: { msb: 29, lsb: 25, access: "RO" },
});

export const PcieDevCap = defineLayout("PCIe device capabilities", 32, {
  MAX_PAYLOAD: { msb: 2, lsb: 0, access: "RO" },
  EXT_TAG: { msb: 5, lsb: 5, access: "RO" },
  ROLE_BASED_ERROR_REPORTING: { msb: 15, lsb: 15, access: "RO" },
  FLR: { msb: 28, lsb: 28, access: "RO" },
});

export const PcieDevCtlSta = defineLayout("PCIe device control/status", 32, {
  // Device Control (15:0)
  CORRECTABLE_ERR_REPORTING: { msb: 0, lsb: 0, access: "RW" },
  NONFATAL_ERR_REPORTING: { msb: 1, lsb: 1, access: "RW" },
  FATAL_ERR_REPORTING: { msb: 2, lsb: 2, access: "RW" },
  UNSUPPORTED_REQ_REPORTING: { msb: 3, lsb: 3, access: "RW" },
  RELAXED_ORDERING: { msb: 4, lsb: 4, access: "RW" },
  MAX_PAYLOAD: { msb: 7, lsb: 5, access: "RW" },
  EXT_TAG: { msb: 8, lsb: 8, access: "RW" },
  NO_SNOOP: { msb: 11, lsb: 11, access: "RW" },
  MAX_READ_REQUEST: { msb: 14, lsb: 12, access: "RW" },
  /** Initiate Function Level Reset: always reads 0. */
  INITIATE_FLR: { msb: 15, lsb: 15, access: "WO" },
  // Device Status (31:16)
  CORRECTABLE_ERR: { msb: 16, lsb: 16, access: "RW1C" },
  NONFATAL_ERR: { msb: 17, lsb: 17, access: "RW1C" },
  FATAL_ERR: { msb: 18, lsb: 18, access: "RW1C" },
  UNSUPPORTED_REQ: { msb: 19, lsb: 19, access: "RW1C" },
  TRANSACTIONS_PENDING: { msb: 21, lsb: 21, access: "RO" },
});

export const PcieDevCap2 = defineLayout("PCIe device capabilities 2", 32, {
  COMPLETION_TIMEOUT_RANGES: { msb: 3, lsb: 0, access: "RO" },
  COMPLETION_TIMEOUT_DISABLE_SUPPORTED: { msb: 4, lsb: 4, access: "RO" },
});

export const PcieDevCtl2 = defineLayout("PCIe device control/status 2", 32, {
  COMPLETION_TIMEOUT_VALUE: { msb: 3, lsb: 0, access: "RW" },
  COMPLETION_TIMEOUT_DISABLE: { msb: 4, lsb: 4, access: "RW" },
});

/** Offsets inside the PCI Express capability. */
export const PcieCapOffset = { HEADER: 0x00, DEVCAP: 0x04, DEVCTL: 0x08, DEVCAP2: 0x24, DEVCTL2: 0x28 } as const;

// --- Extended capabilities --------------------------------------------------

export const ExtCapHeader = defineLayout("PCIe extended capability header", 32, {
  ID: { msb: 15, lsb: 0, access: "RO" },
  VERSION: { msb: 19, lsb: 16, access: "RO" },
  NEXT: { msb: 31, lsb: 20, access: "RO" },
});

/** PASID extended capability (0x1B), 8 bytes: the register at +4 (capability 15:0, control 31:16). */
export const PASID_CAP_SIZEOF = 8;
export const PasidCapCtl = defineLayout("PASID capability/control", 32, {
  EXEC_SUPPORTED: { msb: 1, lsb: 1, access: "RO" },
  PRIV_SUPPORTED: { msb: 2, lsb: 2, access: "RO" },
  MAX_PASID_WIDTH: { msb: 12, lsb: 8, access: "RO" },
  ENABLE: { msb: 16, lsb: 16, access: "RW" },
  EXEC_ENABLE: { msb: 17, lsb: 17, access: "RW" },
  PRIV_ENABLE: { msb: 18, lsb: 18, access: "RW" },
});

/** ATS extended capability (0x0F), 8 bytes: capability 15:0 and control 31:16 at +4. */
export const ATS_CAP_SIZEOF = 8;
export const AtsCapCtl = defineLayout("ATS capability/control", 32, {
  /** Invalidate Queue Depth; 0 means 32. */
  INVALIDATE_QUEUE_DEPTH: { msb: 4, lsb: 0, access: "RO" },
  PAGE_ALIGNED_REQUEST: { msb: 5, lsb: 5, access: "RO" },
  GLOBAL_INVALIDATE_SUPPORTED: { msb: 6, lsb: 6, access: "RO" },
  /** Smallest Translation Unit: 2^STU 4 KiB blocks. */
  STU: { msb: 20, lsb: 16, access: "RW" },
  ENABLE: { msb: 31, lsb: 31, access: "RW" },
});

/** PRI extended capability (0x13), 16 bytes: control/status at +4, capacity at +8, allocation at +0xC. */
export const PRI_CAP_SIZEOF = 16;
export const PriCtlSta = defineLayout("PRI control/status", 32, {
  ENABLE: { msb: 0, lsb: 0, access: "RW" },
  /** Clears the credit counter and pending-request state when Enable is (being) cleared; reads 0. */
  RESET: { msb: 1, lsb: 1, access: "WO" },
  RESPONSE_FAILURE: { msb: 16, lsb: 16, access: "RW1C" },
  UNEXPECTED_PRGI: { msb: 17, lsb: 17, access: "RW1C" },
  STOPPED: { msb: 24, lsb: 24, access: "RO" },
  PRG_RESPONSE_PASID_REQUIRED: { msb: 31, lsb: 31, access: "RO" },
});

export const PriOutstanding = defineLayout("PRI outstanding page requests", 64, {
  CAPACITY: { msb: 31, lsb: 0, access: "RO" },
  ALLOCATION: { msb: 63, lsb: 32, access: "RW" },
});
