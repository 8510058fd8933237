import { type KnownKeys, rejectUnknownKeys } from "../options-check.js";
import { image32, mergeImageOptions } from "../register-image.js";
import { type IdrReportedOnly, checkIdrReadBack, decodeIdrImage, reportedOnlyOf } from "./idr-image.js";
import { Errno, KernelError, type Scheduler, type TraceBus } from "@vsva/kernel";
import type { SmmuTrap } from "../trap.js";
import { type PhysMem, MAX_OA_BITS_4K, oasCode } from "@vsva/pgtable";

/** An interrupt the unit signals: an MSI (`addr` ≠ 0, from *_IRQ_CFG0/1) or the wired line (`addr` = 0). */
export interface SmmuInterrupt {
  readonly source: "gerror" | "eventq" | "priq" | "cmd-sync" | "sev";
  readonly addr: number;
  readonly data: number;
}

export interface SmmuCacheSizes {
  readonly ste?: number;
  readonly cd?: number;
  readonly tlb?: number;
  readonly s1WalkCache?: number;
  readonly s2WalkCache?: number;
}

/**
 * Construction options: the capabilities IDR0–IDR5 report (and the unit
 * then honours), its memory, caches, and how it runs its command queue.
 * Defaults describe an SMMUv3.1 with both stages, 2-level stream and CD
 * tables, 20-bit SubstreamIDs, 16-bit StreamIDs, ATS, PRI, 16-bit ASIDs and
 * VMIDs, 48-bit OAS, the 4 KiB granule, HTTU (access flag and dirty), MSIs
 * and no stall.
 */
export interface SmmuOptions {
  readonly mem: PhysMem;
  /** IDR0.S1P / S2P (default true). */
  readonly stage1?: boolean;
  readonly stage2?: boolean;
  /** IDR0.ST_LEVEL: 2-level stream table (default true). */
  readonly twoLevelStreamTable?: boolean;
  /** IDR0.CD2L (default true). */
  readonly twoLevelCdTable?: boolean;
  /** IDR1.SSIDSIZE, 0..20 (default 20). */
  readonly ssidBits?: number;
  /** IDR1.SIDSIZE, 1..32 (default 16). */
  readonly sidBits?: number;
  readonly ats?: boolean;
  readonly pri?: boolean;
  readonly asid16?: boolean;
  readonly vmid16?: boolean;
  /** IDR5.OAS in bits: 32, 36, 40, 42, 44, 48 or 52 (default 48; walks stop at 48 with the 4 KiB granule). */
  readonly oas?: number;
  /** IDR0.HTTU: 0 none, 1 access flag, 2 access flag and dirty state (default 2). */
  readonly httu?: 0 | 1 | 2;
  /**
   * Stall model: false (default) advertises terminate-only (IDR0.STALL_MODEL = 1)
   * and refuses CD.S = 1, STE.S2S = 1 and STE.S1STALLD = 1 (as QEMU does); true
   * advertises stall and terminate (STALL_MODEL = 0) and holds faulting
   * transactions of streams set to stall until CMD_RESUME / CMD_STALL_TERM.
   */
  readonly stall?: boolean;
  /**
   * IDR5.STALL_MAX: how many transactions may be stalled at once (1..65535,
   * default 64). A fault that would stall beyond it is terminated. STAGs are
   * the lowest free tags, so they stay below this.
   */
  readonly stallMax?: number;
  /** IDR0.HYP: EL2 stream worlds and the TLBI_EL2_* commands (default false). */
  readonly hyp?: boolean;
  /** IDR3.XNX (default false), IDR3.RIL (default true), IDR3.HAD (default true). */
  readonly xnx?: boolean;
  readonly ril?: boolean;
  readonly had?: boolean;
  /** IDR0.MSI (default true), IDR0.SEV (default true). */
  readonly msi?: boolean;
  readonly sev?: boolean;
  /** log2 of the maximum queue sizes in IDR1 (default 19, 19, 19; 8 for PRI is enough for most). */
  readonly cmdqBits?: number;
  readonly eventqBits?: number;
  readonly priqBits?: number;
  readonly caches?: SmmuCacheSizes;
  /** "immediate" runs commands inside the CMDQ_PROD write; otherwise a work item on this scheduler does. */
  readonly commands?: "immediate" | { readonly scheduler: Scheduler };
  readonly trace?: TraceBus;
  /** Name in traces (e.g. "smmu0"). */
  readonly name?: string;
  readonly onInterrupt?: (irq: SmmuInterrupt) => void;
  /** Trap points for a VMM (register accesses, fetched commands); absent, the unit is the model alone. */
  readonly trap?: SmmuTrap;
  /**
   * IDR0–IDR5 as 32-bit images (SMMUv3 spec §6.3.1–§6.3.6), to make the unit match a real
   * part. The images decode to the named options (a named option given as well must
   * agree), and IDR0–IDR5 then read back exactly the images; a field the model cannot
   * report that way is EINVAL naming it (the package README lists them).
   */
  readonly idr?: readonly [number, number, number, number, number, number];
}

export interface SmmuConfig {
  readonly stage1: boolean;
  readonly stage2: boolean;
  readonly twoLevelStreamTable: boolean;
  readonly twoLevelCdTable: boolean;
  readonly ssidBits: number;
  readonly sidBits: number;
  readonly ats: boolean;
  readonly pri: boolean;
  readonly asid16: boolean;
  readonly vmid16: boolean;
  readonly oas: number;
  readonly oasCode: number;
  /** min(OAS, 48): what walks and table addresses can reach with the 4 KiB granule. */
  readonly oaBits: number;
  readonly httu: 0 | 1 | 2;
  readonly stall: boolean;
  readonly stallMax: number;
  readonly hyp: boolean;
  readonly xnx: boolean;
  readonly ril: boolean;
  readonly had: boolean;
  readonly msi: boolean;
  readonly sev: boolean;
  readonly cmdqBits: number;
  readonly eventqBits: number;
  readonly priqBits: number;
  /** Fields that only report (see idr-image.ts), as an image gave them; empty without an image. */
  readonly reportedOnly: IdrReportedOnly;
  readonly name: string;
}

function bad(msg: string): never {
  throw new KernelError(Errno.EINVAL, `SMMUv3: ${msg}`);
}

function intIn(name: string, v: number, lo: number, hi: number): number {
  if (!Number.isInteger(v) || v < lo || v > hi) bad(`${name} ${v} is outside ${lo}..${hi}`);
  return v;
}

const OPTION_KEYS: KnownKeys<SmmuOptions> = {
  mem: true, stage1: true, stage2: true, twoLevelStreamTable: true, twoLevelCdTable: true, ssidBits: true, sidBits: true,
  ats: true, pri: true, asid16: true, vmid16: true, oas: true, httu: true, stall: true, stallMax: true, hyp: true, xnx: true,
  ril: true, had: true, msi: true, sev: true, cmdqBits: true, eventqBits: true, priqBits: true, caches: true, commands: true,
  trace: true, name: true, onInterrupt: true, trap: true, idr: true,
};
const CACHE_KEYS: KnownKeys<SmmuCacheSizes> = { ste: true, cd: true, tlb: true, s1WalkCache: true, s2WalkCache: true };

/** Applies defaults and refuses unknown keys and impossible capability sets (EINVAL says which). */
export function resolveSmmuConfig(opts: SmmuOptions): SmmuConfig {
  rejectUnknownKeys("SMMUv3", "option", opts, OPTION_KEYS);
  rejectUnknownKeys("SMMUv3", "caches option", opts.caches, CACHE_KEYS);
  let o = opts;
  let image: Uint32Array[] | null = null;
  if (opts.idr !== undefined) {
    const given: unknown = opts.idr;
    if (!Array.isArray(given) || given.length !== 6) bad("the register image must be the six values IDR0..IDR5");
    image = (given as unknown[]).map((v, i) => image32("SMMUv3", `IDR${i}`, v));
    o = mergeImageOptions("SMMUv3", opts, decodeIdrImage(image));
  }
  const stage1 = o.stage1 ?? true;
  const stage2 = o.stage2 ?? true;
  if (!stage1 && !stage2) bad("at least one of stage 1 and stage 2 must be supported");
  const oas = o.oas ?? 48;
  const code = oasCode(oas);
  if (code === undefined) bad(`OAS ${oas} is not one of 32, 36, 40, 42, 44, 48, 52`);
  const ssidBits = intIn("SSID size", o.ssidBits ?? 20, 0, 20);
  const pri = o.pri ?? true;
  const ats = o.ats ?? true;
  if (pri && !ats) bad("PRI needs ATS");
  // Checked at run time too: options may come from a caller that is not type-checked.
  const httuIn: number = o.httu ?? 2;
  if (httuIn !== 0 && httuIn !== 1 && httuIn !== 2) bad(`HTTU ${String(httuIn)} is not 0, 1 or 2`);
  const httu: 0 | 1 | 2 = httuIn;
  const cfg: SmmuConfig = {
    stage1,
    stage2,
    twoLevelStreamTable: o.twoLevelStreamTable ?? true,
    twoLevelCdTable: o.twoLevelCdTable ?? true,
    ssidBits,
    sidBits: intIn("SID size", o.sidBits ?? 16, 1, 32),
    ats,
    pri,
    asid16: o.asid16 ?? true,
    vmid16: o.vmid16 ?? true,
    oas,
    oasCode: code,
    oaBits: Math.min(oas, MAX_OA_BITS_4K),
    httu,
    stall: o.stall ?? false,
    stallMax: intIn("STALL_MAX", o.stallMax ?? 64, 1, 0xffff),
    hyp: o.hyp ?? false,
    xnx: o.xnx ?? false,
    ril: o.ril ?? true,
    had: o.had ?? true,
    msi: o.msi ?? true,
    sev: o.sev ?? true,
    cmdqBits: intIn("CMDQS", o.cmdqBits ?? 19, 1, 19),
    eventqBits: intIn("EVENTQS", o.eventqBits ?? 19, 1, 19),
    priqBits: intIn("PRIQS", o.priqBits ?? 19, 1, 19),
    reportedOnly: image === null ? {} : reportedOnlyOf(image),
    name: o.name ?? "smmu",
  };
  if (image !== null) checkIdrReadBack(cfg, image);
  return cfg;
}
