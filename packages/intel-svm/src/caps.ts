import { Errno, KernelError } from "@vsva/kernel";
import { CapReg, EcapReg, RegOffset } from "@vsva/iommu-hw";
import { type VtdMmio, readReg64 } from "./mmio.js";

/**
 * What a VT-d unit can do, read once from CAP and ECAP at probe (spec-facts
 * A1.3/A1.4), in the terms the driver decides on. The raw registers are kept
 * for the vendor part of the nesting info a vIOMMU mirrors.
 */
export interface VtdCaps {
  readonly cap: bigint;
  readonly ecap: bigint;
  /** Domain IDs the unit tags with: 2^(4 + 2·ND). */
  readonly domainIds: number;
  readonly cachingMode: boolean;
  readonly writeBufferFlush: boolean;
  /** Second-level widths the unit walks (SAGAW): subset of 39, 48, 57. */
  readonly slWidths: readonly (39 | 48 | 57)[];
  /** Maximum guest address width in bits (MGAW + 1). */
  readonly mgaw: number;
  readonly sl2m: boolean;
  readonly sl1g: boolean;
  readonly fl1g: boolean;
  readonly fl5: boolean;
  readonly maxAddressMask: number;
  readonly coherent: boolean;
  readonly deviceTlb: boolean;
  /** ECAP.DIT: device-TLB invalidations carry the PF's source ID (PFSID). */
  readonly deviceTlbThrottling: boolean;
  readonly passThrough: boolean;
  readonly snoopControl: boolean;
  readonly nesting: boolean;
  readonly pageRequests: boolean;
  readonly supervisorRequests: boolean;
  readonly executeRequests: boolean;
  readonly extendedAccessed: boolean;
  /** PASID width the unit supports (PSS + 1), 0 without ECAP.PASID. */
  readonly pasidBits: number;
  readonly pageDrain: boolean;
  readonly firstLevel: boolean;
  readonly secondLevel: boolean;
  readonly smPageWalkCoherent: boolean;
  readonly virtualCommand: boolean;
}

const SAGAW_WIDTHS: readonly (readonly [bit: number, width: 39 | 48 | 57])[] = [
  [1, 39],
  [2, 48],
  [3, 57],
];

/** Decodes CAP/ECAP. */
export function readCaps(mmio: VtdMmio): VtdCaps {
  const c = readReg64(mmio, RegOffset.CAP, CapReg);
  const e = readReg64(mmio, RegOffset.ECAP, EcapReg);
  const cap = (BigInt(c[1] ?? 0) << 32n) | BigInt(c[0] ?? 0);
  const ecap = (BigInt(e[1] ?? 0) << 32n) | BigInt(e[0] ?? 0);
  const C = (f: Parameters<typeof CapReg.get>[1]): number => CapReg.get(c, f);
  const E = (f: Parameters<typeof EcapReg.get>[1]): boolean => EcapReg.get(e, f) === 1;
  const sagaw = C("SAGAW");
  const sllps = C("SLLPS");
  return {
    cap,
    ecap,
    domainIds: 2 ** (4 + 2 * C("ND")),
    cachingMode: C("CM") === 1,
    writeBufferFlush: C("RWBF") === 1,
    slWidths: SAGAW_WIDTHS.filter(([bit]) => (sagaw & (1 << bit)) !== 0).map(([, w]) => w),
    mgaw: C("MGAW") + 1,
    sl2m: (sllps & 1) !== 0,
    sl1g: (sllps & 2) !== 0,
    fl1g: C("FL1GP") === 1,
    fl5: C("FL5LP") === 1,
    maxAddressMask: C("MAMV"),
    coherent: E("C"),
    deviceTlb: E("DT"),
    deviceTlbThrottling: E("DIT"),
    passThrough: E("PT"),
    snoopControl: E("SC"),
    nesting: E("NEST"),
    pageRequests: E("PRS"),
    supervisorRequests: E("SRS"),
    executeRequests: E("ERS"),
    extendedAccessed: E("EAFS"),
    pasidBits: E("PASID") ? EcapReg.get(e, "PSS") + 1 : 0,
    pageDrain: E("PDS"),
    firstLevel: E("FLTS"),
    secondLevel: E("SLTS"),
    smPageWalkCoherent: E("SMPWCS"),
    virtualCommand: E("VCS"),
  };
}

/**
 * Refuses a unit this driver cannot run (ENODEV, as `intel_iommu_init`
 * skips such a unit): the driver is scalable-mode only, so it needs SMTS,
 * queued invalidation (register-based invalidation cannot express PASID
 * flushes), second-level translation for DMA domains, and a width it can
 * build tables for.
 */
export function checkCaps(caps: VtdCaps, name: string): void {
  const missing: string[] = [];
  const e = caps.ecap;
  if (((e >> 43n) & 1n) === 0n) missing.push("scalable mode (ECAP.SMTS)");
  if (((e >> 1n) & 1n) === 0n) missing.push("queued invalidation (ECAP.QI)");
  if (!caps.secondLevel) missing.push("second-level translation (ECAP.SLTS)");
  if (caps.slWidths.length === 0) missing.push("a second-level width (CAP.SAGAW)");
  if (missing.length > 0) throw new KernelError(Errno.ENODEV, `${name}: unit lacks ${missing.join(", ")}`);
}

/**
 * The second-level width a new paging domain gets: 48 bits (4 levels) when
 * the unit walks it, as Linux's default domain width is reduced to what
 * SAGAW supports; otherwise the widest the unit supports.
 */
export function defaultSlWidth(caps: VtdCaps): 39 | 48 | 57 {
  if (caps.slWidths.includes(48)) return 48;
  const widest = caps.slWidths[caps.slWidths.length - 1];
  if (widest === undefined) throw new KernelError(Errno.ENODEV, "unit supports no second-level width");
  return widest;
}

/** PASID-entry AW encoding of a second-level width (A2.4: levels = AW + 2). */
export const awOf = (width: 39 | 48 | 57): 1 | 2 | 3 => (width === 39 ? 1 : width === 48 ? 2 : 3);
export const levelsOf = (width: 39 | 48 | 57): 3 | 4 | 5 => (width === 39 ? 3 : width === 48 ? 4 : 5);
