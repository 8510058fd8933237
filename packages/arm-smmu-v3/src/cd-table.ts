import { Errno, KernelError } from "@vsva/kernel";
import { CD_BYTES, Cd, L1Cd, L1_DESC_BYTES, type PhysMem, S1Fmt, TG0_4K } from "@vsva/iommu-hw";
import type { PageAllocator } from "@vsva/iommu-core";

/** CDs per level-2 table: 1024 (64 KiB, S1Fmt = 64K_L2), as Linux's CTXDESC_SPLIT (linux-anchor §5). */
export const CD_SPLIT = 10;
const LEAF_ORDER = 4;

/** What goes into one CD: a stage-1 (TTB0) address space tagged with an ASID. */
export interface CdParams {
  readonly asid: number;
  /** TTB0: the top table. */
  readonly ttb0: number;
  /** 64 − input bits. */
  readonly t0sz: number;
  /** CD.IPS: the unit's OAS code. */
  readonly ips: number;
  /** HA: let the SMMU set AF (when IDR0.HTTU allows): what the CPU's tables expect for shared mms. */
  readonly ha: boolean;
  /** S: stall faulting transactions instead of terminating them (a master whose stalls are enabled). */
  readonly stall?: boolean;
  /**
   * The CD holds a process's (an mm's) tables, whose ASID is shared with
   * the CPUs: ASET = 0 so broadcast TLB maintenance applies. A CD without
   * an mm gets ASET = 1 (`cd->mm ? 0 : CTXDESC_CD_0_ASET` in
   * arm_smmu_write_ctx_desc()).
   */
  readonly shared: boolean;
}

/**
 * MAIR as io-pgtable-arm programs it (drivers/iommu/io-pgtable-arm.c,
 * ARM_LPAE_MAIR_ATTR_IDX_*): index 0 non-cacheable (0x44), 1 write-back
 * read/write-allocate (0xff), 2 device nGnRE (0x04), 3 inner non-cacheable
 * outer write-back (0xf4). Our stage-1 leaves use index 1 (IDX_CACHE).
 * SVA CDs get the same value: Linux gives them the CPU's MAIR_EL1, which the
 * model has no CPU to read from.
 */
export const IO_PGTABLE_MAIR = 0xf404ff44;
/** The MAIR index of cacheable stage-1 leaves (ARM_LPAE_MAIR_ATTR_IDX_CACHE). */
export const MAIR_IDX_CACHE = 1;

/**
 * Encodes a CD (`arm_smmu_write_ctx_desc`): AArch64, TTB0 walks only
 * (EPD1), inner/outer write-back walks, inner shareable, R = 1 (record
 * faults), A = 1 (abort on fault: the unit's terminate model), ASET as
 * {@link CdParams.shared} says.
 */
export function encodeCd(p: CdParams): Uint32Array {
  const v = Cd.alloc();
  Cd.set(v, "T0SZ", p.t0sz);
  Cd.set(v, "TG0", TG0_4K);
  Cd.set(v, "IR0", 1);
  Cd.set(v, "OR0", 1);
  Cd.set(v, "SH0", 3);
  Cd.set(v, "EPD1", 1);
  Cd.set(v, "V", 1);
  Cd.set(v, "IPS", p.ips);
  Cd.set(v, "AA64", 1);
  Cd.set(v, "HA", p.ha ? 1 : 0);
  Cd.set(v, "S", p.stall === true ? 1 : 0);
  Cd.set(v, "R", 1);
  Cd.set(v, "A", 1);
  Cd.set(v, "ASET", p.shared ? 0 : 1);
  Cd.set(v, "ASID", p.asid);
  Cd.setAddr(v, "TTB0", p.ttb0);
  Cd.set(v, "MAIR0", IO_PGTABLE_MAIR);
  return v;
}

/**
 * One device's CD table (`arm_smmu_ctx_desc_cfg`): linear with 2^bits CDs
 * when the unit has no 2-level CD tables or bits ≤ CD_SPLIT, else a level-1
 * table whose 64 KiB leaves are allocated on first use of their range. The
 * STE points at it with S1ContextPtr, S1Fmt and S1CDMax = bits.
 */
export class CdTable {
  readonly bits: number;
  readonly fmt: number;
  readonly base: number;
  readonly #leaves = new Map<number, number>();

  /** ENOMEM. */
  constructor(
    private readonly mem: PhysMem,
    private readonly pages: PageAllocator,
    bits: number,
    twoLevel: boolean,
  ) {
    this.bits = bits;
    const split = twoLevel && bits > CD_SPLIT;
    this.fmt = split ? S1Fmt.L2_64K : S1Fmt.LINEAR;
    const bytes = split ? 2 ** (bits - CD_SPLIT) * L1_DESC_BYTES : 2 ** bits * CD_BYTES;
    this.base = pages.allocPages(Math.max(0, Math.ceil(Math.log2(bytes / 4096))), "smmu.cd-table");
  }

  /** Pages held: the table and its leaves. */
  get tables(): number {
    return 1 + this.#leaves.size;
  }

  /** Frees the table and its leaves. Cannot fail. */
  free(): void {
    for (const pa of this.#leaves.values()) this.pages.freePages(pa);
    this.#leaves.clear();
    this.pages.freePages(this.base);
  }

  /** Makes the CD of `ssid` addressable (allocates its leaf). EINVAL beyond the table, ENOMEM. */
  ensure(ssid: number): void {
    if (!Number.isInteger(ssid) || ssid < 0 || ssid >= 2 ** this.bits) throw new KernelError(Errno.EINVAL, `SubstreamID ${ssid} is beyond the ${this.bits}-bit CD table`);
    if (this.fmt === S1Fmt.LINEAR) return;
    const i = Math.floor(ssid / 2 ** CD_SPLIT);
    if (this.#leaves.has(i)) return;
    const leaf = this.pages.allocPages(LEAF_ORDER, "smmu.cd-leaf");
    const d = L1Cd.alloc();
    L1Cd.setAddr(d, "L2PTR", leaf);
    L1Cd.set(d, "V", 1);
    L1Cd.write(this.mem, this.base + i * L1_DESC_BYTES, d);
    this.#leaves.set(i, leaf);
  }

  #addr(ssid: number): number | null {
    if (this.fmt === S1Fmt.LINEAR) return ssid < 2 ** this.bits ? this.base + ssid * CD_BYTES : null;
    const leaf = this.#leaves.get(Math.floor(ssid / 2 ** CD_SPLIT));
    return leaf === undefined ? null : leaf + (ssid % 2 ** CD_SPLIT) * CD_BYTES;
  }

  /** Writes a CD, dword 0 (V) last. The caller issues CFGI_CD when the CD may be cached. */
  write(ssid: number, cd: Uint32Array): void {
    this.ensure(ssid);
    const at = this.#addr(ssid);
    if (at === null) return;
    for (let dw = 7; dw >= 0; dw--) this.mem.write64(at + dw * 8, cd[2 * dw] ?? 0, cd[2 * dw + 1] ?? 0);
  }

  /** Clears a CD's V bit (dword 0). The caller issues CFGI_CD. Cannot fail. */
  clear(ssid: number): void {
    const at = this.#addr(ssid);
    if (at !== null) this.mem.write64(at, 0, 0);
  }

  /** Whether the CD of `ssid` is valid in memory. */
  isValid(ssid: number): boolean {
    const at = this.#addr(ssid);
    const v = Cd.alloc();
    return at !== null && Cd.read(this.mem, at, v) && Cd.get(v, "V") === 1;
  }
}
