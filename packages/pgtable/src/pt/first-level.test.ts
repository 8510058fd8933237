import { describe, expect, it } from "vitest";
import { SparseMemory } from "../mem/sparse-memory.js";
import { u64, u64ToBigInt } from "../mem/phys-mem.js";
import { walkFirstLevel } from "./first-level.js";
import type { FirstLevelConfig, WalkAccess } from "./types.js";
import { newWalkResult, toOutcome } from "./walk-result.js";
import { X86_PDE_2M, X86_PTE, x86ReservedMask } from "./x86-pte.js";

// Hand-encoded entries: raw qwords written into memory, bit by bit from the
// SDM / VT-d spec §9.7 tables, so the walker is not tested against itself.
const P = 1n << 0n;
const RW = 1n << 1n;
const US = 1n << 2n;
const A = 1n << 5n;
const D = 1n << 6n;
const PS = 1n << 7n;
const EA = 1n << 10n;
const PAT_LARGE = 1n << 12n;
const XD = 1n << 63n;
const URW = P | RW | US;

const READ: WalkAccess = { write: false };
const WRITE: WalkAccess = { write: true };
const SUP_READ: WalkAccess = { write: false, priv: true };
const SUP_WRITE: WalkAccess = { write: true, priv: true };
const EXEC: WalkAccess = { write: false, exec: true };

function memory(): SparseMemory {
  return new SparseMemory({ addrBits: 46, regions: [{ base: 0, size: 0x4000_0000 }] });
}

function put(mem: SparseMemory, addr: number, v: bigint): void {
  mem.write64(addr, Number(v & 0xffff_ffffn), Number(v >> 32n));
}

function get(mem: SparseMemory, addr: number): bigint {
  const out = u64();
  expect(mem.read64(addr, out)).toBe(true);
  return u64ToBigInt(out);
}

function cfg(over: Partial<FirstLevelConfig> = {}): FirstLevelConfig {
  return { root: 0x1000, levels: 4, addrBits: 46, sre: true, wpe: true, nxe: true, ere: true, eafe: false, pages1g: true, ...over };
}

/** PML4 0x1000 -> PDPT 0x2000 -> PD 0x3000 -> PT 0x4000; VA 0x1000 -> PA 0x5000. Returns entry addresses. */
function fourLevel(mem: SparseMemory, leaf = 0x5000n | URW, table = URW): { pml4e: number; pdpte: number; pde: number; pte: number } {
  put(mem, 0x1000, 0x2000n | table);
  put(mem, 0x2000, 0x3000n | table);
  put(mem, 0x3000, 0x4000n | table);
  put(mem, 0x4000 + 8, leaf);
  return { pml4e: 0x1000, pdpte: 0x2000, pde: 0x3000, pte: 0x4008 };
}

function walk(mem: SparseMemory, c: FirstLevelConfig, va: number, access: WalkAccess) {
  return toOutcome(walkFirstLevel(mem, c, va, access, newWalkResult()));
}

describe("first-level entry layout", () => {
  it("places each x86-64 field at its architectural bit", () => {
    const bits: [Parameters<typeof X86_PTE.bit>[0], number, number][] = [
      ["P", 0, 1],
      ["RW", 0, 2],
      ["US", 0, 4],
      ["PWT", 0, 8],
      ["PCD", 0, 0x10],
      ["A", 0, 0x20],
      ["D", 0, 0x40],
      ["PS", 0, 0x80],
      ["G", 0, 0x100],
      ["EA", 0, 0x400],
      ["XD", 1, 0x8000_0000],
    ];
    for (const [f, word, mask] of bits) expect(X86_PTE.bit(f)).toEqual({ word, mask });
    expect(X86_PTE.spec("ADDR")).toMatchObject({ msb: 51, lsb: 12 });
    expect(X86_PDE_2M.spec("ADDR")).toMatchObject({ msb: 51, lsb: 21 });
    expect(X86_PDE_2M.spec("PAT")).toMatchObject({ msb: 12, lsb: 12 });
  });

  it("has reserved masks that depend on level, page size and host address width", () => {
    const m = (level: number, large: boolean, addrBits: number, pages1g = true) =>
      u64ToBigInt(x86ReservedMask(level, large, { addrBits, pages1g }, u64()));
    const haw46 = ((1n << 52n) - 1n) & ~((1n << 46n) - 1n);
    expect(m(1, false, 46)).toBe(haw46);
    expect(m(2, false, 46)).toBe(haw46);
    expect(m(4, false, 46)).toBe(haw46 | PS);
    expect(m(5, false, 52)).toBe(PS);
    expect(m(2, true, 52)).toBe(0x1f_e000n); // bits 20:13
    expect(m(3, true, 52)).toBe(0x3fff_e000n); // bits 29:13
    expect(m(3, true, 52, false)).toBe(0x3fff_e000n | PS);
    expect(m(3, false, 39)).toBe(((1n << 52n) - 1n) & ~((1n << 39n) - 1n));
  });
});

describe("first-level walk: translation", () => {
  it("translates a 4 KiB page through four levels with one reference per level and the offset kept", () => {
    const mem = memory();
    fourLevel(mem);
    const r = walkFirstLevel(mem, cfg(), 0x1abc, READ, newWalkResult());
    expect(toOutcome(r)).toEqual({ ok: true, pa: 0x5abc, pageSize: 4096, read: true, write: true, exec: true, user: true });
    expect(r.reads).toBe(4);
  });

  it("sets A in every entry traversed and D only in the leaf, and only for a write", () => {
    const mem = memory();
    const e = fourLevel(mem);
    walk(mem, cfg(), 0x1000, READ);
    for (const a of [e.pml4e, e.pdpte, e.pde]) expect(get(mem, a) & (A | D)).toBe(A);
    expect(get(mem, e.pte) & (A | D)).toBe(A);
    walk(mem, cfg(), 0x1000, WRITE);
    for (const a of [e.pml4e, e.pdpte, e.pde]) expect(get(mem, a) & D).toBe(0n);
    expect(get(mem, e.pte) & (A | D)).toBe(A | D);
  });

  it("writes nothing when A and D are already set", () => {
    const mem = memory();
    fourLevel(mem, 0x5000n | URW | A | D, URW | A);
    const r = walkFirstLevel(mem, cfg(), 0x1000, WRITE, newWalkResult());
    expect(r.ok).toBe(true);
    expect(r.writes).toBe(0);
  });

  it("sets the extended-accessed flag with A only when EAFE is set", () => {
    const mem = memory();
    const e = fourLevel(mem);
    walk(mem, cfg(), 0x1000, READ);
    expect(get(mem, e.pde) & EA).toBe(0n);
    walk(mem, cfg({ eafe: true }), 0x1000, READ);
    for (const a of [e.pml4e, e.pdpte, e.pde, e.pte]) expect(get(mem, a) & (A | EA)).toBe(A | EA);
  });

  it("walks five levels with FLPM=1, indexing the PML5 with VA[56:48]", () => {
    const mem = memory();
    const va = 3 * 2 ** 48 + 5 * 2 ** 39 + 0x1234;
    put(mem, 0x1000 + 3 * 8, 0x2000n | URW); // PML5E[3]
    put(mem, 0x2000 + 5 * 8, 0x3000n | URW); // PML4E[5]
    put(mem, 0x3000, 0x4000n | URW);
    put(mem, 0x4000, 0x6000n | URW);
    put(mem, 0x6000 + 1 * 8, 0x7000n | URW);
    const r = walkFirstLevel(mem, cfg({ levels: 5 }), va, READ, newWalkResult());
    expect(toOutcome(r)).toMatchObject({ ok: true, pa: 0x7234, pageSize: 4096 });
    expect(r.reads).toBe(5);
  });

  it("maps a 2 MiB page with PS in the PDE, ignoring its PAT bit as an address bit", () => {
    const mem = memory();
    put(mem, 0x1000, 0x2000n | URW);
    put(mem, 0x2000, 0x3000n | URW);
    put(mem, 0x3000 + 8, 0x60_0000n | URW | PS | PAT_LARGE); // PDE[1]: VA 2 MiB..4 MiB
    const r = walkFirstLevel(mem, cfg(), 0x20_0000 + 0x1_2345, READ, newWalkResult());
    expect(toOutcome(r)).toMatchObject({ ok: true, pa: 0x61_2345, pageSize: 2 ** 21 });
    expect(r.reads).toBe(3);
  });

  it("maps a 1 GiB page with PS in the PDPTE when 1 GiB pages are supported", () => {
    const mem = memory();
    put(mem, 0x1000, 0x2000n | URW);
    put(mem, 0x2000 + 2 * 8, 0x4000_0000n | URW | PS);
    const va = 2 * 2 ** 30 + 0x2345_6789;
    expect(walk(mem, cfg(), va, READ)).toMatchObject({ ok: true, pa: 0x6345_6789, pageSize: 2 ** 30 });
    expect(walk(mem, cfg({ pages1g: false }), va, READ)).toMatchObject({ ok: false, kind: "reserved", level: 3 });
  });

  it("treats an upper-half address given signed or unsigned alike", () => {
    const mem = memory();
    // PML4E[256] covers 0xffff_8000_0000_0000.
    put(mem, 0x1000 + 256 * 8, 0x2000n | URW);
    put(mem, 0x2000, 0x3000n | URW);
    put(mem, 0x3000, 0x4000n | URW);
    put(mem, 0x4000 + 8, 0x9000n | URW);
    const signed = -(2 ** 47) + 0x1008;
    expect(walk(mem, cfg(), signed, SUP_READ)).toMatchObject({ ok: true, pa: 0x9008 });
    expect(walk(mem, cfg(), 2 ** 64 - 2 ** 47 + 0x1000, SUP_READ)).toMatchObject({ ok: true, pa: 0x9000 });
  });
});

describe("first-level walk: faults", () => {
  it("reports a not-present entry at the level where P=0", () => {
    for (const [level, addr] of [[4, 0x1000], [3, 0x2000], [2, 0x3000], [1, 0x4008]] as const) {
      const mem = memory();
      fourLevel(mem);
      put(mem, addr, get(mem, addr) & ~P);
      expect(walk(mem, cfg(), 0x1000, READ)).toMatchObject({ ok: false, kind: "not-present", stage: "first", level });
    }
  });

  it("sets A on the upper levels even when the walk then faults, but never on the faulting leaf", () => {
    const mem = memory();
    const e = fourLevel(mem, 0x5000n | P | US); // read-only leaf
    expect(walk(mem, cfg(), 0x1000, WRITE)).toMatchObject({ ok: false, kind: "permission", denied: "write", level: 1 });
    for (const a of [e.pml4e, e.pdpte, e.pde]) expect(get(mem, a) & A).toBe(A);
    expect(get(mem, e.pte) & (A | D)).toBe(0n);
  });

  it("reports a table-abort when an entry lies in memory that does not exist", () => {
    const mem = memory();
    expect(walk(mem, cfg({ root: 0x8000_0000 }), 0x1000, READ)).toMatchObject({ ok: false, kind: "table-abort", level: 4 });
    fourLevel(mem);
    put(mem, 0x3000, 0x8000_0000n | URW);
    expect(walk(mem, cfg(), 0x1000, READ)).toMatchObject({ ok: false, kind: "table-abort", level: 1 });
  });

  it("reports reserved bits: PS in a PML4E or PML5E, large-page frame bits, and address bits above the HAW", () => {
    const cases: [string, (mem: SparseMemory) => void, number][] = [
      ["PS in PML4E", (m) => put(m, 0x1000, 0x2000n | URW | PS), 4],
      ["HAW bit in PDPTE", (m) => put(m, 0x2000, (1n << 46n) | 0x3000n | URW), 3],
      ["2 MiB frame bit 13", (m) => put(m, 0x3000, 0x20_0000n | (1n << 13n) | URW | PS), 2],
      ["1 GiB frame bit 29", (m) => put(m, 0x2000, 0x4000_0000n | (1n << 29n) | URW | PS), 3],
      ["HAW bit in PTE", (m) => put(m, 0x4008, (1n << 51n) | 0x5000n | URW), 1],
    ];
    for (const [name, corrupt, level] of cases) {
      const mem = memory();
      fourLevel(mem);
      corrupt(mem);
      expect(walk(mem, cfg(), 0x1000, READ), name).toMatchObject({ ok: false, kind: "reserved", level });
    }
    const mem = memory();
    put(mem, 0x1000, 0x2000n | URW | PS); // PML5E
    expect(walk(mem, cfg({ levels: 5 }), 0x1000, READ)).toMatchObject({ ok: false, kind: "reserved", level: 5 });
  });

  it("refuses a non-canonical address before any memory reference", () => {
    const mem = memory();
    fourLevel(mem);
    for (const va of [2 ** 47, -(2 ** 47) - 4096, 2 ** 52]) {
      const r = walkFirstLevel(mem, cfg(), va, READ, newWalkResult());
      expect(toOutcome(r)).toMatchObject({ ok: false, kind: "non-canonical", level: 0 });
      expect(r.reads).toBe(0);
    }
    // 2^47 is canonical with five levels.
    expect(walk(mem, cfg({ levels: 5 }), 2 ** 47, READ)).toMatchObject({ kind: "not-present" });
    expect(walk(mem, cfg({ levels: 5 }), 2 ** 56, READ)).toMatchObject({ kind: "non-canonical" });
  });

  it("denies a user request when U/S is clear at any level, naming the highest such level", () => {
    const mem = memory();
    fourLevel(mem);
    put(mem, 0x2000, 0x3000n | P | RW); // PDPTE supervisor-only
    expect(walk(mem, cfg(), 0x1000, READ)).toMatchObject({ ok: false, kind: "permission", denied: "user", level: 3 });
    expect(walk(mem, cfg(), 0x1000, SUP_READ)).toMatchObject({ ok: true, user: false });
  });

  it("refuses a supervisor request when SRE is clear, and an execute request when ERE is clear", () => {
    const mem = memory();
    fourLevel(mem);
    expect(walk(mem, cfg({ sre: false }), 0x1000, SUP_READ)).toMatchObject({ ok: false, kind: "permission", denied: "supervisor-request", level: 0 });
    expect(walk(mem, cfg({ ere: false }), 0x1000, EXEC)).toMatchObject({ ok: false, kind: "permission", denied: "execute-request", level: 0 });
  });

  it("denies writes through R/W=0 at any level, except supervisor writes while WPE is clear", () => {
    const mem = memory();
    fourLevel(mem);
    put(mem, 0x3000, 0x4000n | P | US); // PDE read-only
    expect(walk(mem, cfg(), 0x1000, WRITE)).toMatchObject({ ok: false, kind: "permission", denied: "write", level: 2 });
    expect(walk(mem, cfg({ wpe: true }), 0x1000, SUP_WRITE)).toMatchObject({ ok: false, denied: "write" });
    expect(walk(mem, cfg({ wpe: false }), 0x1000, SUP_WRITE)).toMatchObject({ ok: true, write: true });
    expect(walk(mem, cfg({ wpe: false }), 0x1000, WRITE)).toMatchObject({ ok: false, denied: "write" });
    expect(walk(mem, cfg(), 0x1000, READ)).toMatchObject({ ok: true, write: false });
  });

  it("denies execute through XD at any level when NXE is set, and ignores XD when it is clear", () => {
    const mem = memory();
    fourLevel(mem);
    put(mem, 0x1000, 0x2000n | URW | XD);
    expect(walk(mem, cfg({ nxe: true }), 0x1000, EXEC)).toMatchObject({ ok: false, kind: "permission", denied: "execute", level: 4 });
    expect(walk(mem, cfg({ nxe: true }), 0x1000, READ)).toMatchObject({ ok: true, exec: false });
    expect(walk(mem, cfg({ nxe: false }), 0x1000, EXEC)).toMatchObject({ ok: true, exec: true });
  });
});
