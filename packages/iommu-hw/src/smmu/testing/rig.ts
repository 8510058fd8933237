import { type SourceId, sourceId } from "@vsva/kernel";
import { bigIntToU64, u64ToBigInt, SparseMemory } from "@vsva/pgtable";
import type { SmmuInterrupt, SmmuOptions } from "../options.js";
import { SmmuUnit } from "../smmu-unit.js";

/**
 * A test rig: an SMMUv3 over sparse memory plus helpers that write every
 * structure as RAW bits, encoded here by hand from the SMMUv3 spec (chapters 5 and 6) and the Arm ARM,
 * independently of the layouts in regs.ts and structures.ts, so a wrong
 * layout is caught rather than mirrored. For this unit's tests and for the
 * SMMUv3 driver above it (the `./testing` subpath).
 */

export const MiB = 1024 * 1024;

/** Register offsets, restated from SMMUv3 spec §6.2 (page 1 at +0x10000). */
export const SR = {
  IDR0: 0x0, IDR1: 0x4, IDR3: 0xc, IDR5: 0x14, IIDR: 0x18, AIDR: 0x1c, CR0: 0x20, CR0ACK: 0x24, CR1: 0x28, CR2: 0x2c,
  GBPA: 0x44, IRQ_CTRL: 0x50, IRQ_CTRLACK: 0x54, GERROR: 0x60, GERRORN: 0x64, GERROR_IRQ_CFG0: 0x68, GERROR_IRQ_CFG1: 0x70,
  STRTAB_BASE: 0x80, STRTAB_BASE_CFG: 0x88, CMDQ_BASE: 0x90, CMDQ_PROD: 0x98, CMDQ_CONS: 0x9c,
  EVENTQ_BASE: 0xa0, EVENTQ_IRQ_CFG0: 0xb0, EVENTQ_IRQ_CFG1: 0xb8, PRIQ_BASE: 0xc0, PRIQ_IRQ_CFG0: 0xd0, PRIQ_IRQ_CFG1: 0xd8,
  EVENTQ_PROD: 0x100a8, EVENTQ_CONS: 0x100ac, PRIQ_PROD: 0x100c8, PRIQ_CONS: 0x100cc,
} as const;

export const CR0_SMMUEN = 1, CR0_PRIQEN = 2, CR0_EVENTQEN = 4, CR0_CMDQEN = 8;

export const STRTAB = 0x10000;
export const CMDQ = 0x20000;
export const EVENTQ = 0x30000;
export const PRIQ = 0x38000;
export const CD_TABLE = 0x40000;
export const SYNC_WORD = 0x4f000;

// AArch64 descriptor bits (the Arm ARM's VMSAv8-64 descriptors).
export const D_V = 1n, D_T = 2n, D_AP1 = 1n << 6n, D_AP2 = 1n << 7n, D_AF = 1n << 10n, D_NG = 1n << 11n;
export const D_S2R = 1n << 6n, D_S2W = 1n << 7n;
export const S1_PAGE = D_V | D_T | D_AF | D_AP1 | D_NG;
export const S2_PAGE = D_V | D_T | D_AF | D_S2R | D_S2W | (0xfn << 2n);
export const TABLE = D_V | D_T;

export interface SteOpts {
  v?: boolean; config: number; s1fmt?: number; ctx?: number; cdmax?: number; s1dss?: number; s1stalld?: boolean;
  eats?: number; strw?: number; vmid?: number;
  s2t0sz?: number; s2sl0?: number; s2tg?: number; s2ps?: number; s2aa64?: boolean; s2endi?: boolean; s2affd?: boolean; s2r?: boolean; s2s?: boolean; s2ttb?: number;
}

export interface CdOpts {
  v?: boolean; t0sz?: number; tg0?: number; epd0?: boolean; epd1?: boolean; endi?: boolean; ips?: number; affd?: boolean; aa64?: boolean;
  ha?: boolean; hd?: boolean; s?: boolean; r?: boolean; a?: boolean; asid?: number; ttb0?: number; t1sz?: number; tg1?: number; ttb1?: number;
}

const b = (x: boolean | undefined, bit: bigint): bigint => (x === true ? 1n << bit : 0n);

/** The four dwords of an STE (the other four are zero), from SMMUv3 spec §5.2. */
export function steWords(o: SteOpts): bigint[] {
  const dw0 = (o.v === false ? 0n : 1n) | (BigInt(o.config) << 1n) | (BigInt(o.s1fmt ?? 0) << 4n) | BigInt(o.ctx ?? 0) | (BigInt(o.cdmax ?? 0) << 59n);
  const dw1 = BigInt(o.s1dss ?? 0) | b(o.s1stalld, 27n) | (BigInt(o.eats ?? 0) << 28n) | (BigInt(o.strw ?? 0) << 30n);
  const dw2 =
    BigInt(o.vmid ?? 0) | (BigInt(o.s2t0sz ?? 16) << 32n) | (BigInt(o.s2sl0 ?? 2) << 38n) | (BigInt(o.s2tg ?? 0) << 46n) | (BigInt(o.s2ps ?? 5) << 48n) |
    (o.s2aa64 === false ? 0n : 1n << 51n) | b(o.s2endi, 52n) | b(o.s2affd, 53n) | b(o.s2s, 57n) | b(o.s2r, 58n);
  const dw3 = BigInt(o.s2ttb ?? 0);
  return [dw0, dw1, dw2, dw3];
}

/** The four dwords of a CD, from SMMUv3 spec §5.4 (MAIR 0x44ff04 in dword 3, as Linux writes it). */
export function cdWords(o: CdOpts): bigint[] {
  const dw0 =
    BigInt(o.t0sz ?? 16) | (BigInt(o.tg0 ?? 0) << 6n) | b(o.epd0, 14n) | b(o.endi, 15n) | (BigInt(o.t1sz ?? 16) << 16n) | (BigInt(o.tg1 ?? 2) << 22n) |
    (o.epd1 === false ? 0n : 1n << 30n) | (o.v === false ? 0n : 1n << 31n) | (BigInt(o.ips ?? 5) << 32n) | b(o.affd, 35n) |
    (o.aa64 === false ? 0n : 1n << 41n) | b(o.hd, 42n) | b(o.ha, 43n) | b(o.s, 44n) | (o.r === false ? 0n : 1n << 45n) | (o.a === false ? 0n : 1n << 46n) |
    (BigInt(o.asid ?? 1) << 48n);
  return [dw0, BigInt(o.ttb0 ?? 0), BigInt(o.ttb1 ?? 0), 0x44ff04n];
}

/** Commands as raw dword pairs, from SMMUv3 spec chapter 4. */
export const cmd = {
  cfgiSte: (sid: number, leaf = true): [bigint, bigint] => [0x03n | (BigInt(sid) << 32n), leaf ? 1n : 0n],
  cfgiSteRange: (sid: number, range: number): [bigint, bigint] => [0x04n | (BigInt(sid) << 32n), BigInt(range)],
  cfgiAll: (): [bigint, bigint] => [0x04n, 31n],
  cfgiCd: (sid: number, ssid: number, leaf = true): [bigint, bigint] => [0x05n | (BigInt(ssid) << 12n) | (BigInt(sid) << 32n), leaf ? 1n : 0n],
  cfgiCdAll: (sid: number): [bigint, bigint] => [0x06n | (BigInt(sid) << 32n), 0n],
  nhAll: (vmid: number): [bigint, bigint] => [0x10n | (BigInt(vmid) << 32n), 0n],
  nhAsid: (vmid: number, asid: number): [bigint, bigint] => [0x11n | (BigInt(vmid) << 32n) | (BigInt(asid) << 48n), 0n],
  nhVa: (vmid: number, asid: number, va: number, leaf = false): [bigint, bigint] => [0x12n | (BigInt(vmid) << 32n) | (BigInt(asid) << 48n), BigInt(va) | (leaf ? 1n : 0n)],
  nhVaRange: (vmid: number, asid: number, va: number, num: number, scale: number): [bigint, bigint] => [
    0x12n | (BigInt(num) << 12n) | (BigInt(scale) << 20n) | (BigInt(vmid) << 32n) | (BigInt(asid) << 48n),
    BigInt(va) | (1n << 10n),
  ],
  s12Vmall: (vmid: number): [bigint, bigint] => [0x28n | (BigInt(vmid) << 32n), 0n],
  s2Ipa: (vmid: number, ipa: number, leaf = false): [bigint, bigint] => [0x2an | (BigInt(vmid) << 32n), BigInt(ipa) | (leaf ? 1n : 0n)],
  nsnhAll: (): [bigint, bigint] => [0x30n, 0n],
  atcInv: (sid: number, ssid: number | undefined, addr: number, size: number, global = false): [bigint, bigint] => [
    0x40n | (global ? 1n << 9n : 0n) | (ssid === undefined ? 0n : (1n << 11n) | (BigInt(ssid) << 12n)) | (BigInt(sid) << 32n),
    BigInt(size) | BigInt(addr),
  ],
  priResp: (sid: number, ssid: number | undefined, prgi: number, resp: number): [bigint, bigint] => [
    0x41n | (ssid === undefined ? 0n : (1n << 11n) | (BigInt(ssid) << 12n)) | (BigInt(sid) << 32n),
    BigInt(prgi) | (BigInt(resp) << 12n),
  ],
  /** Resp 13:12 (0 terminate, 1 retry, 2 abort) and SID in dword 0; STAG in dword 1 bits 15:0. */
  resume: (sid: number, stag: number, resp: number): [bigint, bigint] => [0x44n | (BigInt(resp) << 12n) | (BigInt(sid) << 32n), BigInt(stag)],
  stallTerm: (sid: number): [bigint, bigint] => [0x45n | (BigInt(sid) << 32n), 0n],
  sync: (cs = 0, msiAddr = 0, msiData = 0): [bigint, bigint] => [0x46n | (BigInt(cs) << 12n) | (BigInt(msiData) << 32n), BigInt(msiAddr)],
  raw: (lo: bigint, hi: bigint): [bigint, bigint] => [lo, hi],
};

/** A decoded event record, read back by hand (SMMUv3 spec §7.3). */
export interface RawEvent {
  id: number; ssv: boolean; ssid: number; sid: number; stag: number; stall: boolean; pnu: boolean; ind: boolean; rnw: boolean; s2: boolean; cls: number; addr: bigint; dw3: bigint;
}

export class SmmuRig {
  readonly mem: SparseMemory;
  readonly unit: SmmuUnit;
  readonly interrupts: SmmuInterrupt[] = [];
  readonly dev: SourceId = sourceId(0, 2, 0);
  #next = 0x100000;
  #cmdProd = 0;
  #cmdLog2 = 8;
  #evtCons = 0;

  constructor(opts: Partial<SmmuOptions> = {}) {
    this.mem = new SparseMemory({ addrBits: 48, regions: [{ base: 0, size: 256 * MiB }] });
    this.unit = new SmmuUnit({ mem: this.mem, onInterrupt: (i) => this.interrupts.push(i), ...opts });
  }

  alloc(pages = 1): number {
    const pa = this.#next;
    this.#next += 4096 * pages;
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

  reg(off: number): number {
    return this.unit.mmioRead32(off);
  }

  setReg(off: number, v: number): void {
    this.unit.mmioWrite32(off, v);
  }

  setReg64(off: number, v: bigint): void {
    this.unit.mmioWrite64(off, v);
  }

  /**
   * Programs the stream table (linear, 2^8 STEs, or 2-level with SPLIT 8),
   * the queues (command 2^8, event 2^eventqLog2, PRI 2^priqLog2), IRQ_CTRL
   * and CR2.RECINVSID, then enables everything through CR0, as a driver would.
   */
  bringUp(o: { twoLevel?: boolean; log2size?: number; eventqLog2?: number; priqLog2?: number; cr0?: number } = {}): this {
    this.setReg64(SR.STRTAB_BASE, BigInt(STRTAB));
    const log2 = o.log2size ?? (o.twoLevel === true ? 16 : 8);
    this.setReg(SR.STRTAB_BASE_CFG, log2 | (o.twoLevel === true ? (8 << 6) | (1 << 16) : 0));
    this.setReg64(SR.CMDQ_BASE, BigInt(CMDQ) | BigInt(this.#cmdLog2));
    this.setReg(SR.CMDQ_PROD, 0);
    this.setReg(SR.CMDQ_CONS, 0);
    this.setReg64(SR.EVENTQ_BASE, BigInt(EVENTQ) | BigInt(o.eventqLog2 ?? 6));
    this.setReg(SR.EVENTQ_PROD, 0);
    this.setReg(SR.EVENTQ_CONS, 0);
    this.setReg64(SR.PRIQ_BASE, BigInt(PRIQ) | BigInt(o.priqLog2 ?? 6));
    this.setReg(SR.IRQ_CTRL, 7);
    this.setReg(SR.CR2, 2);
    this.setReg(SR.CR0, o.cr0 ?? CR0_SMMUEN | CR0_EVENTQEN | CR0_PRIQEN | CR0_CMDQEN);
    return this;
  }

  /** Writes the STE of `sid` (linear table, or the level-2 table the rig allocates per level-1 slot). */
  ste(sid: number, o: SteOpts, twoLevel = false): number {
    let at: number;
    if (twoLevel) {
      const l1 = STRTAB + 8 * (sid >>> 8);
      let l2 = Number(this.r64(l1) & 0xf_ffff_ffff_ffc0n);
      if (l2 === 0) {
        l2 = this.alloc(4);
        this.w64(l1, BigInt(l2) | 9n); // SPAN = SPLIT + 1, as Linux writes it
      }
      at = l2 + 64 * (sid & 0xff);
    } else at = STRTAB + 64 * sid;
    steWords(o).forEach((w, i) => this.w64(at + 8 * i, w));
    return at;
  }

  cd(at: number, o: CdOpts): void {
    cdWords(o).forEach((w, i) => this.w64(at + 8 * i, w));
  }

  /** Queues commands and writes CMDQ_PROD once (the unit runs them at that write unless deferred). */
  submit(...cmds: [bigint, bigint][]): void {
    const n = 2 ** this.#cmdLog2;
    for (const [lo, hi] of cmds) {
      const at = CMDQ + 16 * (this.#cmdProd & (n - 1));
      this.w64(at, lo);
      this.w64(at + 8, hi);
      this.#cmdProd = (this.#cmdProd + 1) & (2 * n - 1);
    }
    this.setReg(SR.CMDQ_PROD, this.#cmdProd);
  }

  /** Event records written since the last call (advancing EVENTQ_CONS as software would). */
  events(): RawEvent[] {
    const out: RawEvent[] = [];
    const log2 = this.unit.mmioRead32(SR.EVENTQ_BASE) & 0x1f;
    const n = 2 ** log2;
    const prod = this.reg(SR.EVENTQ_PROD) & (2 * n - 1);
    while ((this.#evtCons & (2 * n - 1)) !== prod) {
      const at = EVENTQ + 32 * (this.#evtCons & (n - 1));
      const dw0 = this.r64(at);
      const dw1 = this.r64(at + 8);
      out.push({
        id: Number(dw0 & 0xffn), ssv: ((dw0 >> 11n) & 1n) === 1n, ssid: Number((dw0 >> 12n) & 0xfffffn), sid: Number(dw0 >> 32n),
        stag: Number(dw1 & 0xffffn), stall: ((dw1 >> 31n) & 1n) === 1n, pnu: ((dw1 >> 33n) & 1n) === 1n, ind: ((dw1 >> 34n) & 1n) === 1n, rnw: ((dw1 >> 35n) & 1n) === 1n, s2: ((dw1 >> 39n) & 1n) === 1n,
        cls: Number((dw1 >> 40n) & 3n), addr: this.r64(at + 16), dw3: this.r64(at + 24),
      });
      this.#evtCons = (this.#evtCons + 1) & (2 * n - 1);
    }
    this.setReg(SR.EVENTQ_CONS, (this.reg(SR.EVENTQ_CONS) & 0x8000_0000) | this.#evtCons);
    return out;
  }
}
