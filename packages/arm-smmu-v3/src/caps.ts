import { Errno, KernelError } from "@vsva/kernel";
import { Idr0Reg, Idr1Reg, Idr3Reg, Idr5Reg, SmmuReg, oasBits } from "@vsva/iommu-hw";
import { type Mmio, readReg } from "./mmio.js";

/** What the driver learned from IDR0, IDR1, IDR3 and IDR5 (`arm_smmu_device_hw_probe`). */
export interface SmmuCaps {
  readonly s1: boolean;
  readonly s2: boolean;
  /** IDR0.ST_LEVEL = 1: 2-level stream table. */
  readonly twoLevelStreamTable: boolean;
  /** IDR0.CD2L. */
  readonly twoLevelCdTable: boolean;
  readonly sidBits: number;
  readonly ssidBits: number;
  readonly ats: boolean;
  readonly pri: boolean;
  readonly asidBits: 8 | 16;
  readonly vmidBits: 8 | 16;
  /** IDR5.OAS as the code (CD.IPS / STE.S2PS) and in bits. */
  readonly oasCode: number;
  readonly oasBits: number;
  readonly gran4k: boolean;
  /** IDR0.COHACC: table walks and queue accesses are coherent. */
  readonly coherent: boolean;
  /** IDR0.HTTU: 0 none, 1 access flag, 2 access flag and dirty state. */
  readonly httu: number;
  readonly msi: boolean;
  /** IDR3.RIL: range invalidation (NUM/SCALE/TG in TLBI commands). */
  readonly ril: boolean;
  /** IDR0.STALL_MODEL = 1: stalls are not supported (terminate model only). */
  readonly stallForbidden: boolean;
  /** IDR0.STALL_MODEL = 2: every stream stalls (Linux's ARM_SMMU_FEAT_STALL_FORCE). */
  readonly stallForced: boolean;
  /** log2 of the maximum entries of each queue (IDR1). */
  readonly cmdqBits: number;
  readonly eventqBits: number;
  readonly priqBits: number;
}

/** IDR0.TTF: 2 = AArch64 tables only, 3 = both. */
const TTF_AARCH64 = 2;
/** IDR0.TTENDIAN: 0 mixed, 2 little-endian only. */
const TTENDIAN_BIG_ONLY = 3;

/** Reads the ID registers (`arm_smmu_device_hw_probe`). */
export function readCaps(mmio: Mmio): SmmuCaps {
  const idr0 = readReg(mmio, SmmuReg.IDR0, Idr0Reg);
  const idr1 = readReg(mmio, SmmuReg.IDR1, Idr1Reg);
  const idr3 = readReg(mmio, SmmuReg.IDR3, Idr3Reg);
  const idr5 = readReg(mmio, SmmuReg.IDR5, Idr5Reg);
  const g0 = (f: (typeof Idr0Reg.fieldNames)[number]): number => Idr0Reg.get(idr0, f);
  const g1 = (f: (typeof Idr1Reg.fieldNames)[number]): number => Idr1Reg.get(idr1, f);
  const oasCode = Idr5Reg.get(idr5, "OAS");
  return {
    s1: g0("S1P") === 1,
    s2: g0("S2P") === 1,
    twoLevelStreamTable: g0("ST_LEVEL") === 1,
    twoLevelCdTable: g0("CD2L") === 1,
    sidBits: g1("SIDSIZE"),
    ssidBits: g1("SSIDSIZE"),
    ats: g0("ATS") === 1,
    pri: g0("PRI") === 1,
    asidBits: g0("ASID16") === 1 ? 16 : 8,
    vmidBits: g0("VMID16") === 1 ? 16 : 8,
    oasCode,
    // A reserved OAS code: Linux warns and assumes 48 bits (`arm_smmu_device_hw_probe`).
    oasBits: oasBits(oasCode) ?? 48,
    gran4k: Idr5Reg.get(idr5, "GRAN4K") === 1,
    coherent: g0("COHACC") === 1,
    httu: g0("HTTU"),
    msi: g0("MSI") === 1,
    ril: Idr3Reg.get(idr3, "RIL") === 1,
    stallForbidden: g0("STALL_MODEL") === 1,
    stallForced: g0("STALL_MODEL") === 2,
    cmdqBits: g1("CMDQS"),
    eventqBits: g1("EVENTQS"),
    priqBits: g1("PRIQS"),
    ...checkTtf(g0("TTF"), g0("TTENDIAN")),
  };
}

function checkTtf(ttf: number, endian: number): Record<string, never> {
  if ((ttf & TTF_AARCH64) === 0) throw new KernelError(Errno.ENODEV, "SMMUv3 without AArch64 table support (IDR0.TTF)");
  if (endian === TTENDIAN_BIG_ONLY) throw new KernelError(Errno.ENODEV, "SMMUv3 with big-endian tables only (IDR0.TTENDIAN)");
  return {};
}

/**
 * Refuses a unit this driver cannot run: no translation stage, no 4 KiB
 * granule (every table here uses it), queues too small for a command and
 * its CMD_SYNC. ENODEV, as `arm_smmu_device_hw_probe` does.
 */
export function checkCaps(c: SmmuCaps, name: string): void {
  if (!c.s1 && !c.s2) throw new KernelError(Errno.ENODEV, `${name}: no translation stage supported`);
  if (!c.gran4k) throw new KernelError(Errno.ENODEV, `${name}: no 4 KiB granule`);
  if (c.cmdqBits < 1) throw new KernelError(Errno.ENODEV, `${name}: command queue too small`);
  if (c.sidBits < 1) throw new KernelError(Errno.ENODEV, `${name}: no StreamID bits`);
}
