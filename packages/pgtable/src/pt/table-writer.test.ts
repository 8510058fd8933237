import { Errno } from "@vsva/kernel";
import { describe, expect, it } from "vitest";
import { u64, u64ToBigInt } from "../mem/phys-mem.js";
import { SparseMemory } from "../mem/sparse-memory.js";
import { slFormat, x86Format } from "./formats.js";
import { PagePool } from "./page-pool.js";
import { TableWriter } from "./table-writer.js";
import { errnoOf } from "@vsva/kernel/testing";

const P = 1n;
const RW = 2n;
const US = 4n;
const A = 1n << 5n;
const D = 1n << 6n;
const PS = 1n << 7n;
const XD = 1n << 63n;
const SL_R = 1n;
const SL_W = 2n;
const SL_X = 4n;
const SL_SNP = 1n << 11n;
const MiB2 = 2 ** 21;
const GiB = 2 ** 30;

function setup(pages = 64) {
  const mem = new SparseMemory({ addrBits: 46, regions: [{ base: 0, size: 0x100_0000 }] });
  const pool = new PagePool(mem, 0x10_0000, pages * 4096);
  return { mem, pool };
}

function raw(mem: SparseMemory, addr: number): bigint {
  const out = u64();
  expect(mem.read64(addr, out)).toBe(true);
  return u64ToBigInt(out);
}

/** Everything a failed call must leave untouched. */
function snapshot(w: TableWriter, pool: PagePool) {
  return { maps: w.mappings(), tables: w.tablePages(), inUse: pool.inUse };
}

describe("table writer, x86-64 format", () => {
  it("writes the entries an x86 walker expects, bit for bit", () => {
    const { mem, pool } = setup();
    const w = new TableWriter(mem, x86Format({ levels: 4 }), { alloc: pool.alloc, free: pool.free });
    expect(w.root).toBe(0x10_0000);
    w.map(0x1000, 0x5000, 4096, { write: true });
    // Root, then PDPT, PD and PT pages in allocation order.
    expect(raw(mem, 0x10_0000)).toBe(0x10_1000n | P | RW | US);
    expect(raw(mem, 0x10_1000)).toBe(0x10_2000n | P | RW | US);
    expect(raw(mem, 0x10_2000)).toBe(0x10_3000n | P | RW | US);
    expect(raw(mem, 0x10_3000 + 8)).toBe(0x5000n | P | RW | US | XD);
    w.map(0x40_0000, 0x80_0000, MiB2, { write: false, exec: true, user: false, accessed: true, dirty: true });
    expect(raw(mem, 0x10_2000 + 2 * 8)).toBe(0x80_0000n | P | PS | A | D);
    w.map(GiB, 3 * GiB, GiB, { write: true, global: true });
    expect(raw(mem, 0x10_1000 + 8)).toBe(BigInt(3 * GiB) | P | RW | US | PS | (1n << 8n) | XD);
    expect(w.lookup(GiB + 0x1234)).toMatchObject({ va: GiB, pa: 3 * GiB, size: GiB, prot: { write: true, global: true, exec: false } });
    expect(w.tablePages()).toEqual([0x10_0000, 0x10_1000, 0x10_2000, 0x10_3000]);
  });

  it("picks the largest page that the alignment of both addresses allows", () => {
    const { mem, pool } = setup();
    const w = new TableWriter(mem, x86Format({ levels: 4 }), { alloc: pool.alloc });
    w.map(GiB - MiB2, 5 * GiB - MiB2, GiB + 2 * MiB2 + 4096, { write: true });
    expect(w.mappings().map((m) => [m.va, m.pa, m.size])).toEqual([
      [GiB - MiB2, 5 * GiB - MiB2, MiB2],
      [GiB, 5 * GiB, GiB],
      [2 * GiB, 6 * GiB, MiB2],
      [2 * GiB + MiB2, 6 * GiB + MiB2, 4096],
    ]);
    const w2 = new TableWriter(mem, x86Format({ levels: 4, pages1g: false }), { alloc: pool.alloc });
    w2.map(0, 0, GiB, { write: true });
    expect(w2.mappings()).toHaveLength(512);
  });

  it("maps upper-half (sign-extended) addresses in a 4- or 5-level table", () => {
    for (const levels of [4, 5] as const) {
      const { mem, pool } = setup();
      const w = new TableWriter(mem, x86Format({ levels }), { alloc: pool.alloc });
      const va = -(2 ** (levels === 4 ? 47 : 56));
      w.map(va, 0x7000, 4096, { write: true });
      expect(raw(mem, w.root + 256 * 8) & P).toBe(P);
      expect(w.lookup(va + 5)).toMatchObject({ va, pa: 0x7000 });
    }
  });

  it("refuses misaligned, out-of-range and unsupported requests with EINVAL", () => {
    const { mem, pool } = setup();
    const w = new TableWriter(mem, x86Format({ levels: 4, pages1g: false }), { alloc: pool.alloc, outBits: 40 });
    const before = snapshot(w, pool);
    expect(errnoOf(() => w.map(0x1001, 0, 4096, { write: true }))).toBe(Errno.EINVAL);
    expect(errnoOf(() => w.map(0x1000, 0x10, 4096, { write: true }))).toBe(Errno.EINVAL);
    expect(errnoOf(() => w.map(0x1000, 0, 100, { write: true }))).toBe(Errno.EINVAL);
    expect(errnoOf(() => w.map(0x1000, 0, 0, { write: true }))).toBe(Errno.EINVAL);
    expect(errnoOf(() => w.map(2 ** 47 - 4096, 0, 8192, { write: true }))).toBe(Errno.EINVAL);
    expect(errnoOf(() => w.map(0, 2 ** 40 - 4096, 8192, { write: true }))).toBe(Errno.EINVAL);
    expect(errnoOf(() => w.map(0, 0, GiB, { write: true }, GiB))).toBe(Errno.EINVAL);
    expect(errnoOf(() => w.map(0x1000, 0x1000, MiB2, { write: true }, MiB2))).toBe(Errno.EINVAL);
    expect(errnoOf(() => w.map(0, 0, 4096, { write: true }, 8192))).toBe(Errno.EINVAL);
    expect(errnoOf(() => w.map(0, 0, 4096, { read: false, write: true }))).toBe(Errno.EINVAL);
    expect(snapshot(w, pool)).toEqual(before);
  });

  it("refuses a map over an existing mapping with EEXIST and changes nothing", () => {
    const { mem, pool } = setup();
    const w = new TableWriter(mem, x86Format({ levels: 4 }), { alloc: pool.alloc, free: pool.free });
    w.map(MiB2, 0x40_0000, MiB2, { write: true });
    w.map(0x1000, 0x5000, 4096, { write: true });
    const before = snapshot(w, pool);
    expect(errnoOf(() => w.map(MiB2 + 0x3000, 0, 4096, { write: true }))).toBe(Errno.EEXIST);
    expect(errnoOf(() => w.map(0, 0, MiB2, { write: true }))).toBe(Errno.EEXIST);
    // The first chunk is free, the last is not: still nothing applied.
    expect(errnoOf(() => w.map(GiB - 4096 * 4, 0, 4096 * 4, { write: true }))).toBe(0);
    const mid = snapshot(w, pool);
    expect(errnoOf(() => w.map(GiB - 4096 * 5, 0, 4096 * 2, { write: true }))).toBe(Errno.EEXIST);
    expect(snapshot(w, pool)).toEqual(mid);
    expect(before.maps.length + 4).toBe(mid.maps.length);
  });

  it("reports ENOMEM when the allocator runs dry, returning the pages it took and mapping nothing", () => {
    const { mem, pool } = setup(3); // root + 2 tables, but a fresh 4 KiB mapping needs 3
    const w = new TableWriter(mem, x86Format({ levels: 4 }), { alloc: pool.alloc, free: pool.free });
    const before = snapshot(w, pool);
    expect(errnoOf(() => w.map(0x1000, 0x5000, 4096, { write: true }))).toBe(Errno.ENOMEM);
    expect(snapshot(w, pool)).toEqual(before);
    // A 2 MiB page needs only the PDPT and PD.
    w.map(0, 0, MiB2, { write: true });
    expect(pool.inUse).toBe(3);
    const { mem: m2, pool: p2 } = setup(0 + 1);
    expect(errnoOf(() => new TableWriter(m2, x86Format({ levels: 4 }), { alloc: p2.alloc }))).toBe(0);
    const { mem: m3 } = setup(1);
    expect(errnoOf(() => new TableWriter(m3, x86Format({ levels: 4 }), { alloc: () => null }))).toBe(Errno.ENOMEM);
  });

  it("unmaps whole leaves, skips holes, and refuses to cut a large page", () => {
    const { mem, pool } = setup();
    const w = new TableWriter(mem, x86Format({ levels: 4 }), { alloc: pool.alloc });
    w.map(0, 0x10_0000, 4 * 4096, { write: true });
    w.map(MiB2, 0x40_0000, MiB2, { write: true });
    const before = snapshot(w, pool);
    expect(errnoOf(() => w.unmap(MiB2, 4096))).toBe(Errno.EINVAL);
    expect(errnoOf(() => w.unmap(0, MiB2 + 4096))).toBe(Errno.EINVAL);
    expect(snapshot(w, pool)).toEqual(before);
    expect(w.unmap(4096, 2 * 4096)).toBe(2 * 4096);
    expect(w.unmap(0, MiB2 * 2)).toBe(2 * 4096 + MiB2);
    expect(w.mappings()).toEqual([]);
    expect(w.unmap(0, 4096)).toBe(0);
  });

  it("replaces an emptied table with a large page and frees the table", () => {
    const { mem, pool } = setup();
    const w = new TableWriter(mem, x86Format({ levels: 4 }), { alloc: pool.alloc, free: pool.free });
    w.map(0x1000, 0x5000, 4096, { write: true });
    expect(pool.inUse).toBe(4);
    w.unmap(0x1000, 4096);
    w.map(0, 0x20_0000, MiB2, { write: true });
    expect(pool.inUse).toBe(3);
    expect(w.lookup(0x1000)).toMatchObject({ va: 0, pa: 0x20_0000, size: MiB2 });
  });

  it("changes permissions of mapped leaves, keeps A/D, and refuses holes with ENOENT", () => {
    const { mem, pool } = setup();
    const w = new TableWriter(mem, x86Format({ levels: 4 }), { alloc: pool.alloc });
    w.map(0, 0x10_0000, 2 * 4096, { write: true, accessed: true, dirty: true });
    const before = snapshot(w, pool);
    expect(errnoOf(() => w.protect(0, 3 * 4096, { write: false }))).toBe(Errno.ENOENT);
    expect(snapshot(w, pool)).toEqual(before);
    w.protect(0, 2 * 4096, { write: false, exec: true });
    expect(w.lookup(4096)?.prot).toMatchObject({ write: false, exec: true, accessed: true, dirty: true });
  });
});

describe("table writer, second-level format", () => {
  it("writes R/W/X/PS/SNP as VT-d defines them, and non-leaf entries with R, W and X", () => {
    const { mem, pool } = setup();
    const w = new TableWriter(mem, slFormat({ levels: 3 }), { alloc: pool.alloc });
    w.map(0x1000, 0x5000, 4096, { write: false, exec: true, snoop: true });
    expect(raw(mem, w.root)).toBe(0x10_1000n | SL_R | SL_W | SL_X);
    expect(raw(mem, 0x10_2000 + 8)).toBe(0x5000n | SL_R | SL_X | SL_SNP);
    w.map(GiB, 2 * GiB, GiB, { read: false, write: true }, GiB);
    expect(raw(mem, w.root + 8)).toBe(BigInt(2 * GiB) | SL_W | PS);
    expect(errnoOf(() => w.map(0, 0, 4096, { read: false, write: false }))).toBe(Errno.EINVAL);
    expect(errnoOf(() => w.map(2 ** 39, 0, 4096, { write: true }))).toBe(Errno.EINVAL);
    expect(errnoOf(() => w.map(-4096, 0, 4096, { write: true }))).toBe(Errno.EINVAL);
  });

  it("allows only the superpage sizes SLLPS offers", () => {
    const { mem, pool } = setup();
    const w = new TableWriter(mem, slFormat({ levels: 4, pages2m: false, pages1g: false }), { alloc: pool.alloc });
    expect(errnoOf(() => w.map(0, 0, MiB2, { write: true }, MiB2))).toBe(Errno.EINVAL);
    w.map(0, 0, MiB2, { write: true });
    expect(w.mappings()).toHaveLength(512);
  });
});
