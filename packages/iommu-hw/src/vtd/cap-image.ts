import { Errno, KernelError } from "@vsva/kernel";
import { type DecodedField, checkReadBack } from "../register-image.js";
import type { VtdConfig, VtdOptions } from "./options.js";
import { CapReg, EcapReg } from "./regs.js";

/**
 * VT-d CAP and ECAP as images (VT-d spec §10.4.2 CAP_REG, §10.4.3 ECAP_REG):
 * decoding an image into the unit's named options, and encoding a
 * configuration back into the two registers.
 */

type CapField = (typeof CapReg.fieldNames)[number];
type EcapField = (typeof EcapReg.fieldNames)[number];

/**
 * Fields that only report and change nothing the model does, so an image
 * may set them either way and they read back as given:
 * - CAP.ZLR (zero-length reads): no request in the model has length zero;
 * - CAP.RWBF: GCMD.WBF completes at once, so requiring it changes nothing;
 * - CAP.DWD / DRD (write/read draining): every DMA has completed before an invalidation runs (one thread);
 * - ECAP.C and SMPWCS (page-walk coherency): the model's memory is coherent, a cache flush by software is a no-op;
 * - ECAP.MHMV (interrupt-entry handle mask): only meaningful with interrupt remapping, which is off (IR = 0).
 */
export const CAP_REPORTED_ONLY = ["ZLR", "RWBF", "DWD", "DRD"] as const satisfies readonly CapField[];
export const ECAP_REPORTED_ONLY = ["C", "SMPWCS", "MHMV"] as const satisfies readonly EcapField[];

export type CapReportedOnly = Readonly<Partial<Record<(typeof CAP_REPORTED_ONLY)[number], number>>>;
export type EcapReportedOnly = Readonly<Partial<Record<(typeof ECAP_REPORTED_ONLY)[number], number>>>;

/** What the model does instead, for the fields an image cannot change. */
const CAP_WHY: Partial<Record<CapField, string>> = {
  AFL: "advanced fault logging is not modelled (fault-recording registers only)",
  PLMR: "protected memory regions are not modelled",
  PHMR: "protected memory regions are not modelled",
  PSI: "the model always implements page-selective invalidation",
  PI: "posted interrupts are not modelled",
};
const ECAP_WHY: Partial<Record<EcapField, string>> = {
  IR: "interrupt remapping is not modelled",
  EIM: "interrupt remapping (x2APIC mode) is not modelled",
  NWFS: "the model always honours the write permission of translation requests",
  PASID: "the model always supports PASIDs (ECAP.PSS sets their width)",
  SMTS: "this model is a scalable-mode unit (legacy and advanced translation are not modelled)",
  PDS: "the model reports page drain exactly when it handles page requests (ECAP.PRS)",
};

/** Options that are a boolean of the unit's configuration too. */
type FlagKey = {
  [K in keyof VtdConfig & keyof VtdOptions]: VtdConfig[K] extends boolean ? K : never;
}[keyof VtdConfig & keyof VtdOptions];

/** One-bit fields that are exactly a boolean option: declared once, for decoding and encoding. */
const CAP_FLAGS: readonly (readonly [FlagKey, CapField])[] = [
  ["cachingMode", "CM"],
  ["firstLevel1g", "FL1GP"],
  ["firstLevel5", "FL5LP"],
];
const ECAP_FLAGS: readonly (readonly [FlagKey, EcapField])[] = [
  ["queuedInvalidation", "QI"],
  ["deviceTlb", "DT"],
  ["passThrough", "PT"],
  ["snoopControl", "SC"],
  ["nesting", "NEST"],
  ["pageRequests", "PRS"],
  ["executeRequests", "ERS"],
  ["supervisorRequests", "SRS"],
  ["extendedAccessed", "EAFS"],
  ["deviceTlbThrottling", "DIT"],
  ["virtualCommand", "VCS"],
  ["secondLevelAd", "SLADS"],
  ["secondLevel", "SLTS"],
  ["firstLevel", "FLTS"],
  ["ridPasid", "RPS"],
];

const WIDTH_OF_SAGAW_BIT: Readonly<Record<number, 39 | 48 | 57>> = { 1: 39, 2: 48, 3: 57 };

function bad(msg: string): never {
  throw new KernelError(Errno.EINVAL, `VT-d unit: ${msg}`);
}

/** The named options a CAP/ECAP image stands for (EINVAL naming a field whose value the model cannot take). */
export function decodeCapImage(cap: Uint32Array, ecap: Uint32Array): DecodedField<VtdOptions>[] {
  const c = CapReg.decode(cap);
  const e = EcapReg.decode(ecap);
  // Checked first: without it nothing else in the image describes a unit this model can be.
  if (e.SMTS === 0) bad(`ECAP.SMTS is 0 in the register image, but ${String(ECAP_WHY.SMTS)}`);
  const out: DecodedField<VtdOptions>[] = [];
  const add = (key: DecodedField<VtdOptions>["key"], value: unknown, field: string): void => {
    out.push({ key, value, field });
  };
  for (const [key, f] of CAP_FLAGS) add(key, c[f] === 1, `CAP.${f}`);
  for (const [key, f] of ECAP_FLAGS) add(key, e[f] === 1, `ECAP.${f}`);
  add("domainIdBits", 4 + 2 * c.ND, "CAP.ND");
  const widths: (39 | 48 | 57)[] = [];
  for (let bit = 0; bit < 5; bit++) {
    if ((c.SAGAW & (1 << bit)) === 0) continue;
    const w = WIDTH_OF_SAGAW_BIT[bit];
    if (w === undefined) bad(`CAP.SAGAW bit ${bit} is set in the register image: only 39-, 48- and 57-bit second-level tables (bits 1-3) are modelled`);
    widths.push(w);
  }
  add("secondLevelWidths", widths, "CAP.SAGAW");
  add("mgaw", c.MGAW + 1, "CAP.MGAW");
  add("faultRecordOffset", c.FRO * 16, "CAP.FRO");
  if (c.SLLPS > 3) bad(`CAP.SLLPS is ${c.SLLPS} in the register image: only 2 MiB and 1 GiB second-level pages (bits 0 and 1) are modelled`);
  add("secondLevel2m", (c.SLLPS & 1) !== 0, "CAP.SLLPS");
  add("secondLevel1g", (c.SLLPS & 2) !== 0, "CAP.SLLPS");
  add("faultRecords", c.NFR + 1, "CAP.NFR");
  add("maxAddressMask", c.MAMV, "CAP.MAMV");
  add("iotlbOffset", e.IRO * 16, "ECAP.IRO");
  add("pasidBits", e.PSS + 1, "ECAP.PSS");
  return out;
}

/** The reported-only fields of an image, to be read back as given. */
export function reportedOnlyOf(cap: Uint32Array, ecap: Uint32Array): { cap: CapReportedOnly; ecap: EcapReportedOnly } {
  const c: Partial<Record<(typeof CAP_REPORTED_ONLY)[number], number>> = {};
  for (const f of CAP_REPORTED_ONLY) c[f] = CapReg.get(cap, f);
  const e: Partial<Record<(typeof ECAP_REPORTED_ONLY)[number], number>> = {};
  for (const f of ECAP_REPORTED_ONLY) e[f] = EcapReg.get(ecap, f);
  return { cap: c, ecap: e };
}

/** CAP and ECAP as a unit of this configuration reports them. */
export function encodeCaps(c: VtdConfig): { cap: Uint32Array; ecap: Uint32Array } {
  const b = (x: boolean): number => (x ? 1 : 0);
  const capFields: Partial<Record<CapField, number>> = {
    ND: c.nd,
    SAGAW: c.sagaw,
    MGAW: c.mgaw - 1,
    FRO: c.faultRecordOffset / 16,
    SLLPS: b(c.secondLevel2m) | (b(c.secondLevel1g) << 1),
    PSI: 1,
    NFR: c.faultRecords - 1,
    MAMV: c.maxAddressMask,
  };
  for (const [key, f] of CAP_FLAGS) capFields[f] = b(c[key]);
  const ecapFields: Partial<Record<EcapField, number>> = {
    // Page walks are coherent by default (memory is coherent); an image may say otherwise.
    C: 1,
    SMPWCS: 1,
    IRO: c.iotlbOffset / 16,
    PSS: c.pasidBits - 1,
    PASID: 1,
    PDS: b(c.pageRequests),
    SMTS: 1,
  };
  for (const [key, f] of ECAP_FLAGS) ecapFields[f] = b(c[key]);
  return { cap: CapReg.encode({ ...capFields, ...c.reportedOnly.cap }), ecap: EcapReg.encode({ ...ecapFields, ...c.reportedOnly.ecap }) };
}

/** EINVAL naming the first field where the unit this configuration builds would not read back as the image. */
export function checkCapReadBack(c: VtdConfig, cap: Uint32Array, ecap: Uint32Array): void {
  const built = encodeCaps(c);
  checkReadBack("VT-d unit", CapReg, built.cap, cap, CAP_WHY);
  checkReadBack("VT-d unit", EcapReg, built.ecap, ecap, ECAP_WHY);
}
