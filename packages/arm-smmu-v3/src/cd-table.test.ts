import { describe, expect, it } from "vitest";
import { Errno, Kernel } from "@vsva/kernel";
import { errnoOf } from "@vsva/kernel/testing";
import { CD_BYTES, Cd, L1Cd, L1_DESC_BYTES, S1Fmt, SparseMemory } from "@vsva/iommu-hw";
import { PageAllocator, PhysMemBacking } from "@vsva/iommu-core";
import { CD_SPLIT, CdTable, encodeCd } from "./cd-table.js";

const POOL = 1 << 20;

function rig() {
  const kernel = new Kernel();
  const mem = new SparseMemory({ addrBits: 48, regions: [{ base: 0, size: 8 * POOL }] });
  const pages = new PageAllocator({ base: POOL, size: 4 * POOL, backing: new PhysMemBacking(mem), faults: kernel.faults });
  // A canary at PA 0: nothing below the pool may ever be written.
  mem.write64(0, 0x1234_5678, 0x9abc_def0);
  return { mem, pages };
}

const cd = (asid: number) => encodeCd({ asid, ttb0: 0x40_0000, t0sz: 16, ips: 5, ha: false, shared: false });

function valid(mem: SparseMemory, at: number): number {
  const v = Cd.alloc();
  Cd.read(mem, at, v);
  return Cd.get(v, "V");
}

describe("CD tables", () => {
  it("linear when 2-level tables are unavailable or the SSID space fits one leaf: 2^bits CDs from the base", () => {
    const { mem, pages } = rig();
    for (const [bits, twoLevel] of [
      [CD_SPLIT, true],
      [5, false],
      [CD_SPLIT + 2, false],
    ] as const) {
      const t = new CdTable(mem, pages, bits, twoLevel);
      expect(t.fmt).toBe(S1Fmt.LINEAR);
      expect(pages.live().find((p) => p.pa === t.base)?.order).toBe(Math.max(0, Math.log2((2 ** bits * CD_BYTES) / 4096)));
      const last = 2 ** bits - 1;
      t.write(last, cd(7));
      expect(valid(mem, t.base + last * CD_BYTES)).toBe(1);
      expect(t.isValid(last)).toBe(true);
      expect(t.isValid(0)).toBe(false);
      expect(t.tables).toBe(1);
      expect(errnoOf(() => t.write(2 ** bits, cd(1)))).toBe(Errno.EINVAL);
      expect(t.isValid(2 ** bits)).toBe(false);
      t.clear(last);
      expect(t.isValid(last)).toBe(false);
      t.free();
    }
    expect(pages.live()).toEqual([]);
  });

  it("two-level past CD_SPLIT bits: a level-1 descriptor per 1024 SSIDs, leaves allocated on first use", () => {
    const { mem, pages } = rig();
    const bits = CD_SPLIT + 3;
    const t = new CdTable(mem, pages, bits, true);
    expect(t.fmt).toBe(S1Fmt.L2_64K);
    // The level-1 table: 2^(bits - CD_SPLIT) descriptors of 8 bytes fit one page.
    expect(pages.live().find((p) => p.pa === t.base)?.order).toBe(0);
    expect(2 ** (bits - CD_SPLIT) * L1_DESC_BYTES).toBeLessThanOrEqual(4096);
    const ssid = 3 * 2 ** CD_SPLIT + 5;
    t.write(ssid, cd(9));
    expect(t.tables).toBe(2);
    const d = L1Cd.alloc();
    L1Cd.read(mem, t.base + 3 * L1_DESC_BYTES, d);
    expect(L1Cd.get(d, "V")).toBe(1);
    const leaf = L1Cd.getAddr(d, "L2PTR");
    expect(pages.live().find((p) => p.pa === leaf)?.order).toBe(4);
    expect(valid(mem, leaf + 5 * CD_BYTES)).toBe(1);
    expect(t.isValid(ssid)).toBe(true);
    // Another SSID of the same leaf allocates nothing; one of another leaf does.
    t.write(ssid + 1, cd(9));
    expect(t.tables).toBe(2);
    t.write(5, cd(9));
    expect(t.tables).toBe(3);
    L1Cd.read(mem, t.base, d);
    expect(L1Cd.get(d, "V")).toBe(1);
    // Clearing an SSID whose leaf was never allocated writes nothing anywhere.
    expect(t.isValid(2 ** CD_SPLIT)).toBe(false);
    t.clear(2 ** CD_SPLIT);
    expect(mem.read32(0)).toBe(0x1234_5678);
    t.clear(ssid);
    expect(t.isValid(ssid)).toBe(false);
    expect(t.isValid(ssid + 1)).toBe(true);
    for (const bad of [-1, 2 ** bits, 1.5]) expect(errnoOf(() => t.ensure(bad))).toBe(Errno.EINVAL);
    t.free();
    expect(pages.live()).toEqual([]);
  });
});
