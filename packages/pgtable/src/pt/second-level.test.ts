import { describe, expect, it } from "vitest";
import { SparseMemory } from "../mem/sparse-memory.js";
import { u64, u64ToBigInt } from "../mem/phys-mem.js";
import { walkSecondLevel } from "./second-level.js";
import { SL_PDE_2M, SL_PDPTE_1G, SL_PTE, slReservedMask } from "./sl-pte.js";
import type { SecondLevelConfig, WalkAccess } from "./types.js";
import { newWalkResult, toOutcome } from "./walk-result.js";

// Hand-encoded second-level entries (VT-d spec §9.8).
const R = 1n << 0n;
const W = 1n << 1n;
const X = 1n << 2n;
const PS = 1n << 7n;
const A = 1n << 8n;
const D = 1n << 9n;
const SNP = 1n << 11n;
const TM = 1n << 62n;
const RW = R | W;

const READ: WalkAccess = { write: false };
const WRITE: WalkAccess = { write: true };
const EXEC: WalkAccess = { write: false, exec: true };

function memory(): SparseMemory {
  return new SparseMemory({ addrBits: 46, regions: [{ base: 0, size: 0x8000_0000 }] });
}

function put(mem: SparseMemory, addr: number, v: bigint): void {
  mem.write64(addr, Number(v & 0xffff_ffffn), Number(v >> 32n));
}

function get(mem: SparseMemory, addr: number): bigint {
  const out = u64();
  expect(mem.read64(addr, out)).toBe(true);
  return u64ToBigInt(out);
}

function cfg(over: Partial<SecondLevelConfig> = {}): SecondLevelConfig {
  return {
    root: 0x1000,
    levels: 4,
    addrBits: 46,
    pages2m: true,
    pages1g: true,
    slee: false,
    slade: false,
    snoopControl: true,
    deviceTlb: true,
    ...over,
  };
}

/** A chain of `levels` tables from 0x1000 (one page each, index 0 at every level but the last) to the leaf at PT[1]. */
function chain(mem: SparseMemory, levels: number, leaf: bigint = 0x50_0000n | RW, table: bigint = RW): number[] {
  const entries: number[] = [];
  let t = 0x1000;
  for (let l = levels; l > 1; l--) {
    put(mem, t, BigInt(t + 0x1000) | table);
    entries.push(t);
    t += 0x1000;
  }
  put(mem, t + 8, leaf);
  entries.push(t + 8);
  return entries;
}

function walk(mem: SparseMemory, c: SecondLevelConfig, addr: number, access: WalkAccess) {
  return toOutcome(walkSecondLevel(mem, c, addr, access, newWalkResult()));
}

describe("second-level entry layout", () => {
  it("places R, W, X, EMT, IPAT, PS, A, D, SNP, TM and the address where VT-d defines them", () => {
    expect(SL_PTE.bit("R")).toEqual({ word: 0, mask: 1 });
    expect(SL_PTE.bit("W")).toEqual({ word: 0, mask: 2 });
    expect(SL_PTE.bit("X")).toEqual({ word: 0, mask: 4 });
    expect(SL_PTE.spec("EMT")).toMatchObject({ msb: 5, lsb: 3 });
    expect(SL_PTE.bit("IPAT")).toEqual({ word: 0, mask: 0x40 });
    expect(SL_PTE.bit("PS")).toEqual({ word: 0, mask: 0x80 });
    expect(SL_PTE.bit("A")).toEqual({ word: 0, mask: 0x100 });
    expect(SL_PTE.bit("D")).toEqual({ word: 0, mask: 0x200 });
    expect(SL_PTE.bit("SNP")).toEqual({ word: 0, mask: 0x800 });
    expect(SL_PTE.bit("TM")).toEqual({ word: 1, mask: 0x4000_0000 });
    expect(SL_PTE.spec("ADDR")).toMatchObject({ msb: 51, lsb: 12 });
    expect(SL_PDE_2M.spec("ADDR")).toMatchObject({ lsb: 21 });
    expect(SL_PDPTE_1G.spec("ADDR")).toMatchObject({ lsb: 30 });
  });

  it("derives per-level reserved masks from level, superpage, capabilities and host address width", () => {
    const all = { addrBits: 52, pages2m: true, pages1g: true, snoopControl: true, deviceTlb: true };
    const m = (level: number, large: boolean, o: Partial<typeof all> = {}) => u64ToBigInt(slReservedMask(level, large, { ...all, ...o }, u64()));
    expect(m(1, false)).toBe(0n);
    expect(m(4, false)).toBe(PS);
    expect(m(5, false)).toBe(PS);
    expect(m(3, false)).toBe(0n);
    expect(m(3, false, { pages1g: false })).toBe(PS);
    expect(m(2, false, { pages2m: false })).toBe(PS);
    expect(m(2, true)).toBe(0x1f_f000n); // 20:12
    expect(m(3, true)).toBe(0x3fff_f000n); // 29:12
    expect(m(1, false, { snoopControl: false })).toBe(SNP);
    expect(m(1, false, { deviceTlb: false })).toBe(TM);
    expect(m(1, false, { addrBits: 40 })).toBe(((1n << 52n) - 1n) & ~((1n << 40n) - 1n));
  });
});

describe("second-level walk", () => {
  it("walks 3, 4 or 5 levels as the AGAW says, one reference per level", () => {
    for (const levels of [3, 4, 5] as const) {
      const mem = memory();
      chain(mem, levels);
      const r = walkSecondLevel(mem, cfg({ levels }), 0x1abc, READ, newWalkResult());
      expect(toOutcome(r)).toEqual({ ok: true, pa: 0x50_0abc, pageSize: 4096, read: true, write: true, exec: true, user: true });
      expect(r.reads).toBe(levels);
    }
  });

  it("refuses an input address beyond the AGAW with an address-width fault and no reference", () => {
    const mem = memory();
    chain(mem, 3);
    const r = walkSecondLevel(mem, cfg({ levels: 3 }), 2 ** 39, READ, newWalkResult());
    expect(toOutcome(r)).toMatchObject({ ok: false, kind: "address-width", stage: "second", level: 0 });
    expect(r.reads).toBe(0);
    expect(walk(mem, cfg({ levels: 3 }), -4096, READ)).toMatchObject({ kind: "address-width" });
    expect(walk(mem, cfg({ levels: 4 }), 2 ** 39, READ)).toMatchObject({ kind: "not-present", level: 4 });
  });

  it("maps 2 MiB and 1 GiB superpages where SLLPS allows and calls PS reserved where it does not", () => {
    const mem = memory();
    put(mem, 0x1000, 0x2000n | RW);
    put(mem, 0x2000, 0x3000n | RW);
    put(mem, 0x2000 + 8, 0x4000_0000n | RW | PS); // 1 GiB at GPA 1 GiB
    put(mem, 0x3000 + 8, 0x60_0000n | RW | PS); // 2 MiB at GPA 2 MiB
    expect(walk(mem, cfg(), 0x20_1234, READ)).toMatchObject({ ok: true, pa: 0x60_1234, pageSize: 2 ** 21 });
    expect(walk(mem, cfg(), 0x4123_4567, READ)).toMatchObject({ ok: true, pa: 0x4123_4567, pageSize: 2 ** 30 });
    expect(walk(mem, cfg({ pages2m: false }), 0x20_1234, READ)).toMatchObject({ ok: false, kind: "reserved", level: 2 });
    expect(walk(mem, cfg({ pages1g: false }), 0x4123_4567, READ)).toMatchObject({ ok: false, kind: "reserved", level: 3 });
    put(mem, 0x1000, 0x2000n | RW | PS);
    expect(walk(mem, cfg(), 0x20_1234, READ)).toMatchObject({ ok: false, kind: "reserved", level: 4 });
  });

  it("reports reserved bits in superpage frames, SNP without snoop control, TM without device TLB, and above the HAW", () => {
    const cases: [string, bigint, Partial<SecondLevelConfig>, number][] = [
      ["SNP without SC", 0x50_0000n | RW | SNP, { snoopControl: false }, 1],
      ["TM without DT", 0x50_0000n | RW | TM, { deviceTlb: false }, 1],
      ["bit above HAW", (1n << 46n) | 0x50_0000n | RW, {}, 1],
    ];
    for (const [name, leaf, over, level] of cases) {
      const mem = memory();
      chain(mem, 4, leaf);
      expect(walk(mem, cfg(over), 0x1000, READ), name).toMatchObject({ ok: false, kind: "reserved", level });
      expect(walk(mem, cfg(), 0x1000, READ), `${name} with the capability`).toMatchObject({ ok: name === "bit above HAW" ? false : true });
    }
    const mem = memory();
    put(mem, 0x1000, 0x2000n | RW);
    put(mem, 0x2000, 0x3000n | RW);
    put(mem, 0x3000, 0x20_0000n | (1n << 12n) | RW | PS);
    expect(walk(mem, cfg(), 0x1000, READ)).toMatchObject({ ok: false, kind: "reserved", level: 2 });
    put(mem, 0x2000, 0x4000_0000n | (1n << 20n) | RW | PS);
    expect(walk(mem, cfg(), 0x1000, READ)).toMatchObject({ ok: false, kind: "reserved", level: 3 });
  });

  it("calls an entry with R=W=0 not present at its level, even with X set", () => {
    const mem = memory();
    const e = chain(mem, 4);
    put(mem, e[1] ?? 0, 0x3000n | X);
    expect(walk(mem, cfg({ slee: true }), 0x1000, READ)).toMatchObject({ ok: false, kind: "not-present", level: 3 });
  });

  it("reports a table-abort for a table outside memory", () => {
    const mem = memory();
    expect(walk(mem, cfg({ root: 0x1_0000_0000 }), 0x1000, READ)).toMatchObject({ ok: false, kind: "table-abort", level: 4 });
  });

  it("ANDs R and W over all levels and names the highest level that denied", () => {
    const mem = memory();
    const e = chain(mem, 4);
    put(mem, e[1] ?? 0, 0x3000n | R); // level 3 read-only
    expect(walk(mem, cfg(), 0x1000, WRITE)).toMatchObject({ ok: false, kind: "permission", denied: "write", level: 3 });
    expect(walk(mem, cfg(), 0x1000, READ)).toMatchObject({ ok: true, write: false });
    put(mem, e[3] ?? 0, 0x50_0000n | W); // write-only leaf
    expect(walk(mem, cfg(), 0x1000, READ)).toMatchObject({ ok: false, kind: "permission", denied: "read", level: 1 });
  });

  it("honours X only when SLEE is set", () => {
    const mem = memory();
    chain(mem, 4, 0x50_0000n | RW, RW | X); // leaf without X
    expect(walk(mem, cfg({ slee: true }), 0x1000, EXEC)).toMatchObject({ ok: false, kind: "permission", denied: "execute", level: 1 });
    expect(walk(mem, cfg({ slee: false }), 0x1000, EXEC)).toMatchObject({ ok: true, exec: true });
    const mem2 = memory();
    chain(mem2, 4, 0x50_0000n | RW | X, RW | X);
    expect(walk(mem2, cfg({ slee: true }), 0x1000, EXEC)).toMatchObject({ ok: true, exec: true });
  });

  it("sets A on every level and D on the leaf for a write only when SLADE is set", () => {
    const mem = memory();
    const e = chain(mem, 4);
    walk(mem, cfg({ slade: false }), 0x1000, WRITE);
    for (const a of e) expect(get(mem, a) & (A | D)).toBe(0n);
    walk(mem, cfg({ slade: true }), 0x1000, READ);
    for (const a of e) expect(get(mem, a) & (A | D)).toBe(A);
    walk(mem, cfg({ slade: true }), 0x1000, WRITE);
    expect(get(mem, e[3] ?? 0) & (A | D)).toBe(A | D);
    expect(get(mem, e[2] ?? 0) & D).toBe(0n);
  });
});
