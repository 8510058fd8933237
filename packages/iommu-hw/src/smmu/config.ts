import { type PhysMem, armLevelShift, oasBits, s1StartLevel, s2Geometry, type ArmS1Config, type ArmS2Config, type ArmWalkResult } from "@vsva/pgtable";
import type { SmmuConfig } from "./options.js";
import { CD_BYTES, Cd, EventId, L1Cd, L1Std, L1_DESC_BYTES, S1Fmt, STE_BYTES, Ste, SteConfig, Strw, TG0_4K, TG1_4K } from "./structures.js";

/**
 * Locating and decoding STEs and CDs (SMMUv3 spec §5.2, §5.4). Every problem
 * becomes the event the SMMU reports (C_BAD_STREAMID, F_STE_FETCH,
 * C_BAD_STE, C_BAD_SUBSTREAMID, F_CD_FETCH, C_BAD_CD, or a stage-2 fault of
 * the CD fetch when nested); nothing in memory can make these throw.
 * Decoded entries are plain data, so a cached copy can be compared with a
 * fresh fetch by the structure-cache checker.
 */

/** STRTAB_BASE / STRTAB_BASE_CFG as the unit reads them. */
export interface StreamTableRegs {
  readonly base: number;
  readonly log2size: number;
  readonly split: number;
  readonly fmt: number;
}

/** What went wrong fetching a structure: the event, and the addresses its record carries. */
export interface ConfigFault {
  readonly event: number;
  /** Address of the descriptor that could not be fetched (F_STE_FETCH, F_CD_FETCH). */
  readonly fetchAddr: number;
  /** A stage-2 fault while fetching a CD of a nested stream (CLASS = CD). */
  readonly s2: boolean;
  readonly ipa: number;
  /** Why, in words (traces and tests). */
  readonly why: string;
}

export type SteKind = "abort" | "bypass" | "s1" | "s2" | "nested";

/** A decoded, validated STE. */
export interface SteInfo {
  readonly fault: ConfigFault | null;
  readonly kind: SteKind;
  readonly s1Fmt: number;
  readonly ctxPtr: number;
  readonly cdMax: number;
  readonly s1dss: number;
  readonly eats: number;
  readonly strw: number;
  readonly vmid: number;
  readonly s2: ArmS2Config | null;
  /** S2R: record stage-2 translation-class faults. */
  readonly s2r: boolean;
  /** S2S: stage-2 translation-class faults stall (stall model only). */
  readonly s2s: boolean;
  /** S1STALLD: stage-1 stalls are disabled for this stream (a CD with S = 1 is then C_BAD_CD). */
  readonly s1stalld: boolean;
}

/** A decoded, validated CD. */
export interface CdInfo {
  readonly fault: ConfigFault | null;
  readonly asid: number;
  /** TTB0 walk, or null when EPD0 (every TTB0-range access then faults). */
  readonly ttb0: ArmS1Config | null;
  readonly ttb1: ArmS1Config | null;
  /** R: record translation-class faults. */
  readonly record: boolean;
  readonly stall: boolean;
  readonly aset: boolean;
}

const noFault = null;

function cfgFault(event: number, why: string, fetchAddr = 0): ConfigFault {
  return { event, fetchAddr, s2: false, ipa: 0, why };
}

const EMPTY_STE: Omit<SteInfo, "fault"> = { kind: "abort", s1Fmt: 0, ctxPtr: 0, cdMax: 0, s1dss: 0, eats: 0, strw: 0, vmid: 0, s2: null, s2r: false, s2s: false, s1stalld: false };
const EMPTY_CD: Omit<CdInfo, "fault"> = { asid: 0, ttb0: null, ttb1: null, record: false, stall: false, aset: false };

function steFault(f: ConfigFault): SteInfo {
  return { ...EMPTY_STE, fault: f };
}

export function cdFault(f: ConfigFault): CdInfo {
  return { ...EMPTY_CD, fault: f };
}

/** Scratch buffers for one fetcher (no allocation per fetch beyond the decoded result). */
export class ConfigScratch {
  readonly ste = Ste.alloc();
  readonly cd = Cd.alloc();
  readonly l1 = L1Std.alloc();
}

/** Reads and validates the STE of `sid`. */
export function fetchSte(mem: PhysMem, st: StreamTableRegs, sid: number, cfg: SmmuConfig, s: ConfigScratch): SteInfo {
  const sidBits = Math.min(st.log2size, cfg.sidBits);
  if (!Number.isInteger(sid) || sid < 0 || sid >= 2 ** sidBits) return steFault(cfgFault(EventId.C_BAD_STREAMID, `StreamID ${sid} is beyond 2^${sidBits}`));
  let steAddr: number;
  if (st.fmt === 0 || (st.fmt === 1 && !cfg.twoLevelStreamTable)) {
    steAddr = st.base + sid * STE_BYTES;
  } else if (st.fmt === 1) {
    const split = st.split;
    const l1Addr = st.base + Math.floor(sid / 2 ** split) * L1_DESC_BYTES;
    if (!L1Std.read(mem, l1Addr, s.l1)) return steFault(cfgFault(EventId.F_STE_FETCH, "level-1 stream-table descriptor fetch aborted", l1Addr));
    const span = L1Std.get(s.l1, "SPAN");
    const l2Index = sid % 2 ** split;
    // Linux writes SPAN = SPLIT + 1: the L2 table has 2^(SPAN−1) STEs (⚠ QEMU accepts one power of two more, SMMUv3 spec §5.1).
    if (span === 0) return steFault(cfgFault(EventId.C_BAD_STREAMID, "level-1 descriptor SPAN = 0"));
    if (l2Index >= 2 ** (span - 1)) return steFault(cfgFault(EventId.C_BAD_STREAMID, `StreamID ${sid} is beyond the level-2 table's 2^${span - 1} STEs`));
    steAddr = L1Std.getAddr(s.l1, "L2PTR") + l2Index * STE_BYTES;
  } else {
    return steFault(cfgFault(EventId.C_BAD_STREAMID, `STRTAB_BASE_CFG.FMT ${st.fmt} is reserved`));
  }
  const v = s.ste;
  if (!Ste.read(mem, steAddr, v)) return steFault(cfgFault(EventId.F_STE_FETCH, "STE fetch aborted", steAddr));
  return decodeSte(v, cfg);
}

function badSte(why: string): SteInfo {
  return steFault(cfgFault(EventId.C_BAD_STE, why));
}

/** Validates an STE (QEMU hw/arm/smmuv3.c: decode_ste(), and the decisions noted inline). */
export function decodeSte(v: Uint32Array, cfg: SmmuConfig): SteInfo {
  const g = (f: Parameters<typeof Ste.get>[1]): number => Ste.get(v, f);
  if (g("V") === 0) return badSte("V = 0");
  const config = g("CONFIG");
  if ((config & 4) === 0) return { ...EMPTY_STE, fault: noFault, kind: "abort" };
  const strw = g("STRW");
  const eats = g("EATS");
  if (eats !== 0 && !cfg.ats) return badSte(`EATS ${eats} without ATS support`);
  if (eats === 3) return badSte("EATS = 3 is reserved");
  if (strw !== Strw.NSEL1 && !(strw === Strw.EL2 && cfg.hyp)) return badSte(`STRW ${strw} is not supported`);
  if (config === SteConfig.BYPASS) return { ...EMPTY_STE, fault: noFault, kind: "bypass", eats, strw };
  const useS1 = (config & 1) !== 0;
  const useS2 = (config & 2) !== 0;
  if (useS1 && !cfg.stage1) return badSte("stage 1 is not implemented");
  if (useS2 && !cfg.stage2) return badSte("stage 2 is not implemented");
  if (useS2 && strw === Strw.EL2) return badSte("an EL2 stream world has no stage 2");
  // Stage-1-only streams are still tagged with S2VMID when stage 2 is implemented (our reading of the spec); otherwise VMID 0.
  const vmid = cfg.stage2 ? g("S2VMID") & (cfg.vmid16 ? 0xffff : 0xff) : 0;

  let s2: ArmS2Config | null = null;
  if (useS2) {
    if (g("S2AA64") === 0) return badSte("S2AA64 = 0 (only AArch64 tables are modelled)");
    if (g("S2ENDI") === 1) return badSte("S2ENDI = 1 (little-endian tables only)");
    if (g("S2S") === 1 && !cfg.stall) return badSte("S2S = 1 without a stall model");
    if (g("S2HA") === 1 && cfg.httu < 1) return badSte("S2HA without HTTU");
    if (g("S2HD") === 1 && cfg.httu < 2) return badSte("S2HD without HTTU dirty support");
    if (g("S2TG") !== TG0_4K) return badSte(`S2TG ${g("S2TG")}: only the 4 KiB granule is implemented`);
    const geo = s2Geometry(g("S2T0SZ"), g("S2SL0"), cfg.oaBits);
    if (typeof geo === "string") return badSte(geo);
    const ps = oasBits(g("S2PS"));
    if (ps === undefined) return badSte("S2PS = 7 is reserved");
    const outputBits = Math.min(ps, cfg.oaBits);
    // The start-level table (all concatenated tables) is aligned to its size; lower S2TTB bits are RES0.
    const align = 8 * 2 ** (geo.inputBits - armLevelShift(geo.startLevel));
    const ttb = Math.floor(Ste.getAddr(v, "S2TTB") / align) * align;
    if (ttb >= 2 ** outputBits) return badSte("S2TTB is beyond the stage-2 output size");
    s2 = {
      ttb,
      inputBits: geo.inputBits,
      startLevel: geo.startLevel,
      outputBits,
      affd: g("S2AFFD") === 1,
      ha: g("S2HA") === 1,
      hd: g("S2HD") === 1,
      ptw: g("S2PTW") === 1,
      xnx: cfg.xnx,
    };
  }

  let s1Fmt = 0;
  let ctxPtr = 0;
  let cdMax = 0;
  let s1dss = 0;
  if (useS1) {
    cdMax = g("S1CDMAX");
    if (cdMax > cfg.ssidBits) return badSte(`S1CDMax ${cdMax} is beyond SSIDSIZE ${cfg.ssidBits}`);
    s1Fmt = cdMax === 0 ? S1Fmt.LINEAR : g("S1FMT");
    if (s1Fmt === 3) return badSte("S1Fmt = 3 is reserved");
    if (s1Fmt !== S1Fmt.LINEAR && !cfg.twoLevelCdTable) return badSte("a 2-level CD table without CD2L");
    if (g("S1STALLD") === 1 && !cfg.stall) return badSte("S1STALLD without a stall model (QEMU's check)");
    ctxPtr = Ste.getAddr(v, "S1CONTEXTPTR");
    // In a nested stream the pointer is an IPA, checked when stage 2 translates it.
    if (!useS2 && ctxPtr >= 2 ** cfg.oaBits) return badSte("S1ContextPtr is beyond the output address size");
    s1dss = g("S1DSS");
    if (cdMax !== 0 && s1dss === 3) return badSte("S1DSS = 3 is reserved");
  }
  return {
    fault: noFault,
    kind: useS1 && useS2 ? "nested" : useS1 ? "s1" : "s2",
    s1Fmt,
    ctxPtr,
    cdMax,
    s1dss,
    eats,
    strw,
    vmid,
    s2,
    s2r: useS2 && g("S2R") === 1,
    s2s: useS2 && g("S2S") === 1,
    s1stalld: useS1 && g("S1STALLD") === 1,
  };
}

/** Translates an IPA of a CD or L1 CD descriptor through stage 2 (nested streams). */
export type CdStage2 = (ipa: number) => ArmWalkResult;

/** Reads and validates the CD of `ssid` (0 for the single CD, and for S1DSS = SSID0). */
export function fetchCd(mem: PhysMem, ste: SteInfo, ssid: number, cfg: SmmuConfig, s: ConfigScratch, stage2?: CdStage2): CdInfo {
  const xlate = (ipa: number): number | CdInfo => {
    if (stage2 === undefined) return ipa;
    const r = stage2(ipa);
    if (r.ok) return r.pa;
    return cdFault({ event: s2Event(r), fetchAddr: r.fetchAddr, s2: true, ipa, why: `stage 2 ${r.kind ?? "fault"} on the CD fetch` });
  };
  let cdIpa: number;
  if (ste.cdMax === 0) cdIpa = ste.ctxPtr;
  else if (ssid >= 2 ** ste.cdMax) return cdFault(cfgFault(EventId.C_BAD_SUBSTREAMID, `SubstreamID ${ssid} is beyond 2^${ste.cdMax}`));
  else if (ste.s1Fmt === S1Fmt.LINEAR) cdIpa = ste.ctxPtr + ssid * CD_BYTES;
  else {
    const leafBits = ste.s1Fmt === S1Fmt.L2_64K ? 10 : 6;
    const l1Ipa = ste.ctxPtr + Math.floor(ssid / 2 ** leafBits) * L1_DESC_BYTES;
    const l1Pa = xlate(l1Ipa);
    if (typeof l1Pa !== "number") return l1Pa;
    if (!L1Cd.read(mem, l1Pa, s.l1)) return cdFault(cfgFault(EventId.F_CD_FETCH, "level-1 CD descriptor fetch aborted", l1Pa));
    if (L1Cd.get(s.l1, "V") === 0) return cdFault(cfgFault(EventId.C_BAD_SUBSTREAMID, `level-1 CD descriptor for SubstreamID ${ssid} is invalid`));
    cdIpa = L1Cd.getAddr(s.l1, "L2PTR") + (ssid % 2 ** leafBits) * CD_BYTES;
  }
  const cdPa = xlate(cdIpa);
  if (typeof cdPa !== "number") return cdPa;
  if (!Cd.read(mem, cdPa, s.cd)) return cdFault(cfgFault(EventId.F_CD_FETCH, "CD fetch aborted", cdPa));
  return decodeCd(s.cd, cfg);
}

function badCd(why: string): CdInfo {
  return cdFault(cfgFault(EventId.C_BAD_CD, why));
}

/** Validates a CD (SMMUv3 spec §5.4 and QEMU's decode_cd checks). */
export function decodeCd(v: Uint32Array, cfg: SmmuConfig): CdInfo {
  const g = (f: Parameters<typeof Cd.get>[1]): number => Cd.get(v, f);
  if (g("V") === 0) return badCd("V = 0");
  if (g("AA64") === 0) return badCd("AA64 = 0 (only AArch64 tables are modelled)");
  if (g("ENDI") === 1) return badCd("ENDI = 1 (little-endian tables only)");
  if (g("HA") === 1 && cfg.httu < 1) return badCd("HA without HTTU");
  if (g("HD") === 1 && cfg.httu < 2) return badCd("HD without HTTU dirty support");
  if (g("S") === 1 && !cfg.stall) return badCd("S = 1 without a stall model");
  // TERM_MODEL = 1 (abort only): QEMU requires A = 1 and so do we.
  if (g("A") === 0) return badCd("A = 0 with TERM_MODEL = 1");
  const ips = oasBits(g("IPS"));
  if (ips === undefined) return badCd("IPS = 7 is reserved");
  const outputBits = Math.min(ips, cfg.oaBits);
  const common = { outputBits, affd: g("AFFD") === 1, ha: g("HA") === 1, hd: g("HD") === 1 };
  const side = (epd: number, tsz: number, tg: number, tg4k: number, ttbField: "TTB0" | "TTB1", had: number, upper: boolean): ArmS1Config | null | string => {
    if (epd === 1) return null;
    if (tg !== tg4k) return `${ttbField} granule ${tg}: only the 4 KiB granule is implemented`;
    if (tsz < 16 || tsz > 39) return `${ttbField === "TTB0" ? "T0SZ" : "T1SZ"} ${tsz} is outside 16..39`;
    const inputBits = 64 - tsz;
    const align = 8 * 2 ** (inputBits - armLevelShift(s1StartLevel(inputBits)));
    const ttb = Math.floor(Cd.getAddr(v, ttbField) / align) * align;
    if (ttb >= 2 ** outputBits) return `${ttbField} is beyond the IPS`;
    return { ttb, inputBits, upper, ...common, had: cfg.had && had === 1 };
  };
  const t0 = side(g("EPD0"), g("T0SZ"), g("TG0"), TG0_4K, "TTB0", g("HAD0"), false);
  if (typeof t0 === "string") return badCd(t0);
  const t1 = side(g("EPD1"), g("T1SZ"), g("TG1"), TG1_4K, "TTB1", g("HAD1"), true);
  if (typeof t1 === "string") return badCd(t1);
  return {
    fault: noFault,
    asid: g("ASID") & (cfg.asid16 ? 0xffff : 0xff),
    ttb0: t0,
    ttb1: t1,
    record: g("R") === 1,
    stall: g("S") === 1,
    aset: g("ASET") === 1,
  };
}

/** The event of a walk fault. */
export function s2Event(r: ArmWalkResult): number {
  switch (r.kind) {
    case "address-size":
      return EventId.F_ADDR_SIZE;
    case "access":
      return EventId.F_ACCESS;
    case "permission":
      return EventId.F_PERMISSION;
    case "external-abort":
      return EventId.F_WALK_EABT;
    default:
      return EventId.F_TRANSLATION;
  }
}
