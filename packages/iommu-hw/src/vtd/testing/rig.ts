import { type SourceId, sourceId } from "@vsva/kernel";
import { bigIntToU64, u64ToBigInt, SparseMemory } from "@vsva/pgtable";
import type { VtdOptions } from "../options.js";
import { VtdUnit } from "../vtd-unit.js";

/**
 * A test rig: a unit over sparse memory plus helpers that write every
 * structure as RAW bits, encoded here by hand from the specification tables
 * (VT-d spec chapter 9 and §6.5.2), independently of the layouts in structures.ts and
 * descriptors.ts, so a wrong layout is caught rather than mirrored.
 * For tests of this unit and of the drivers above it (the `./testing` subpath).
 */

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;

/** Register offsets, restated from VT-d chapter 10. */
export const R = {
  VER: 0x0, CAP: 0x8, ECAP: 0x10, GCMD: 0x18, GSTS: 0x1c, RTADDR: 0x20, CCMD: 0x28,
  FSTS: 0x34, FECTL: 0x38, FEDATA: 0x3c, FEADDR: 0x40, FEUADDR: 0x44,
  IQH: 0x80, IQT: 0x88, IQA: 0x90, ICS: 0x9c, IECTL: 0xa0, IEDATA: 0xa4, IEADDR: 0xa8, IQERCD: 0xb0,
  PQH: 0xc0, PQT: 0xc8, PQA: 0xd0, PRS: 0xdc, PECTL: 0xe0, PEDATA: 0xe4, PEADDR: 0xe8,
  VCCAP: 0xe00, VCMD: 0xe10, VCRSP: 0xe20,
} as const;

export const GCMD_TE = 1 << 31;
export const GCMD_SRTP = 1 << 30;
export const GCMD_QIE = 1 << 26;

// x86-64 first-level entry bits (VT-d §9.7).
export const FL_P = 1n, FL_RW = 2n, FL_US = 4n, FL_A = 0x20n, FL_D = 0x40n, FL_PS = 0x80n, FL_XD = 1n << 63n;
// Second-level entry bits (VT-d §9.8).
export const SL_R = 1n, SL_W = 2n, SL_X = 4n, SL_PS = 0x80n;

export const ROOT = 0x10000;
export const CTX_LO = 0x11000;
export const CTX_HI = 0x12000;
export const PASID_DIR = 0x14000;
export const IQ_BASE = 0x20000;
export const PRQ_BASE = 0x30000;
export const STATUS = 0x40000;

export interface ContextOpts {
  present?: boolean; fpd?: boolean; dte?: boolean; paside?: boolean; pre?: boolean;
  pdts?: number; dir?: number; ridPasid?: number;
}

export interface PasidOpts {
  present?: boolean; fpd?: boolean; pgtt: number; did: number;
  aw?: number; slptr?: number; flptr?: number; flpm?: number;
  sre?: boolean; ere?: boolean; wpe?: boolean; nxe?: boolean; slee?: boolean;
}

export class VtdRig {
  readonly mem: SparseMemory;
  readonly unit: VtdUnit;
  #next = 0x100000;
  #iqTail = 0;
  readonly dev: SourceId = sourceId(0, 2, 0);

  constructor(opts: Partial<VtdOptions> = {}) {
    this.mem = new SparseMemory({ addrBits: 46, regions: [{ base: 0, size: 256 * MiB }] });
    this.unit = new VtdUnit({ mem: this.mem, ...opts });
  }

  alloc(): number {
    const pa = this.#next;
    this.#next += 4096;
    return pa;
  }

  w64(pa: number, v: bigint): void {
    const u = bigIntToU64(v);
    if (!this.mem.write64(pa, u.lo, u.hi)) throw new Error(`test rig: no memory at 0x${pa.toString(16)}`);
  }

  r64(pa: number): bigint {
    const u = { lo: 0, hi: 0 };
    if (!this.mem.read64(pa, u)) throw new Error(`test rig: no memory at 0x${pa.toString(16)}`);
    return u64ToBigInt(u);
  }

  reg64(off: number): bigint {
    return this.unit.mmioRead64(off);
  }

  setReg64(off: number, v: bigint): void {
    this.unit.mmioWrite64(off, v);
  }

  // --- bring-up through registers, as a driver would ---------------------------------

  /** Points RTADDR at ROOT (TTM = scalable) and latches it. */
  setRootTable(ttm = 1, root = ROOT): void {
    this.setReg64(R.RTADDR, BigInt(root) | (BigInt(ttm) << 10n));
    this.gcmd(GCMD_SRTP);
  }

  /** Writes GCMD as the latched status bits plus `bit`, the read-modify-write model of VT-d §10.4 GCMD. */
  gcmd(bit: number, on = true): void {
    const latched = this.unit.mmioRead32(R.GSTS) & (GCMD_TE | GCMD_QIE | (1 << 25) | (1 << 23));
    this.unit.mmioWrite32(R.GCMD, (on ? latched | bit : latched & ~bit) >>> 0);
  }

  enableTranslation(): void {
    this.gcmd(GCMD_TE);
  }

  /** Standard bring-up: root table, 256-bit invalidation queue, TE. */
  bringUp(): this {
    this.setRootTable();
    this.enableQi();
    this.enableTranslation();
    return this;
  }

  enableQi(wide = true, qs = 0): void {
    this.setReg64(R.IQA, BigInt(IQ_BASE) | (wide ? 1n << 11n : 0n) | BigInt(qs));
    this.setReg64(R.IQT, 0n);
    this.#iqTail = 0;
    this.gcmd(GCMD_QIE);
  }

  /** Writes descriptors at the tail (256-bit slots) and moves IQT past them. */
  submit(...descs: readonly (readonly bigint[])[]): void {
    const wide = (this.reg64(R.IQA) & (1n << 11n)) !== 0n;
    const bytes = wide ? 32 : 16;
    const size = 4096 * 2 ** Number(this.reg64(R.IQA) & 7n);
    for (const d of descs) {
      for (let i = 0; i < bytes / 8; i++) this.w64(IQ_BASE + this.#iqTail + 8 * i, d[i] ?? 0n);
      this.#iqTail = (this.#iqTail + bytes) % size;
    }
    this.setReg64(R.IQT, BigInt(this.#iqTail));
  }

  // --- structures, hand-encoded ---------------------------------------------------------

  /** Scalable-mode root entry for `bus`: lower and upper context tables (VT-d spec §9.2). */
  setRoot(bus: number, lower: number | null = CTX_LO, upper: number | null = CTX_HI): void {
    this.w64(ROOT + bus * 16, lower === null ? 0n : BigInt(lower) | 1n);
    this.w64(ROOT + bus * 16 + 8, upper === null ? 0n : BigInt(upper) | 1n);
  }

  /** Scalable-mode context entry (VT-d spec §9.4) of `sid` (bus must be 0 unless the root entry for it is written). */
  setContext(sid: number, o: ContextOpts = {}): void {
    const devfn = sid & 0xff;
    const table = devfn >= 0x80 ? CTX_HI : CTX_LO;
    const b = (x: boolean | undefined, d: boolean): bigint => ((x ?? d) ? 1n : 0n);
    const qw0 =
      b(o.present, true) | (b(o.fpd, false) << 1n) | (b(o.dte, true) << 2n) | (b(o.paside, true) << 3n) | (b(o.pre, true) << 4n) |
      (BigInt(o.pdts ?? 7) << 9n) | BigInt(o.dir ?? PASID_DIR);
    const pa = table + (devfn & 0x7f) * 32;
    this.w64(pa, qw0);
    this.w64(pa + 8, BigInt(o.ridPasid ?? 0));
    this.w64(pa + 16, 0n);
    this.w64(pa + 24, 0n);
  }

  /** PASID-directory entry (VT-d spec §9.5) for `pasid`, creating its PASID table if needed; returns the table. */
  pasidTable(pasid: number, dir = PASID_DIR, fpd = false): number {
    const at = dir + 8 * (pasid >>> 6);
    const cur = this.r64(at);
    if ((cur & 1n) === 1n) return Number(cur & ~0xfffn);
    const table = this.alloc();
    this.w64(at, BigInt(table) | 1n | (fpd ? 2n : 0n));
    return table;
  }

  /** PASID-table entry (VT-d spec §9.6), 8 qwords. */
  setPasid(pasid: number, o: PasidOpts, dir = PASID_DIR): number {
    const pa = this.pasidTable(pasid, dir) + 64 * (pasid & 63);
    const b = (x: boolean | undefined): bigint => (x === true ? 1n : 0n);
    const qw0 =
      ((o.present ?? true) ? 1n : 0n) | (b(o.fpd) << 1n) | (BigInt(o.aw ?? 2) << 2n) | (b(o.slee) << 5n) |
      (BigInt(o.pgtt) << 6n) | BigInt(o.slptr ?? 0);
    const qw1 = BigInt(o.did);
    const qw2 =
      b(o.sre) | (b(o.ere) << 1n) | (BigInt(o.flpm ?? 0) << 2n) | (b(o.wpe) << 4n) | (b(o.nxe) << 5n) | BigInt(o.flptr ?? 0);
    this.w64(pa, qw0);
    this.w64(pa + 8, qw1);
    this.w64(pa + 16, qw2);
    for (let i = 3; i < 8; i++) this.w64(pa + 8 * i, 0n);
    return pa;
  }

  /** Root + context for the rig's device with PASID support. */
  device(o: ContextOpts = {}, sid: number = this.dev): void {
    this.setRoot(sid >>> 8);
    this.setContext(sid, o);
  }

  // --- page tables, hand-encoded ------------------------------------------------------

  /**
   * Maps `va` -> `pa` with a leaf of `size` in a table rooted at `root`.
   * `leaf` are the leaf bits; non-leaf entries get `table` bits. Levels:
   * 4 KiB leaf at level 1, 2 MiB at 2, 1 GiB at 3.
   */
  map(root: number, levels: number, va: number, pa: number, size: number, leaf: bigint, table: bigint, ps: bigint): void {
    const v = BigInt.asUintN(64, BigInt(va));
    const leafLevel = size === GiB ? 3 : size === 2 * MiB ? 2 : 1;
    let t = root;
    for (let l = levels; l > leafLevel; l--) {
      const idx = Number((v >> BigInt(12 + 9 * (l - 1))) & 511n);
      const e = this.r64(t + 8 * idx);
      if ((e & 3n) === 0n) {
        const next = this.alloc();
        this.w64(t + 8 * idx, BigInt(next) | table);
        t = next;
      } else {
        t = Number(e & 0x000f_ffff_ffff_f000n);
      }
    }
    const idx = Number((v >> BigInt(12 + 9 * (leafLevel - 1))) & 511n);
    this.w64(t + 8 * idx, BigInt(pa) | leaf | (leafLevel > 1 ? ps : 0n));
  }

  /** First-level mapping: user, writable by default. */
  flMap(root: number, va: number, pa: number, o: { size?: number; levels?: number; leaf?: bigint } = {}): void {
    this.map(root, o.levels ?? 4, va, pa, o.size ?? 4096, o.leaf ?? FL_P | FL_RW | FL_US, FL_P | FL_RW | FL_US, FL_PS);
  }

  /** Second-level mapping: read/write by default. */
  slMap(root: number, iova: number, pa: number, o: { size?: number; levels?: number; leaf?: bigint } = {}): void {
    this.map(root, o.levels ?? 4, iova, pa, o.size ?? 4096, o.leaf ?? SL_R | SL_W, SL_R | SL_W, SL_PS);
  }

  /** Address of the leaf entry that maps `va` (4 KiB leaf). */
  leafEntry(root: number, levels: number, va: number): number {
    const v = BigInt.asUintN(64, BigInt(va));
    let t = root;
    for (let l = levels; l > 1; l--) {
      const idx = Number((v >> BigInt(12 + 9 * (l - 1))) & 511n);
      t = Number(this.r64(t + 8 * idx) & 0x000f_ffff_ffff_f000n);
    }
    return t + 8 * Number((v >> 12n) & 511n);
  }
}

// --- invalidation descriptors, hand-encoded (VT-d §6.5.2) -----------------------------------------

export const desc = {
  contextCache: (g: number, did = 0, sid = 0, fm = 0): bigint[] => [1n | (BigInt(g) << 4n) | (BigInt(did) << 16n) | (BigInt(sid) << 32n) | (BigInt(fm) << 48n), 0n],
  iotlb: (g: number, did = 0, addr = 0, am = 0, ih = false): bigint[] => [
    2n | (BigInt(g) << 4n) | (BigInt(did) << 16n),
    BigInt.asUintN(64, BigInt(addr)) | (ih ? 1n << 6n : 0n) | BigInt(am),
  ],
  deviceTlb: (sid: number, addr: number, s = false): bigint[] => [3n | (BigInt(sid) << 32n), BigInt.asUintN(64, BigInt(addr)) | (s ? 1n : 0n)],
  wait: (o: { sw?: boolean; iflag?: boolean; fn?: boolean; data?: number; addr?: number }): bigint[] => [
    5n | (o.iflag === true ? 1n << 4n : 0n) | (o.sw === true ? 1n << 5n : 0n) | (o.fn === true ? 1n << 6n : 0n) | (BigInt(o.data ?? 0) << 32n),
    BigInt(o.addr ?? 0),
  ],
  pasidIotlb: (g: number, did: number, pasid: number, addr = 0, am = 0, ih = false): bigint[] => [
    6n | (BigInt(g) << 4n) | (BigInt(did) << 16n) | (BigInt(pasid) << 32n),
    BigInt.asUintN(64, BigInt(addr)) | (ih ? 1n << 6n : 0n) | BigInt(am),
  ],
  pasidCache: (g: number, did: number, pasid = 0): bigint[] => [7n | (BigInt(g) << 4n) | (BigInt(did) << 16n) | (BigInt(pasid) << 32n), 0n],
  pasidDeviceTlb: (sid: number, pasid: number, addr: number, o: { s?: boolean; g?: boolean } = {}): bigint[] => [
    8n | (BigInt(sid) << 16n) | (BigInt(pasid) << 32n),
    BigInt.asUintN(64, BigInt(addr)) | (o.g === true ? 1n : 0n) | (o.s === true ? 1n << 11n : 0n),
  ],
  pageResponse: (sid: number, prgi: number, rc: number, pasid?: number): bigint[] => [
    9n | (pasid === undefined ? 0n : 1n << 4n) | (BigInt(rc) << 12n) | (BigInt(sid) << 16n) | (BigInt(pasid ?? 0) << 32n),
    BigInt(prgi) << 3n,
  ],
};
