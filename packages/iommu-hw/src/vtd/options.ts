import { Errno, KernelError, type Scheduler, type TraceBus } from "@vsva/kernel";
import type { PhysMem } from "@vsva/pgtable";
import type { VtdTrap } from "../trap.js";
import { type KnownKeys, rejectUnknownKeys } from "../options-check.js";
import { image64, mergeImageOptions } from "../register-image.js";
import { type CapReportedOnly, type EcapReportedOnly, checkCapReadBack, decodeCapImage, reportedOnlyOf } from "./cap-image.js";
import { DEFAULT_FRO, DEFAULT_IRO, REG_WINDOW, RegOffset } from "./regs.js";

/** An interrupt the unit raises through one of its MSI register sets. */
export interface VtdInterrupt {
  readonly source: "fault" | "invalidation" | "page-request";
  readonly addr: number;
  readonly data: number;
}

export interface VtdCacheSizes {
  readonly context?: number;
  readonly pasid?: number;
  readonly iotlb?: number;
  readonly firstLevelPsc?: number;
  readonly secondLevelPsc?: number;
}

/**
 * Construction options of a VT-d unit: its capabilities (what CAP/ECAP
 * report and what the unit then honours), its memory, its caches and how it
 * runs its invalidation queue. Defaults describe a scalable-mode unit with
 * 20-bit PASIDs, 4/5-level first level, nesting, PRI and ATS.
 */
export interface VtdOptions {
  /** Memory the unit reads tables and queues from (host RAM, or a guest's view for a vIOMMU). */
  readonly mem: PhysMem;
  /** Host address width (HAW) in bits; default `mem.addrBits`. */
  readonly hostAddrBits?: number;
  /** Second-level widths supported (CAP.SAGAW): subset of 39, 48, 57; default [39, 48] plus 57 when `mgaw` is 57. */
  readonly secondLevelWidths?: readonly (39 | 48 | 57)[];
  /** Maximum guest address width (CAP.MGAW + 1); default 57 if 57 is supported, else 48. */
  readonly mgaw?: number;
  /** CAP.FL5LP: first-level 5-level paging (default true). */
  readonly firstLevel5?: boolean;
  /** CAP.FL1GP: first-level 1 GiB pages (default true). */
  readonly firstLevel1g?: boolean;
  /** CAP.SLLPS: second-level 2 MiB / 1 GiB pages (default both). */
  readonly secondLevel2m?: boolean;
  readonly secondLevel1g?: boolean;
  /** ECAP.FLTS / SLTS / NEST / PT. */
  readonly firstLevel?: boolean;
  readonly secondLevel?: boolean;
  readonly nesting?: boolean;
  readonly passThrough?: boolean;
  /** PASID width in bits, 1..20 (ECAP.PSS = bits − 1); default 20. */
  readonly pasidBits?: number;
  /** ECAP.PRS (page requests), DT (device TLB), SRS, ERS, EAFS, SC (default: true, true, true, true, false, false). */
  readonly pageRequests?: boolean;
  readonly deviceTlb?: boolean;
  readonly supervisorRequests?: boolean;
  readonly executeRequests?: boolean;
  readonly extendedAccessed?: boolean;
  readonly snoopControl?: boolean;
  /** ECAP.SLADS: second-level accessed/dirty (default false). */
  readonly secondLevelAd?: boolean;
  /**
   * ECAP.DIT, device-TLB invalidation throttling (default false): device-TLB
   * and PASID-based device-TLB descriptors then carry the PF's source ID
   * (PFSID, VT-d spec 6.5.2.5 / 6.5.2.6); without it those bits are reserved.
   * Needs `deviceTlb`.
   */
  readonly deviceTlbThrottling?: boolean;
  /**
   * ECAP.QI, queued invalidation (default true). Without it GCMD.QIE has no effect (GSTS.QIES
   * stays 0, IQA/IQH/IQT are inert) and software invalidates through the registers: CCMD for the
   * context cache and the IOTLB registers for the IOTLB (VT-d spec §6.5.1), both modelled. There is
   * no register form of PASID-cache, PASID-based IOTLB, device-TLB or page-response operations, so
   * `deviceTlb` (ECAP.DT, which the spec ties to QI) and `pageRequests` must be off with it.
   */
  readonly queuedInvalidation?: boolean;
  /** CAP.CM: caching mode, not-present results are cached too (vIOMMUs set it). */
  readonly cachingMode?: boolean;
  /** CAP.ND: 2^(4+2·ND) domain IDs (default 6, 64K). */
  readonly domainIdBits?: 4 | 6 | 8 | 10 | 12 | 14 | 16;
  /** Number of fault-recording registers, 1..16 (default 8). */
  readonly faultRecords?: number;
  /** CAP.MAMV (default 18). */
  readonly maxAddressMask?: number;
  /** Version reported in VER (default 3.0, the first with scalable mode). */
  readonly version?: { readonly major: number; readonly minor: number };
  /**
   * ECAP.RPS, RID_PASID support (default true): requests without a PASID use the scalable-mode
   * context entry's RID_PASID. Without it that field is reserved (VT-d spec §9.4) and such
   * requests use PASID 0.
   */
  readonly ridPasid?: boolean;
  /** CAP.FRO × 16: byte offset of the fault-recording registers in the register window (default 0x400). */
  readonly faultRecordOffset?: number;
  /** ECAP.IRO × 16: byte offset of the IOTLB register block (IVA, IOTLB) in the window (default 0x500). */
  readonly iotlbOffset?: number;
  /**
   * CAP and ECAP as 64-bit images (VT-d spec §10.4.2, §10.4.3), to make the unit match a real
   * part: both or neither. The image decodes to the named options (a named option given as
   * well must agree), and the unit's CAP and ECAP then read back exactly the image; a field
   * the model cannot report that way is EINVAL naming it (the package README lists them).
   */
  readonly cap?: bigint;
  readonly ecap?: bigint;
  /** ECAP.VCS and VCCAP.PAS: the virtual command interface (a vIOMMU; its trap answers the commands). Default false: the registers are holes. */
  readonly virtualCommand?: boolean;
  /** Trap points for a VMM (register accesses, fetched descriptors, virtual commands); absent, the unit is the model alone. */
  readonly trap?: VtdTrap;
  readonly caches?: VtdCacheSizes;
  /**
   * How the invalidation queue runs: "immediate" consumes descriptors inside
   * the IQT write; otherwise each IQT write queues a work item on this
   * scheduler, so the window between submission and completion is observable.
   */
  readonly invalidation?: "immediate" | { readonly scheduler: Scheduler };
  readonly trace?: TraceBus;
  /** Name used in trace events (e.g. "dmar0"). */
  readonly name?: string;
  /** Interrupt delivery (the MSI the fault, invalidation and page-request event registers describe). */
  readonly onInterrupt?: (irq: VtdInterrupt) => void;
}

/** The options after defaults and validation: what the unit actually is. */
export interface VtdConfig {
  readonly hostAddrBits: number;
  readonly sagaw: number;
  readonly mgaw: number;
  readonly firstLevel5: boolean;
  readonly firstLevel1g: boolean;
  readonly secondLevel2m: boolean;
  readonly secondLevel1g: boolean;
  readonly firstLevel: boolean;
  readonly secondLevel: boolean;
  readonly nesting: boolean;
  readonly passThrough: boolean;
  readonly pasidBits: number;
  readonly pageRequests: boolean;
  readonly deviceTlb: boolean;
  readonly supervisorRequests: boolean;
  readonly executeRequests: boolean;
  readonly extendedAccessed: boolean;
  readonly snoopControl: boolean;
  readonly secondLevelAd: boolean;
  readonly deviceTlbThrottling: boolean;
  readonly queuedInvalidation: boolean;
  readonly cachingMode: boolean;
  readonly nd: number;
  readonly faultRecords: number;
  readonly maxAddressMask: number;
  readonly version: { readonly major: number; readonly minor: number };
  readonly virtualCommand: boolean;
  readonly ridPasid: boolean;
  readonly faultRecordOffset: number;
  readonly iotlbOffset: number;
  /** Fields that only report (see cap-image.ts), as an image gave them; empty without an image. */
  readonly reportedOnly: { readonly cap: CapReportedOnly; readonly ecap: EcapReportedOnly };
  readonly name: string;
}

const WIDTH_BIT: Record<39 | 48 | 57, number> = { 39: 1 << 1, 48: 1 << 2, 57: 1 << 3 };

function bad(msg: string): never {
  throw new KernelError(Errno.EINVAL, `VT-d unit: ${msg}`);
}

const OPTION_KEYS: KnownKeys<VtdOptions> = {
  mem: true, hostAddrBits: true, secondLevelWidths: true, mgaw: true, firstLevel5: true, firstLevel1g: true, secondLevel2m: true,
  secondLevel1g: true, firstLevel: true, secondLevel: true, nesting: true, passThrough: true, pasidBits: true, pageRequests: true,
  deviceTlb: true, supervisorRequests: true, executeRequests: true, extendedAccessed: true, snoopControl: true, secondLevelAd: true,
  deviceTlbThrottling: true, queuedInvalidation: true, cachingMode: true, domainIdBits: true, faultRecords: true, maxAddressMask: true,
  version: true, virtualCommand: true, ridPasid: true, faultRecordOffset: true, iotlbOffset: true, cap: true, ecap: true, trap: true, caches: true, invalidation: true, trace: true, name: true, onInterrupt: true,
};
const CACHE_KEYS: KnownKeys<VtdCacheSizes> = { context: true, pasid: true, iotlb: true, firstLevelPsc: true, secondLevelPsc: true };

/** Applies defaults and refuses unknown keys and inconsistent capability sets. EINVAL names what was wrong. */
export function resolveConfig(opts: VtdOptions): VtdConfig {
  rejectUnknownKeys("VT-d unit", "option", opts, OPTION_KEYS);
  rejectUnknownKeys("VT-d unit", "caches option", opts.caches, CACHE_KEYS);
  let o = opts;
  let image: { readonly cap: Uint32Array; readonly ecap: Uint32Array } | null = null;
  if (opts.cap !== undefined || opts.ecap !== undefined) {
    if (opts.cap === undefined || opts.ecap === undefined) bad("a register image needs both CAP and ECAP");
    image = { cap: image64("VT-d unit", "CAP", opts.cap), ecap: image64("VT-d unit", "ECAP", opts.ecap) };
    o = mergeImageOptions("VT-d unit", opts, decodeCapImage(image.cap, image.ecap));
  }
  const hostAddrBits = o.hostAddrBits ?? o.mem.addrBits;
  if (!Number.isInteger(hostAddrBits) || hostAddrBits < 32 || hostAddrBits > 52) bad(`host address width ${hostAddrBits} is outside 32..52`);
  const widths = o.secondLevelWidths ?? (o.mgaw === 57 ? [39, 48, 57] : [39, 48]);
  let sagaw = 0;
  for (const w of widths) {
    const bit = WIDTH_BIT[w] as number | undefined;
    if (bit === undefined) bad(`second-level width ${String(w)} is not one of 39, 48, 57`);
    sagaw |= bit;
  }
  const maxWidth = Math.max(48, ...widths);
  const mgaw = o.mgaw ?? maxWidth;
  if (!Number.isInteger(mgaw) || mgaw < 39 || mgaw > 57) bad(`MGAW ${mgaw} is outside 39..57`);
  const pasidBits = o.pasidBits ?? 20;
  if (!Number.isInteger(pasidBits) || pasidBits < 1 || pasidBits > 20) bad(`PASID width ${pasidBits} is outside 1..20 bits`);
  const faultRecords = o.faultRecords ?? 8;
  if (!Number.isInteger(faultRecords) || faultRecords < 1 || faultRecords > 16) bad(`${faultRecords} fault-recording registers is outside 1..16`);
  const maxAddressMask = o.maxAddressMask ?? 18;
  if (!Number.isInteger(maxAddressMask) || maxAddressMask < 0 || maxAddressMask > 63) bad(`MAMV ${maxAddressMask} is outside 0..63`);
  const domainIdBits = o.domainIdBits ?? 16;
  const nd = (domainIdBits - 4) / 2;
  if (!Number.isInteger(nd) || nd < 0 || nd > 6) bad(`${domainIdBits} domain-ID bits is not one of 4, 6, ..., 16`);
  const firstLevel = o.firstLevel ?? true;
  const secondLevel = o.secondLevel ?? true;
  const nesting = o.nesting ?? true;
  if (nesting && !(firstLevel && secondLevel)) bad("nesting needs both first- and second-level translation");
  if (sagaw === 0 && secondLevel) bad("second-level translation needs at least one supported width");
  const queuedInvalidation = o.queuedInvalidation ?? true;
  const deviceTlb = o.deviceTlb ?? queuedInvalidation;
  // ECAP.DT: an implementation reporting device-TLB support must report QI too (VT-d spec §10.4.3).
  if (deviceTlb && !queuedInvalidation) bad("device-TLB support (ECAP.DT) needs queued invalidation (ECAP.QI)");
  const deviceTlbThrottling = o.deviceTlbThrottling ?? false;
  if (deviceTlbThrottling && !deviceTlb) bad("device-TLB invalidation throttling (DIT) needs device-TLB support (DT)");
  const pageRequests = o.pageRequests ?? queuedInvalidation;
  // Page-group responses are descriptors in the invalidation queue (VT-d spec chapter 7); there is no register form.
  if (pageRequests && !queuedInvalidation) bad("page requests (ECAP.PRS) need queued invalidation (ECAP.QI) for page-group responses");
  const version = o.version ?? { major: 3, minor: 0 };
  if (version.major < 3) bad(`version ${version.major}.${version.minor} has no scalable mode (needs 3.0 or later)`);
  const virtualCommand = o.virtualCommand ?? false;
  const faultRecordOffset = o.faultRecordOffset ?? DEFAULT_FRO * 16;
  const iotlbOffset = o.iotlbOffset ?? DEFAULT_IRO * 16;
  checkBlocks(faultRecordOffset, faultRecords, iotlbOffset, virtualCommand);
  const cfg: VtdConfig = {
    hostAddrBits,
    sagaw,
    mgaw,
    firstLevel5: o.firstLevel5 ?? true,
    firstLevel1g: o.firstLevel1g ?? true,
    secondLevel2m: o.secondLevel2m ?? true,
    secondLevel1g: o.secondLevel1g ?? true,
    firstLevel,
    secondLevel,
    nesting,
    passThrough: o.passThrough ?? true,
    pasidBits,
    pageRequests,
    deviceTlb,
    supervisorRequests: o.supervisorRequests ?? true,
    executeRequests: o.executeRequests ?? true,
    extendedAccessed: o.extendedAccessed ?? false,
    snoopControl: o.snoopControl ?? false,
    secondLevelAd: o.secondLevelAd ?? false,
    deviceTlbThrottling,
    queuedInvalidation,
    cachingMode: o.cachingMode ?? false,
    nd,
    faultRecords,
    maxAddressMask,
    version,
    virtualCommand,
    ridPasid: o.ridPasid ?? true,
    faultRecordOffset,
    iotlbOffset,
    reportedOnly: image === null ? { cap: {}, ecap: {} } : reportedOnlyOf(image.cap, image.ecap),
    name: o.name ?? "dmar",
  };
  if (image !== null) checkCapReadBack(cfg, image.cap, image.ecap);
  return cfg;
}

/** Where the fixed registers end (PEUADDR is the last, at 0xec), and where the virtual command registers sit. */
const FIXED_END = RegOffset.PEUADDR + 4;
const VCMD_BLOCK = { start: RegOffset.VCCAP, end: RegOffset.VCRSP + 8 } as const;

/**
 * The fault-recording registers (CAP.FRO) and the IOTLB block (ECAP.IRO) are placed by the
 * implementation (VT-d spec §10.4.2, §10.4.3): here they must be 16-byte aligned, inside the
 * window after the fixed registers, and clear of each other and of the virtual command registers.
 */
function checkBlocks(fro: number, records: number, iro: number, vcmd: boolean): void {
  const blocks = [
    { what: "fault-recording registers (CAP.FRO)", start: fro, end: fro + 16 * records },
    { what: "IOTLB registers (ECAP.IRO)", start: iro, end: iro + 16 },
  ];
  for (const b of blocks) {
    if (!Number.isInteger(b.start) || b.start % 16 !== 0) bad(`${b.what} at ${String(b.start)} is not a 16-byte-aligned offset`);
    if (b.start < FIXED_END || b.end > REG_WINDOW) {
      bad(`${b.what} at 0x${b.start.toString(16)}..0x${b.end.toString(16)} are outside 0x${FIXED_END.toString(16)}..0x${REG_WINDOW.toString(16)}`);
    }
    if (vcmd && b.start < VCMD_BLOCK.end && VCMD_BLOCK.start < b.end) bad(`${b.what} at 0x${b.start.toString(16)} overlap the virtual command registers`);
  }
  const [f, i] = blocks as [(typeof blocks)[0], (typeof blocks)[0]];
  if (f.start < i.end && i.start < f.end) bad(`${f.what} at 0x${f.start.toString(16)} overlap the ${i.what} at 0x${i.start.toString(16)}`);
}

/** Levels of a second-level table for PASID-entry AW (1 → 3, 2 → 4, 3 → 5), if the unit supports it. */
export function slLevelsForAw(cfg: VtdConfig, aw: number): 3 | 4 | 5 | undefined {
  if (aw < 1 || aw > 3 || (cfg.sagaw & (1 << aw)) === 0) return undefined;
  return (aw + 2) as 3 | 4 | 5;
}
