import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { resetStats, SparseMemory, PagePool, ArmTableWriter, type ArmS1Config, type ArmS2Config, ArmPerm as Perm, walkStage1, walkStage2, stage2Of, newArmWalkResult } from "@vsva/pgtable";
import { ArmWalkCache } from "./walk-cache.js";

// Descriptor bits restated from the Arm ARM's VMSAv8-64 descriptor formats by hand, independently of descriptors.ts.
const V = 1n, T = 2n, AP1 = 1n << 6n, AP2 = 1n << 7n, AF = 1n << 10n, NG = 1n << 11n;
const DBM = 1n << 51n, PXN = 1n << 53n, UXN = 1n << 54n;
const APT0 = 1n << 61n, APT1 = 1n << 62n;
const S2R = 1n << 6n, S2W = 1n << 7n, XN1 = 1n << 54n, XN0 = 1n << 53n, MEMATTR_WB = 0xfn << 2n;
const TABLE = V | T;
// Linux io-pgtable sets AP[1] (EL0 access) on every SMMU stage-1 leaf; KPAGE is a privileged-only page.
const PAGE = V | T | AF | AP1;
const KPAGE = V | T | AF;
const BLOCK = V | AF | AP1;

function put(mem: SparseMemory, addr: number, v: bigint): void {
  if (!mem.write64(addr, Number(v & 0xffff_ffffn), Number(v >> 32n))) throw new Error(`no memory at 0x${addr.toString(16)}`);
}
function get(mem: SparseMemory, addr: number): bigint {
  const u = { lo: 0, hi: 0 };
  mem.read64(addr, u);
  return (BigInt(u.hi) << 32n) | BigInt(u.lo);
}
const idx = (va: number, level: number): number => Number((BigInt(va) >> BigInt(12 + 9 * (3 - level))) & 511n);

const s1 = (o: Partial<ArmS1Config> = {}): ArmS1Config => ({ ttb: 0x1000, inputBits: 48, upper: false, outputBits: 48, affd: false, ha: false, hd: false, had: false, ...o });
const s2 = (o: Partial<ArmS2Config> = {}): ArmS2Config => ({ ttb: 0x1000, inputBits: 48, startLevel: 0, outputBits: 48, affd: false, ha: false, hd: false, ptw: false, xnx: false, ...o });
const READ = { write: false }, WRITE = { write: true }, UREAD = { write: false, priv: false }, PREAD = { write: false, priv: true };

/** Stage-1 tables at 0x1000 (L0) 0x2000 (L1) 0x3000 (L2) 0x4000 (L3) mapping VA to the page `leaf` points at. */
function s1Tables(mem: SparseMemory, va: number, leaf: bigint, l0 = TABLE, l1 = TABLE, l2 = TABLE): void {
  put(mem, 0x1000 + 8 * idx(va, 0), 0x2000n | l0);
  put(mem, 0x2000 + 8 * idx(va, 1), 0x3000n | l1);
  put(mem, 0x3000 + 8 * idx(va, 2), 0x4000n | l2);
  put(mem, 0x4000 + 8 * idx(va, 3), leaf);
}

const newMem = (): SparseMemory => new SparseMemory({ addrBits: 48, regions: [{ base: 0, size: 0x4000_0000 }] });
const VA = 0x12_3456_7000;

describe("stage-1 walk (VMSAv8-64, 4 KiB granule)", () => {
  it("walks four levels from T0SZ = 16 to a 4 KiB page, reading one descriptor per level", () => {
    const mem = newMem();
    s1Tables(mem, VA, 0x9000n | PAGE | AP1 | NG);
    resetStats(mem.stats);
    const r = walkStage1(mem, s1(), VA + 0x123, UREAD, newArmWalkResult());
    expect(r.ok).toBe(true);
    expect(r.pa).toBe(0x9123);
    expect(r.pageSize).toBe(4096);
    expect(r.global).toBe(false);
    expect(r.reads).toBe(4);
    expect(mem.stats.reads).toBe(4);
    expect(r.perms).toBe(Perm.PRIV_READ | Perm.PRIV_WRITE | Perm.USER_READ | Perm.USER_WRITE | Perm.USER_EXEC);
  });

  it("starts at level 1 for T0SZ = 25 (and 33) and level 2 for T0SZ = 34, indexing only the input bits", () => {
    const mem = newMem();
    const va = 0x40_3000;
    put(mem, 0x2000 + 8 * idx(va, 1), 0x3000n | TABLE);
    put(mem, 0x3000 + 8 * idx(va, 2), 0x4000n | TABLE);
    put(mem, 0x4000 + 8 * idx(va, 3), 0x7000n | PAGE);
    expect(walkStage1(mem, s1({ ttb: 0x2000, inputBits: 39 }), va, READ, newArmWalkResult()).pa).toBe(0x7000);
    expect(walkStage1(mem, s1({ ttb: 0x2000, inputBits: 31 }), va, READ, newArmWalkResult()).reads).toBe(3);
    const r = walkStage1(mem, s1({ ttb: 0x3000, inputBits: 30 }), va, READ, newArmWalkResult());
    expect(r.ok && r.pa === 0x7000 && r.reads === 2).toBe(true);
    expect(walkStage1(mem, s1({ ttb: 0x3000, inputBits: 30 }), 2 ** 30, READ, newArmWalkResult()).kind).toBe("translation");
  });

  it("maps 2 MiB blocks at level 2 and 1 GiB blocks at level 1; the bits below the block are ignored", () => {
    const mem = newMem();
    put(mem, 0x1000, 0x2000n | TABLE);
    put(mem, 0x2000, 0x4000_0000n | BLOCK | 0x1000n); // 1 GiB block at VA 0 (bit 12 RES0, ignored)
    put(mem, 0x2008, 0x3000n | TABLE);
    put(mem, 0x3000 + 8 * 3, 0x60_0000n | BLOCK);
    const g = walkStage1(mem, s1({ outputBits: 40 }), 0x1234_5678, READ, newArmWalkResult());
    expect([g.pa, g.pageSize]).toEqual([0x4000_0000 + 0x1234_5678, 2 ** 30]);
    const m = walkStage1(mem, s1(), 0x4000_0000 + 3 * 2 ** 21 + 0x1234, READ, newArmWalkResult());
    expect([m.pa, m.pageSize]).toEqual([0x60_1234, 2 ** 21]);
  });

  it("reports translation faults for an invalid descriptor, a level-0 block, a level-3 0b01 entry and an input beyond IS", () => {
    const mem = newMem();
    const out = newArmWalkResult();
    expect(walkStage1(mem, s1(), VA, READ, out)).toMatchObject({ ok: false, kind: "translation", level: 0 });
    put(mem, 0x1000 + 8 * idx(VA, 0), 0x4000_0000n | BLOCK);
    expect(walkStage1(mem, s1(), VA, READ, out)).toMatchObject({ kind: "translation", level: 0 });
    s1Tables(mem, VA, 0x9000n | V | AF);
    expect(walkStage1(mem, s1(), VA, READ, out)).toMatchObject({ kind: "translation", level: 3 });
    expect(walkStage1(mem, s1(), 2 ** 48, READ, out).kind).toBe("translation");
    expect(walkStage1(mem, s1(), -4096, READ, out).kind).toBe("translation");
  });

  it("reports an address-size fault for an output or table address at or above the output size, and for OA[49:48]", () => {
    const mem = newMem();
    s1Tables(mem, VA, 0x10_0000_0000n | PAGE);
    expect(walkStage1(mem, s1({ outputBits: 36 }), VA, READ, newArmWalkResult())).toMatchObject({ kind: "address-size", level: 3 });
    expect(walkStage1(mem, s1({ outputBits: 40 }), VA, READ, newArmWalkResult()).ok).toBe(true);
    s1Tables(mem, VA, 0x9000n | PAGE | (1n << 48n));
    expect(walkStage1(mem, s1(), VA, READ, newArmWalkResult())).toMatchObject({ kind: "address-size", level: 3 });
    put(mem, 0x1000 + 8 * idx(VA, 0), 0x20_0000_0000n | TABLE);
    expect(walkStage1(mem, s1({ outputBits: 36 }), VA, READ, newArmWalkResult())).toMatchObject({ kind: "address-size", level: 0 });
  });

  it("reports an external abort with the descriptor address when a table is not in memory", () => {
    const mem = newMem();
    put(mem, 0x1000 + 8 * idx(VA, 0), 0x80_0000_0000n | TABLE);
    const r = walkStage1(mem, s1(), VA, READ, newArmWalkResult());
    expect(r).toMatchObject({ kind: "external-abort", level: 1, fetchAddr: 0x80_0000_0000 + 8 * idx(VA, 1) });
  });

  it("faults on AF = 0 unless AFFD; with HA the walker sets AF in memory", () => {
    const mem = newMem();
    s1Tables(mem, VA, 0x9000n | V | T | AP1);
    const slot = 0x4000 + 8 * idx(VA, 3);
    expect(walkStage1(mem, s1(), VA, READ, newArmWalkResult())).toMatchObject({ kind: "access", level: 3 });
    expect(walkStage1(mem, s1({ affd: true }), VA, READ, newArmWalkResult()).ok).toBe(true);
    expect(get(mem, slot) & AF).toBe(0n);
    const r = walkStage1(mem, s1({ ha: true }), VA, READ, newArmWalkResult());
    expect(r.ok && r.writes === 1).toBe(true);
    expect(get(mem, slot) & AF).toBe(AF);
  });

  it("decodes AP[2:1]: privileged may read anything, EL0 needs AP[1], AP[2] makes it read-only", () => {
    const mem = newMem();
    const out = newArmWalkResult();
    s1Tables(mem, VA, 0x9000n | KPAGE); // AP = 00: privileged RW, EL0 none
    expect(walkStage1(mem, s1(), VA, { write: true, priv: true }, out).ok).toBe(true);
    expect(walkStage1(mem, s1(), VA, UREAD, out)).toMatchObject({ kind: "permission", level: 3 });
    s1Tables(mem, VA, 0x9000n | PAGE | AP2 | AP1); // AP = 11: RO for both
    expect(walkStage1(mem, s1(), VA, UREAD, out).ok).toBe(true);
    expect(walkStage1(mem, s1(), VA, { write: true, priv: true }, out).kind).toBe("permission");
  });

  it("honours UXN and PXN, and treats an EL0-writable page as privileged execute-never", () => {
    const mem = newMem();
    const out = newArmWalkResult();
    s1Tables(mem, VA, 0x9000n | PAGE | AP1 | AP2 | PXN);
    expect(walkStage1(mem, s1(), VA, { write: false, exec: true }, out).ok).toBe(true);
    expect(walkStage1(mem, s1(), VA, { write: false, exec: true, priv: true }, out).kind).toBe("permission");
    s1Tables(mem, VA, 0x9000n | PAGE | AP1 | UXN);
    expect(walkStage1(mem, s1(), VA, { write: false, exec: true }, out).kind).toBe("permission");
    expect(walkStage1(mem, s1(), VA, { write: false, exec: true, priv: true }, out).kind).toBe("permission");
    s1Tables(mem, VA, 0x9000n | KPAGE | UXN);
    expect(walkStage1(mem, s1(), VA, { write: false, exec: true, priv: true }, out).ok).toBe(true);
  });

  it("applies APTable below a table descriptor unless HAD", () => {
    const mem = newMem();
    s1Tables(mem, VA, 0x9000n | PAGE | AP1, TABLE | APT1, TABLE | APT0);
    expect(walkStage1(mem, s1(), VA, { write: true, priv: true }, newArmWalkResult()).kind).toBe("permission");
    expect(walkStage1(mem, s1(), VA, UREAD, newArmWalkResult()).kind).toBe("permission");
    expect(walkStage1(mem, s1(), VA, PREAD, newArmWalkResult()).ok).toBe(true);
    expect(walkStage1(mem, s1({ had: true }), VA, { write: true, priv: false }, newArmWalkResult()).ok).toBe(true);
  });

  it("with HD, a DBM page with AP[2] = 1 is writable-clean: a read leaves it read-only, the first write clears AP[2]", () => {
    const mem = newMem();
    s1Tables(mem, VA, 0x9000n | PAGE | AP1 | AP2 | DBM);
    const slot = 0x4000 + 8 * idx(VA, 3);
    expect(walkStage1(mem, s1(), VA, WRITE, newArmWalkResult()).kind).toBe("permission");
    const rd = walkStage1(mem, s1({ hd: true }), VA, READ, newArmWalkResult());
    expect(rd.ok && (rd.perms & Perm.USER_WRITE) === 0).toBe(true);
    const wr = walkStage1(mem, s1({ hd: true }), VA, WRITE, newArmWalkResult());
    expect(wr.ok && (wr.perms & Perm.USER_WRITE) !== 0).toBe(true);
    expect(get(mem, slot) & AP2).toBe(0n);
  });

  it("walks the TTB1 range with sign-extended addresses", () => {
    const mem = newMem();
    const va = -(2 ** 39) + 0x5000; // 0xffff_ff80_0000_5000 with IS = 39
    put(mem, 0x2000 + 8 * 0, 0x3000n | TABLE);
    put(mem, 0x3000 + 8 * 0, 0x4000n | TABLE);
    put(mem, 0x4000 + 8 * 5, 0x8000n | PAGE);
    const r = walkStage1(mem, s1({ ttb: 0x2000, inputBits: 39, upper: true }), va, READ, newArmWalkResult());
    expect(r.ok && r.pa === 0x8000).toBe(true);
    expect(walkStage1(mem, s1({ ttb: 0x2000, inputBits: 39, upper: true }), 2 ** 64 - 2 ** 39 + 0x5000, READ, newArmWalkResult()).ok).toBe(true);
    expect(walkStage1(mem, s1({ ttb: 0x2000, inputBits: 39, upper: true }), -(2 ** 39) - 4096, READ, newArmWalkResult()).kind).toBe("translation");
  });
});

describe("stage-2 walk", () => {
  it("starts at 2 − SL0 and decodes S2AP", () => {
    const mem = newMem();
    const ipa = 0x4_0020_3000;
    put(mem, 0x2000 + 8 * idx(ipa, 1), 0x3000n | TABLE);
    put(mem, 0x3000 + 8 * idx(ipa, 2), 0x4000n | TABLE);
    put(mem, 0x4000 + 8 * idx(ipa, 3), 0x9000n | PAGE | S2R | MEMATTR_WB);
    const c = s2({ ttb: 0x2000, inputBits: 39, startLevel: 1 });
    const r = walkStage2(mem, c, ipa + 8, READ, false, newArmWalkResult());
    expect(r.ok && r.pa === 0x9008 && r.reads === 3).toBe(true);
    expect(walkStage2(mem, c, ipa, WRITE, false, newArmWalkResult())).toMatchObject({ kind: "permission", stage: 2, level: 3 });
    expect(walkStage2(mem, c, 2 ** 39, READ, false, newArmWalkResult()).kind).toBe("translation");
  });

  it("indexes concatenated start-level tables with the extra input bits (IS = 40 at level 1: two tables)", () => {
    const mem = newMem();
    const ipa = 2 ** 39 + 0x20_3000; // lands in the second concatenated table
    const slot = 0x2000 + 8 * Math.floor(ipa / 2 ** 30);
    expect(slot).toBe(0x3000 + 8 * 0);
    put(mem, slot, 0x5000n | TABLE);
    put(mem, 0x5000 + 8 * idx(ipa, 2), 0x6000n | TABLE);
    put(mem, 0x6000 + 8 * idx(ipa, 3), 0xa000n | PAGE | S2R | S2W);
    const r = walkStage2(mem, s2({ ttb: 0x2000, inputBits: 40, startLevel: 1 }), ipa, WRITE, false, newArmWalkResult());
    expect(r.ok && r.pa === 0xa000).toBe(true);
  });

  it("decodes XN[1] alone without XNX, and both XN bits with XNX", () => {
    const mem = newMem();
    const ipa = 0x3000;
    const setLeaf = (x: bigint): void => {
      put(mem, 0x1000, 0x2000n | TABLE);
      put(mem, 0x2000, 0x3000n | TABLE);
      put(mem, 0x3000, 0x4000n | TABLE);
      put(mem, 0x4000 + 8 * 3, 0x9000n | PAGE | S2R | x);
    };
    const ex = (c: ArmS2Config, priv: boolean): boolean => walkStage2(mem, c, ipa, { write: false, exec: true, priv }, false, newArmWalkResult()).ok;
    setLeaf(XN0);
    expect([ex(s2(), true), ex(s2(), false)]).toEqual([true, true]);
    expect([ex(s2({ xnx: true }), true), ex(s2({ xnx: true }), false)]).toEqual([false, true]);
    setLeaf(XN1 | XN0);
    expect([ex(s2({ xnx: true }), true), ex(s2({ xnx: true }), false)]).toEqual([true, false]);
    expect(ex(s2(), true)).toBe(false);
  });
});

describe("nested walk (stage 1 over stage 2)", () => {
  // Stage-1 tables at IPAs 0x1000..0x4000 and the page at IPA 0x9000, stage 2 maps IPA g to PA g + SHIFT.
  const SHIFT = 0x1000_0000;
  function nested(opts: { s2Perm?: bigint } = {}): { mem: SparseMemory; s2cfg: ArmS2Config } {
    const mem = newMem();
    const pool = new PagePool(mem, 0x2000_0000, 0x10_0000);
    const w = ArmTableWriter.stage2(mem, { alloc: pool.alloc, free: pool.free });
    w.map(0, SHIFT, 0x10_0000, { write: true }, 4096);
    if (opts.s2Perm !== undefined) put(mem, 0, 0n); // keep the type checker honest about unused options
    put(mem, SHIFT + 0x1000 + 8 * idx(VA, 0), 0x2000n | TABLE);
    put(mem, SHIFT + 0x2000 + 8 * idx(VA, 1), 0x3000n | TABLE);
    put(mem, SHIFT + 0x3000 + 8 * idx(VA, 2), 0x4000n | TABLE);
    put(mem, SHIFT + 0x4000 + 8 * idx(VA, 3), 0x9000n | PAGE | AP1);
    put(mem, SHIFT + 0x4000 + 8 * (idx(VA, 3) + 1), 0xa000n | PAGE | AP1);
    return { mem, s2cfg: s2({ ttb: w.root }) };
  }

  it("translates every table address and the output through stage 2: 24 references cold", () => {
    const { mem, s2cfg } = nested();
    resetStats(mem.stats);
    const r = walkStage1(mem, s1(), VA + 4, READ, newArmWalkResult(), { stage2: stage2Of(mem, s2cfg) });
    expect(r.ok && r.pa === SHIFT + 0x9004).toBe(true);
    expect(r.reads).toBe(24);
    expect(mem.stats.reads).toBe(24);
  });

  it("with walk caches on both stages the neighbouring page costs 2 references", () => {
    const { mem, s2cfg } = nested();
    const s1wc = new ArmWalkCache("s1", 64);
    const s2wc = new ArmWalkCache("s2", 64);
    const opts = { stage2: stage2Of(mem, s2cfg, { walkCache: { cache: s2wc, tag: 1 } }), walkCache: { cache: s1wc, tag: 1 } };
    walkStage1(mem, s1(), VA, READ, newArmWalkResult(), opts);
    resetStats(mem.stats);
    const r = walkStage1(mem, s1(), VA + 4096, READ, newArmWalkResult(), opts);
    expect(r.ok && r.pa === SHIFT + 0xa000).toBe(true);
    expect(mem.stats.reads).toBe(2);
  });

  it("reports a stage-2 fault on a stage-1 table as stage 2, phase table, with the IPA", () => {
    const { mem, s2cfg } = nested();
    put(mem, SHIFT + 0x2000 + 8 * idx(VA, 1), 0x20_0000n | TABLE); // IPA beyond the stage-2 mapping
    const r = walkStage1(mem, s1(), VA, READ, newArmWalkResult(), { stage2: stage2Of(mem, s2cfg) });
    expect(r).toMatchObject({ ok: false, kind: "translation", stage: 2, s2Phase: "table", ipa: 0x20_0000 });
  });

  it("reports a stage-2 fault on the output IPA as phase output", () => {
    const { mem, s2cfg } = nested();
    put(mem, SHIFT + 0x4000 + 8 * idx(VA, 3), 0x30_0000n | PAGE | AP1);
    const r = walkStage1(mem, s1(), VA, READ, newArmWalkResult(), { stage2: stage2Of(mem, s2cfg) });
    expect(r).toMatchObject({ ok: false, stage: 2, s2Phase: "output", ipa: 0x30_0000 });
  });
});

describe("AArch64 table writer", () => {
  it("builds stage-1 tables the walker reads, in 4 KiB, 2 MiB and 1 GiB leaves", () => {
    const mem = newMem();
    const pool = new PagePool(mem, 0x100_0000, 0x100_0000);
    const w = ArmTableWriter.stage1(mem, { alloc: pool.alloc });
    w.map(0x4000_0000, 0x8000_0000, 2 ** 30, { write: true });
    w.map(0x20_0000, 0x60_0000, 2 ** 21, { write: false, exec: true });
    w.map(0x1000, 0x5000, 0x1000, { write: true, user: false, global: true });
    const c = s1({ ttb: w.root, outputBits: 40 });
    expect(walkStage1(mem, c, 0x4000_1234, WRITE, newArmWalkResult())).toMatchObject({ ok: true, pa: 0x8000_1234, pageSize: 2 ** 30 });
    expect(walkStage1(mem, c, 0x20_0010, { write: false, exec: true }, newArmWalkResult())).toMatchObject({ ok: true, pa: 0x60_0010, pageSize: 2 ** 21 });
    expect(walkStage1(mem, c, 0x1000, UREAD, newArmWalkResult()).kind).toBe("permission");
    expect(walkStage1(mem, c, 0x1000, PREAD, newArmWalkResult())).toMatchObject({ ok: true, global: true });
    expect(() => w.map(0x1000, 0x7000, 0x1000, { write: true })).toThrow(/already mapped/);
    w.protect(0x1000, 0x1000, { write: false });
    expect(walkStage1(mem, c, 0x1000, WRITE, newArmWalkResult()).kind).toBe("permission");
    expect(w.unmap(0x4000_0000, 2 ** 30)).toBe(2 ** 30);
    expect(walkStage1(mem, c, 0x4000_0000, READ, newArmWalkResult()).kind).toBe("translation");
  });

  it("leaves the tables untouched on ENOMEM", () => {
    const mem = newMem();
    const pool = new PagePool(mem, 0x100_0000, 0x2000);
    const w = ArmTableWriter.stage1(mem, { alloc: pool.alloc });
    const before = w.mappings();
    expect(() => w.map(0x1000, 0x5000, 0x1000, { write: true })).toThrow(/out of table pages/);
    expect(w.mappings()).toEqual(before);
    expect(get(mem, w.root + 0)).toBe(0n);
  });

  it("writes concatenated stage-2 tables and refuses a call that crosses from one to the next", () => {
    const mem = newMem();
    const pool = new PagePool(mem, 0x100_0000, 0x10_0000);
    const w = ArmTableWriter.stage2(mem, { alloc: pool.alloc, root: 0x20_0000, t0sz: 24, sl0: 1 });
    w.map(2 ** 39 + 0x1000, 0x7000, 0x1000, { write: true });
    const c = s2({ ttb: 0x20_0000, inputBits: 40, startLevel: 1 });
    expect(walkStage2(mem, c, 2 ** 39 + 0x1000, WRITE, false, newArmWalkResult()).pa).toBe(0x7000);
    expect(() => w.map(2 ** 39 - 0x1000, 0, 0x2000, { write: true })).toThrow(/crosses/);
    expect(w.lookup(2 ** 39 + 0x1000)?.pa).toBe(0x7000);
    expect(() => ArmTableWriter.stage2(mem, { alloc: pool.alloc, t0sz: 24, sl0: 1 })).toThrow(/concatenated/);
    expect(() => ArmTableWriter.stage2(mem, { alloc: pool.alloc, t0sz: 16, sl0: 1 })).toThrow(/concatenated tables/);
  });

  it("agrees with a model map under random map/unmap (property)", () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ op: fc.constantFrom("map", "unmap"), page: fc.integer({ min: 0, max: 63 }), n: fc.integer({ min: 1, max: 4 }), w: fc.boolean() }), { maxLength: 25 }),
        (ops) => {
          const mem = newMem();
          const pool = new PagePool(mem, 0x100_0000, 0x100_0000);
          const w = ArmTableWriter.stage1(mem, { alloc: pool.alloc, inputBits: 39 });
          const model = new Map<number, { pa: number; w: boolean }>();
          const base = 0x7f_c000_0000;
          for (const o of ops) {
            const va = base + o.page * 4096;
            if (o.op === "map") {
              const free = [...Array(o.n).keys()].every((i) => !model.has(o.page + i));
              if (free) {
                w.map(va, 0x200_0000 + o.page * 4096, o.n * 4096, { write: o.w });
                for (let i = 0; i < o.n; i++) model.set(o.page + i, { pa: 0x200_0000 + (o.page + i) * 4096, w: o.w });
              } else expect(() => w.map(va, 0, o.n * 4096, { write: o.w })).toThrow();
            } else {
              w.unmap(va, o.n * 4096);
              for (let i = 0; i < o.n; i++) model.delete(o.page + i);
            }
          }
          const c = s1({ ttb: w.root, inputBits: 39 });
          for (let p = 0; p < 68; p++) {
            const r = walkStage1(mem, c, base + p * 4096, WRITE, newArmWalkResult());
            const m = model.get(p);
            if (m === undefined) expect(r.kind).toBe("translation");
            else if (m.w) expect(r.ok && r.pa === m.pa).toBe(true);
            else expect(r.kind).toBe("permission");
          }
        },
      ),
      { numRuns: 60 },
    );
  });
});
