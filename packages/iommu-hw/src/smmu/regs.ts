import { defineLayout } from "@vsva/pgtable";

/**
 * The SMMUv3 register file, declared once as data (SMMUv3 spec chapter 6). Each
 * layout gives bit ranges and access; the register file derives its write
 * masks and read-back from them. ID registers, the *ACK registers, GERROR
 * and the SMMU-written queue pointer fields are RO; bits no field covers
 * read as zero and ignore writes.
 *
 * Page 1 (at +0x10000) holds EVENTQ_PROD/CONS and PRIQ_PROD/CONS, as the
 * architecture places them; their page-0 twins are reserved here (QEMU
 * aliases them, SMMUv3 spec §6.3; Linux uses page 1).
 */
export const SmmuReg = {
  IDR0: 0x000,
  IDR1: 0x004,
  IDR2: 0x008,
  IDR3: 0x00c,
  IDR4: 0x010,
  IDR5: 0x014,
  IIDR: 0x018,
  AIDR: 0x01c,
  CR0: 0x020,
  CR0ACK: 0x024,
  CR1: 0x028,
  CR2: 0x02c,
  STATUSR: 0x040,
  GBPA: 0x044,
  IRQ_CTRL: 0x050,
  IRQ_CTRLACK: 0x054,
  GERROR: 0x060,
  GERRORN: 0x064,
  GERROR_IRQ_CFG0: 0x068,
  GERROR_IRQ_CFG1: 0x070,
  GERROR_IRQ_CFG2: 0x074,
  STRTAB_BASE: 0x080,
  STRTAB_BASE_CFG: 0x088,
  CMDQ_BASE: 0x090,
  CMDQ_PROD: 0x098,
  CMDQ_CONS: 0x09c,
  EVENTQ_BASE: 0x0a0,
  EVENTQ_IRQ_CFG0: 0x0b0,
  EVENTQ_IRQ_CFG1: 0x0b8,
  EVENTQ_IRQ_CFG2: 0x0bc,
  PRIQ_BASE: 0x0c0,
  PRIQ_IRQ_CFG0: 0x0d0,
  PRIQ_IRQ_CFG1: 0x0d8,
  PRIQ_IRQ_CFG2: 0x0dc,
  EVENTQ_PROD: 0x100a8,
  EVENTQ_CONS: 0x100ac,
  PRIQ_PROD: 0x100c8,
  PRIQ_CONS: 0x100cc,
} as const;

/** Two 64 KiB register pages. */
export const SMMU_REG_WINDOW = 0x20000;

const ro = (msb: number, lsb: number) => ({ msb, lsb, access: "RO" as const });

export const Idr0Reg = defineLayout("IDR0", 32, {
  S2P: ro(0, 0), S1P: ro(1, 1), TTF: ro(3, 2), COHACC: ro(4, 4), BTM: ro(5, 5), HTTU: ro(7, 6), DORMHINT: ro(8, 8),
  HYP: ro(9, 9), ATS: ro(10, 10), NS1ATS: ro(11, 11), ASID16: ro(12, 12), MSI: ro(13, 13), SEV: ro(14, 14), ATOS: ro(15, 15),
  PRI: ro(16, 16), VMW: ro(17, 17), VMID16: ro(18, 18), CD2L: ro(19, 19), VATOS: ro(20, 20), TTENDIAN: ro(22, 21),
  ATSRECERR: ro(23, 23), STALL_MODEL: ro(25, 24), TERM_MODEL: ro(26, 26), ST_LEVEL: ro(28, 27), RME_IMPL: ro(30, 30),
});

export const Idr1Reg = defineLayout("IDR1", 32, {
  SIDSIZE: ro(5, 0), SSIDSIZE: ro(10, 6), PRIQS: ro(15, 11), EVENTQS: ro(20, 16), CMDQS: ro(25, 21),
  ATTR_PERMS_OVR: ro(26, 26), ATTR_TYPES_OVR: ro(27, 27), REL: ro(28, 28), QUEUES_PRESET: ro(29, 29), TABLES_PRESET: ro(30, 30), ECMDQ: ro(31, 31),
});

export const Idr2Reg = defineLayout("IDR2", 32, { BA_VATOS: ro(9, 0) });

export const Idr3Reg = defineLayout("IDR3", 32, {
  HAD: ro(2, 2), PBHA: ro(3, 3), XNX: ro(4, 4), PPS: ro(5, 5), MPAM: ro(7, 7), FWB: ro(8, 8), STT: ro(9, 9),
  RIL: ro(10, 10), BBML: ro(12, 11), E0PD: ro(13, 13), PTWNNC: ro(14, 14), DPT: ro(15, 15),
});

export const Idr4Reg = defineLayout("IDR4", 32, { IMPDEF: ro(31, 0) });

export const Idr5Reg = defineLayout("IDR5", 32, {
  OAS: ro(2, 0), GRAN4K: ro(4, 4), GRAN16K: ro(5, 5), GRAN64K: ro(6, 6), VAX: ro(11, 10), STALL_MAX: ro(31, 16),
});

/** IIDR field positions are our reading of the spec (neither QEMU nor Linux decodes them); the values are ours. */
export const IidrReg = defineLayout("IIDR", 32, { IMPLEMENTER: ro(11, 0), REVISION: ro(15, 12), VARIANT: ro(19, 16), PRODUCTID: ro(31, 20) });
export const AidrReg = defineLayout("AIDR", 32, { ARCH_MINOR: ro(3, 0), ARCH_MAJOR: ro(7, 4) });

const cr0Fields = { SMMUEN: [0, 0], PRIQEN: [1, 1], EVENTQEN: [2, 2], CMDQEN: [3, 3], ATSCHK: [4, 4], VMW: [8, 6] } as const;
export const Cr0Reg = defineLayout("CR0", 32, cr0Fields);
export const Cr0AckReg = defineLayout("CR0ACK", 32, {
  SMMUEN: ro(0, 0), PRIQEN: ro(1, 1), EVENTQEN: ro(2, 2), CMDQEN: ro(3, 3), ATSCHK: ro(4, 4), VMW: ro(8, 6),
});
export const Cr1Reg = defineLayout("CR1", 32, {
  QUEUE_IC: [1, 0], QUEUE_OC: [3, 2], QUEUE_SH: [5, 4], TABLE_IC: [7, 6], TABLE_OC: [9, 8], TABLE_SH: [11, 10],
});
export const Cr2Reg = defineLayout("CR2", 32, { E2H: [0, 0], RECINVSID: [1, 1], PTM: [2, 2] });
export const StatusrReg = defineLayout("STATUSR", 32, { DORMANT: ro(0, 0) });

/** GBPA: sub-field positions other than ABORT and UPDATE are our reading of the spec (SMMUv3 spec §6.3, SMMU_GBPA): not in QEMU or Linux. */
export const GbpaReg = defineLayout("GBPA", 32, {
  MEMATTR: [3, 0], MTCFG: [4, 4], ALLOCCFG: [11, 8], SHCFG: [13, 12], PRIVCFG: [17, 16], INSTCFG: [19, 18], ABORT: [20, 20], UPDATE: [31, 31],
});

export const IrqCtrlReg = defineLayout("IRQ_CTRL", 32, { GERROR_IRQEN: [0, 0], PRIQ_IRQEN: [1, 1], EVENTQ_IRQEN: [2, 2] });
export const IrqCtrlAckReg = defineLayout("IRQ_CTRLACK", 32, { GERROR_IRQEN: ro(0, 0), PRIQ_IRQEN: ro(1, 1), EVENTQ_IRQEN: ro(2, 2) });

/** GERROR (SMMUv3 spec §6.3): SMMU-written, read-only to software. GERRORN: software's acknowledgement (toggle semantics). */
export const GerrorReg = defineLayout("GERROR", 32, {
  CMDQ_ERR: ro(0, 0), EVTQ_ABT_ERR: ro(2, 2), PRIQ_ABT_ERR: ro(3, 3), MSI_CMDQ_ABT_ERR: ro(4, 4),
  MSI_EVTQ_ABT_ERR: ro(5, 5), MSI_PRIQ_ABT_ERR: ro(6, 6), MSI_GERROR_ABT_ERR: ro(7, 7), SFM_ERR: ro(8, 8),
});
export const GerrornReg = defineLayout("GERRORN", 32, {
  CMDQ_ERR: [0, 0], EVTQ_ABT_ERR: [2, 2], PRIQ_ABT_ERR: [3, 3], MSI_CMDQ_ABT_ERR: [4, 4],
  MSI_EVTQ_ABT_ERR: [5, 5], MSI_PRIQ_ABT_ERR: [6, 6], MSI_GERROR_ABT_ERR: [7, 7], SFM_ERR: [8, 8],
});
export type GerrorBit = (typeof GerrorReg.fieldNames)[number];

export const IrqCfg0Reg = defineLayout("IRQ_CFG0", 64, { ADDR: [51, 2] });
export const IrqCfg1Reg = defineLayout("IRQ_CFG1", 32, { DATA: [31, 0] });
export const IrqCfg2Reg = defineLayout("IRQ_CFG2", 32, { MEMATTR: [3, 0], SH: [5, 4] });

export const StrtabBaseReg = defineLayout("STRTAB_BASE", 64, { ADDR: [51, 6], RA: [62, 62] });
export const StrtabBaseCfgReg = defineLayout("STRTAB_BASE_CFG", 32, { LOG2SIZE: [5, 0], SPLIT: [10, 6], FMT: [17, 16] });

/** CMDQ_BASE / EVENTQ_BASE / PRIQ_BASE: bit 62 is RA for the command queue, WA for the others. */
export const QueueBaseReg = defineLayout("Q_BASE", 64, { LOG2SIZE: [4, 0], ADDR: [51, 5], RWA: [62, 62] });
/**
 * Queue pointers: index in bits LOG2SIZE−1:0 and the wrap bit at LOG2SIZE
 * (IDR1 allows at most 2^19 entries, so 20 bits). Which side may write
 * them is enforced by the unit (a consumer's pointer is hardware's to move
 * once the queue is enabled).
 */
export const CmdqProdReg = defineLayout("CMDQ_PROD", 32, { WR: [19, 0] });
export const CmdqConsReg = defineLayout("CMDQ_CONS", 32, { RD: [19, 0], ERR: ro(30, 24) });
export const OutqProdReg = defineLayout("Q_PROD", 32, { WR: [19, 0], OVFLG: [31, 31] });
export const OutqConsReg = defineLayout("Q_CONS", 32, { RD: [19, 0], OVACKFLG: [31, 31] });

/** CMDQ_CONS.ERR codes (SMMUv3 spec §6.3). */
export const CmdqError = { NONE: 0, ILL: 1, ABT: 2, ATC_INV_SYNC: 3 } as const;
