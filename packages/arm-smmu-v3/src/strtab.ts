import { Errno, KernelError } from "@vsva/kernel";
import { L1Std, L1_DESC_BYTES, type PhysMem, STE_BYTES, Ste, SteConfig, StrtabBaseCfgReg, StrtabBaseReg, SmmuReg } from "@vsva/iommu-hw";
import type { PageAllocator } from "@vsva/iommu-core";
import type { SmmuCaps } from "./caps.js";
import { type SmmuMmio, writeReg } from "./mmio.js";

/** 2-level split: 256 STEs (16 KiB) per level-2 table, as Linux's STRTAB_SPLIT (linux-anchor §5). */
export const STRTAB_SPLIT = 8;
/** STE.SHCFG = 1: use the incoming shareability (STRTAB_STE_1_SHCFG_INCOMING). */
export const SHCFG_INCOMING = 1;
/** Level-1 table of at most 2^11 descriptors (16 KiB): StreamIDs beyond 19 bits are refused (ENODEV). Linux allows 2^17; our page pool is small. */
const MAX_L1_BITS = 11;
/** A linear table above 2^8 STEs is worth splitting once the unit can (Linux goes 2-level whenever ST_LEVEL allows). */
const LINEAR_MAX_BITS = 8;

/**
 * The stream table (`arm_smmu_init_strtab`): linear when the unit has no
 * 2-level format or few StreamIDs, else a level-1 array of descriptors
 * whose level-2 tables of 2^SPLIT STEs are allocated when a device in
 * their span is probed and freed with the table. Fresh STEs are valid
 * aborts (V = 1, Config = 0), so a stray StreamID is terminated quietly.
 */
export class StreamTable {
  readonly twoLevel: boolean;
  /** StreamID bits the table covers (STRTAB_BASE_CFG.LOG2SIZE). */
  readonly sidBits: number;
  #base = -1;
  #order = 0;
  /** level-1 index -> level-2 table. */
  readonly #l2 = new Map<number, number>();

  constructor(
    private readonly mem: PhysMem,
    private readonly pages: PageAllocator,
    caps: SmmuCaps,
  ) {
    this.twoLevel = caps.twoLevelStreamTable && caps.sidBits > LINEAR_MAX_BITS;
    this.sidBits = this.twoLevel ? Math.min(caps.sidBits, STRTAB_SPLIT + MAX_L1_BITS) : Math.min(caps.sidBits, LINEAR_MAX_BITS + 4);
  }

  get base(): number {
    return this.#base;
  }

  /** Pages held (level 1 or linear, plus level-2 tables). */
  get tables(): number {
    return (this.#base < 0 ? 0 : 1) + this.#l2.size;
  }

  /** Allocates the table and programs STRTAB_BASE/STRTAB_BASE_CFG. ENOMEM. */
  setup(mmio: SmmuMmio): void {
    const bytes = this.twoLevel ? 2 ** (this.sidBits - STRTAB_SPLIT) * L1_DESC_BYTES : 2 ** this.sidBits * STE_BYTES;
    this.#order = Math.max(0, Math.ceil(Math.log2(bytes / 4096)));
    const base = this.pages.allocPages(this.#order, "smmu.strtab");
    if (!this.twoLevel) this.#initStes(base, 2 ** this.sidBits);
    const b = StrtabBaseReg.alloc();
    StrtabBaseReg.setAddr(b, "ADDR", base);
    StrtabBaseReg.set(b, "RA", 1);
    const cfg = StrtabBaseCfgReg.alloc();
    StrtabBaseCfgReg.set(cfg, "FMT", this.twoLevel ? 1 : 0);
    StrtabBaseCfgReg.set(cfg, "LOG2SIZE", this.sidBits);
    StrtabBaseCfgReg.set(cfg, "SPLIT", this.twoLevel ? STRTAB_SPLIT : 0);
    writeReg(mmio, SmmuReg.STRTAB_BASE, b);
    writeReg(mmio, SmmuReg.STRTAB_BASE_CFG, cfg);
    this.#base = base;
  }

  /** Frees every table; SMMUEN must be clear. Cannot fail. */
  free(): void {
    for (const pa of this.#l2.values()) this.pages.freePages(pa);
    this.#l2.clear();
    if (this.#base >= 0) this.pages.freePages(this.#base);
    this.#base = -1;
  }

  /**
   * Makes sure the STE of `sid` exists (allocating its level-2 table).
   * ENODEV beyond the table's StreamIDs, ENOMEM. Returns whether a level-2
   * table was made (its L1 descriptor then needs a CFGI_STE to be refetched).
   */
  ensure(sid: number): boolean {
    if (this.#base < 0) throw new KernelError(Errno.ENODEV, "stream table not set up");
    if (!Number.isInteger(sid) || sid < 0 || sid >= 2 ** this.sidBits) throw new KernelError(Errno.ENODEV, `StreamID ${sid} is beyond the ${this.sidBits}-bit stream table`);
    if (!this.twoLevel) return false;
    const i = Math.floor(sid / 2 ** STRTAB_SPLIT);
    if (this.#l2.has(i)) return false;
    const l2 = this.pages.allocPages(2, "smmu.strtab-l2");
    this.#initStes(l2, 2 ** STRTAB_SPLIT);
    const d = L1Std.alloc();
    L1Std.setAddr(d, "L2PTR", l2);
    // SPAN = SPLIT + 1: the level-2 table holds 2^(SPAN-1) STEs (linux-anchor §5, spec-facts §B2.1).
    L1Std.set(d, "SPAN", STRTAB_SPLIT + 1);
    L1Std.write(this.mem, this.#base + i * L1_DESC_BYTES, d);
    this.#l2.set(i, l2);
    return true;
  }

  /** Address of the STE of `sid` (after {@link ensure}). */
  steAddr(sid: number): number {
    if (!this.twoLevel) return this.#base + sid * STE_BYTES;
    const l2 = this.#l2.get(Math.floor(sid / 2 ** STRTAB_SPLIT));
    if (l2 === undefined) throw new KernelError(Errno.ENODEV, `no level-2 stream table for StreamID ${sid}`);
    return l2 + (sid % 2 ** STRTAB_SPLIT) * STE_BYTES;
  }

  /**
   * Writes an STE as `arm_smmu_write_strtab_ent` orders it: dwords 1..7
   * first, dword 0 (V, Config) last, so a walker that fetched in between
   * never sees a valid header over stale fields. The caller issues CFGI_STE.
   */
  writeSte(sid: number, ste: Uint32Array): void {
    const at = this.steAddr(sid);
    for (let dw = 7; dw >= 0; dw--) this.mem.write64(at + dw * 8, ste[2 * dw] ?? 0, ste[2 * dw + 1] ?? 0);
  }

  #initStes(base: number, n: number): void {
    const abort = Ste.alloc();
    Ste.set(abort, "V", 1);
    Ste.set(abort, "CONFIG", SteConfig.ABORT);
    // SHCFG = incoming, as arm_smmu_init_bypass_stes() writes every initial STE.
    Ste.set(abort, "SHCFG", SHCFG_INCOMING);
    for (let i = 0; i < n; i++) Ste.write(this.mem, base + i * STE_BYTES, abort);
  }
}
