import { Errno, KernelError } from "@vsva/kernel";
import { type DecodedField, checkReadBack } from "../register-image.js";
import type { SmmuConfig, SmmuOptions } from "./options.js";
import { Idr0Reg, Idr1Reg, Idr2Reg, Idr3Reg, Idr4Reg, Idr5Reg } from "./regs.js";

/**
 * SMMUv3 IDR0–IDR5 as images (SMMUv3 spec §6.3.1–§6.3.6): decoding an image
 * into the unit's named options, and encoding a configuration back.
 */

export const IDR_LAYOUTS = [Idr0Reg, Idr1Reg, Idr2Reg, Idr3Reg, Idr4Reg, Idr5Reg] as const;

/**
 * Fields that only report and change nothing the model does, so an image
 * may set them either way and they read back as given:
 * - IDR0.COHACC (coherent access to tables and queues): the model's memory is coherent;
 * - IDR0.DORMHINT: STATUSR.DORMANT is only a hint, the model never reports dormant;
 * - IDR4: IMPLEMENTATION DEFINED.
 */
export interface IdrReportedOnly {
  readonly cohacc?: number;
  readonly dormhint?: number;
  readonly idr4?: number;
}

/** Options that are a boolean of the unit's configuration too. */
type FlagKey = {
  [K in keyof SmmuConfig & keyof SmmuOptions]: SmmuConfig[K] extends boolean ? K : never;
}[keyof SmmuConfig & keyof SmmuOptions];
type Idr0Field = (typeof Idr0Reg.fieldNames)[number];
type Idr3Field = (typeof Idr3Reg.fieldNames)[number];

/** One-bit fields that are exactly a boolean option: declared once, for decoding and encoding. */
const IDR0_FLAGS: readonly (readonly [FlagKey, Idr0Field])[] = [
  ["stage2", "S2P"],
  ["stage1", "S1P"],
  ["hyp", "HYP"],
  ["ats", "ATS"],
  ["asid16", "ASID16"],
  ["msi", "MSI"],
  ["sev", "SEV"],
  ["pri", "PRI"],
  ["vmid16", "VMID16"],
  ["twoLevelCdTable", "CD2L"],
];
const IDR3_FLAGS: readonly (readonly [FlagKey, Idr3Field])[] = [
  ["had", "HAD"],
  ["xnx", "XNX"],
  ["ril", "RIL"],
];

const OAS_BITS: readonly number[] = [32, 36, 40, 42, 44, 48, 52];

function bad(msg: string): never {
  throw new KernelError(Errno.EINVAL, `SMMUv3: ${msg}`);
}

/** The named options an IDR0–IDR5 image stands for (EINVAL naming a field whose value the model cannot take). */
export function decodeIdrImage(idr: readonly Uint32Array[]): DecodedField<SmmuOptions>[] {
  const [i0, i1, , i3, , i5] = idr as [Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array];
  const r0 = Idr0Reg.decode(i0);
  const r1 = Idr1Reg.decode(i1);
  const r3 = Idr3Reg.decode(i3);
  const r5 = Idr5Reg.decode(i5);
  const out: DecodedField<SmmuOptions>[] = [];
  const add = (key: DecodedField<SmmuOptions>["key"], value: unknown, field: string): void => {
    out.push({ key, value, field });
  };
  for (const [key, f] of IDR0_FLAGS) add(key, r0[f] === 1, `IDR0.${f}`);
  for (const [key, f] of IDR3_FLAGS) add(key, r3[f] === 1, `IDR3.${f}`);
  if (r0.HTTU === 3) bad("IDR0.HTTU is 3 in the register image, a reserved value");
  add("httu", r0.HTTU, "IDR0.HTTU");
  if (r0.STALL_MODEL > 1) bad(`IDR0.STALL_MODEL is ${r0.STALL_MODEL} in the register image: only stall-and-terminate (0) and terminate (1) are modelled`);
  add("stall", r0.STALL_MODEL === 0, "IDR0.STALL_MODEL");
  if (r0.ST_LEVEL > 1) bad(`IDR0.ST_LEVEL is ${r0.ST_LEVEL} in the register image, a reserved value`);
  add("twoLevelStreamTable", r0.ST_LEVEL === 1, "IDR0.ST_LEVEL");
  add("sidBits", r1.SIDSIZE, "IDR1.SIDSIZE");
  add("ssidBits", r1.SSIDSIZE, "IDR1.SSIDSIZE");
  // PRIQS means nothing without PRI; the model then reports 0 (checked on read-back).
  if (r0.PRI === 1) add("priqBits", r1.PRIQS, "IDR1.PRIQS");
  add("eventqBits", r1.EVENTQS, "IDR1.EVENTQS");
  add("cmdqBits", r1.CMDQS, "IDR1.CMDQS");
  const oas = OAS_BITS[r5.OAS];
  if (oas === undefined) bad(`IDR5.OAS is ${r5.OAS} in the register image, a reserved value`);
  add("oas", oas, "IDR5.OAS");
  // STALL_MAX means nothing without stalls; the model then reports 0 (checked on read-back).
  if (r0.STALL_MODEL === 0) add("stallMax", r5.STALL_MAX, "IDR5.STALL_MAX");
  return out;
}

export function reportedOnlyOf(idr: readonly Uint32Array[]): IdrReportedOnly {
  const [i0, , , , i4] = idr as [Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array];
  return { cohacc: Idr0Reg.get(i0, "COHACC"), dormhint: Idr0Reg.get(i0, "DORMHINT"), idr4: Idr4Reg.get(i4, "IMPDEF") };
}

/** IDR0–IDR5 as a unit of this configuration reports them. */
export function encodeIdrs(c: SmmuConfig): Uint32Array[] {
  const b = (x: boolean): number => (x ? 1 : 0);
  const ro = c.reportedOnly;
  const f0: Partial<Record<Idr0Field, number>> = {
    TTF: 2, // AArch64 tables only
    COHACC: ro.cohacc ?? 1,
    DORMHINT: ro.dormhint ?? 0,
    HTTU: c.httu,
    TTENDIAN: 2, // little-endian only
    STALL_MODEL: c.stall ? 0 : 1,
    TERM_MODEL: 1,
    ST_LEVEL: b(c.twoLevelStreamTable),
  };
  for (const [key, f] of IDR0_FLAGS) f0[f] = b(c[key]);
  const idr0 = Idr0Reg.encode(f0);
  const idr1 = Idr1Reg.encode({
    SIDSIZE: c.sidBits,
    SSIDSIZE: c.ssidBits,
    PRIQS: c.pri ? c.priqBits : 0,
    EVENTQS: c.eventqBits,
    CMDQS: c.cmdqBits,
  });
  const idr2 = Idr2Reg.alloc();
  const f3: Partial<Record<Idr3Field, number>> = {};
  for (const [key, f] of IDR3_FLAGS) f3[f] = b(c[key]);
  const idr3 = Idr3Reg.encode(f3);
  const idr4 = Idr4Reg.encode({ IMPDEF: ro.idr4 ?? 0 });
  const idr5 = Idr5Reg.encode({ OAS: c.oasCode, GRAN4K: 1, STALL_MAX: c.stall ? c.stallMax : 0 });
  return [idr0, idr1, idr2, idr3, idr4, idr5];
}

const WHY: readonly Readonly<Record<string, string>>[] = [
  {
    TTF: "the model walks AArch64 tables only (TTF = 2)",
    BTM: "broadcast TLB maintenance is not modelled (CPU TLBIs do not reach the unit)",
    NS1ATS: "the model does not split stage-1 ATS",
    ATOS: "the address-translation operation registers are not modelled",
    VATOS: "the address-translation operation registers are not modelled",
    VMW: "VMID wildcards are not modelled",
    TTENDIAN: "the model reads tables little-endian only (TTENDIAN = 2)",
    TERM_MODEL: "terminated transactions always abort in the model (TERM_MODEL = 1)",
    ATSRECERR: "ATS error recording is not modelled",
    RME_IMPL: "the Realm Management Extension is not modelled",
  },
  {
    PRIQS: "the model reports PRIQS only with PRI (IDR0.PRI)",
    ATTR_PERMS_OVR: "attribute overrides are not modelled",
    ATTR_TYPES_OVR: "attribute overrides are not modelled",
    REL: "the model's tables and queues are not preset (REL = 0)",
    QUEUES_PRESET: "the model's queues are not preset",
    TABLES_PRESET: "the model's tables are not preset",
    ECMDQ: "enhanced command queues are not modelled",
  },
  { BA_VATOS: "the VATOS registers are not modelled" },
  {
    PBHA: "page-based hardware attributes are not modelled",
    PPS: "the model does not take PASID from PRI responses per stream",
    MPAM: "MPAM is not modelled",
    FWB: "stage-2 forced write-back is not modelled",
    STT: "small translation tables are not modelled",
    BBML: "break-before-make levels are not modelled",
    E0PD: "E0PD is not modelled",
    PTWNNC: "page-table walk non-cacheable attributes are not modelled",
    DPT: "the device permission table is not modelled",
  },
  {},
  {
    GRAN4K: "the model walks the 4 KiB granule (GRAN4K = 1)",
    GRAN16K: "the model walks the 4 KiB granule only",
    GRAN64K: "the model walks the 4 KiB granule only",
    VAX: "the model's VA size is 48 bits (VAX = 0)",
    STALL_MAX: "the model reports STALL_MAX only with the stall model (IDR0.STALL_MODEL = 0)",
  },
];

/** EINVAL naming the first field where the unit this configuration builds would not read back as the image. */
export function checkIdrReadBack(c: SmmuConfig, idr: readonly Uint32Array[]): void {
  const built = encodeIdrs(c);
  IDR_LAYOUTS.forEach((layout, i) => {
    checkReadBack<string>("SMMUv3", layout, built[i] ?? layout.alloc(), idr[i] ?? layout.alloc(), WHY[i] ?? {});
  });
}
