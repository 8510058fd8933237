import { describe, expect, it } from "vitest";
import { resetStats, SparseMemory, walkFirstLevel, slFormat, PagePool, secondLevelStage, walkSecondLevel, TableWriter, type FirstLevelConfig, type SecondLevelConfig, type WalkAccess, newWalkResult, toOutcome } from "@vsva/pgtable";
import { WalkCache } from "./walk-cache.js";

// Nested (PGTT=3): a guest first-level table whose every pointer is a GPA,
// over a host second level mapping GPA g to HPA g + SHIFT. The first-level
// entries are hand-encoded at their host-physical homes; if the walker used a
// GPA without translating it, it would read an empty page and fault.
const SHIFT = 0x1000_0000;
const P = 1n;
const RW = 2n;
const US = 4n;
const A = 1n << 5n;
const PS = 1n << 7n;
const URW = P | RW | US;
const READ: WalkAccess = { write: false };
const WRITE: WalkAccess = { write: true };

function put(mem: SparseMemory, addr: number, v: bigint): void {
  mem.write64(addr, Number(v & 0xffff_ffffn), Number(v >> 32n));
}

interface Rig {
  mem: SparseMemory;
  sl: TableWriter;
  slCfg: SecondLevelConfig;
  flCfg: FirstLevelConfig;
}

/**
 * Guest tables at GPA 0x1000 (PML4), 0x2000 (PDPT), 0x3000 (PD), 0x4000 (PT);
 * guest page GPA 0x5000 at VA 0x1000 and GPA 0x6000 at VA 0x2000.
 * The second level maps GPA [0, 1 MiB) with 4 KiB pages.
 */
function rig(opts: { accessed?: boolean; slLevels?: 3 | 4 } = {}): Rig {
  const mem = new SparseMemory({ addrBits: 46, regions: [{ base: 0, size: 0x4000_0000 }] });
  const pool = new PagePool(mem, 0x3000_0000, 0x10_0000);
  const slLevels = opts.slLevels ?? 4;
  const sl = new TableWriter(mem, slFormat({ levels: slLevels }), { alloc: pool.alloc, free: pool.free });
  sl.map(0, SHIFT, 0x10_0000, { write: true }, 4096);
  const a = opts.accessed === true ? A : 0n;
  put(mem, SHIFT + 0x1000, 0x2000n | URW | a);
  put(mem, SHIFT + 0x2000, 0x3000n | URW | a);
  put(mem, SHIFT + 0x3000, 0x4000n | URW | a);
  put(mem, SHIFT + 0x4000 + 8, 0x5000n | URW | a);
  put(mem, SHIFT + 0x4000 + 16, 0x6000n | URW | a);
  const slCfg: SecondLevelConfig = {
    root: sl.root,
    levels: slLevels,
    addrBits: 46,
    pages2m: true,
    pages1g: true,
    slee: false,
    slade: false,
    snoopControl: true,
    deviceTlb: true,
  };
  const flCfg: FirstLevelConfig = { root: 0x1000, levels: 4, addrBits: 46, sre: true, wpe: true, nxe: true, ere: true, eafe: false, pages1g: true };
  return { mem, sl, slCfg, flCfg };
}

describe("nested walk", () => {
  it("translates every first-level table and the output through the second level: a cold 4-over-4 walk reads exactly 24 entries", () => {
    const { mem, slCfg, flCfg } = rig({ accessed: true });
    resetStats(mem.stats);
    const r = walkFirstLevel(mem, flCfg, 0x1abc, READ, newWalkResult(), { secondStage: secondLevelStage(mem, slCfg) });
    expect(toOutcome(r)).toMatchObject({ ok: true, pa: SHIFT + 0x5abc, pageSize: 4096 });
    // 5 second-level walks (root, PDPT, PD, PT, output) of 4 reads + 4 first-level entries.
    expect(r.reads).toBe(5 * 4 + 4);
    expect(mem.stats.reads).toBe(24);
    expect(mem.stats.writes).toBe(0);
  });

  it("writes A into the first-level entries at their host-physical addresses, without extra reads", () => {
    const { mem, slCfg, flCfg } = rig();
    resetStats(mem.stats);
    const r = walkFirstLevel(mem, flCfg, 0x1000, WRITE, newWalkResult(), { secondStage: secondLevelStage(mem, slCfg) });
    expect(r.ok).toBe(true);
    expect(r.reads).toBe(24);
    expect(r.writes).toBe(4);
    const e = { lo: 0, hi: 0 };
    mem.read64(SHIFT + 0x4008, e);
    expect(e.lo & 0x60).toBe(0x60); // A and D in the guest PTE
  });

  it("reports which first-level access the second stage refused: root, table or output", () => {
    const cases: [number, "root" | "table" | "output", number][] = [
      [0x1000, "root", 4],
      [0x3000, "table", 2],
      [0x5000, "output", 0],
    ];
    for (const [gpa, phase, flLevel] of cases) {
      const { mem, sl, slCfg, flCfg } = rig({ accessed: true });
      sl.unmap(gpa, 4096);
      const r = walkFirstLevel(mem, flCfg, 0x1abc, READ, newWalkResult(), { secondStage: secondLevelStage(mem, slCfg) });
      expect(toOutcome(r)).toMatchObject({ ok: false, stage: "second", kind: "not-present", level: 1, nested: phase, flLevel, faultAddr: gpa + (phase === "output" ? 0xabc : 0) });
    }
  });

  it("needs second-level write permission on a table page to set its A flag (the 0x77 case)", () => {
    const { mem, sl, slCfg, flCfg } = rig();
    sl.protect(0x3000, 4096, { write: false });
    const r = walkFirstLevel(mem, flCfg, 0x1000, READ, newWalkResult(), { secondStage: secondLevelStage(mem, slCfg) });
    expect(toOutcome(r)).toMatchObject({ ok: false, stage: "second", kind: "permission", denied: "write", nested: "ad-update", flLevel: 2, faultAddr: 0x3000 });
  });

  it("ANDs permissions over both stages and reports the smaller page size", () => {
    const { mem, sl, slCfg, flCfg } = rig({ accessed: true });
    sl.protect(0x5000, 4096, { write: false });
    const ss = secondLevelStage(mem, slCfg);
    expect(toOutcome(walkFirstLevel(mem, flCfg, 0x1000, READ, newWalkResult(), { secondStage: ss }))).toMatchObject({ ok: true, write: false });
    expect(toOutcome(walkFirstLevel(mem, flCfg, 0x1000, WRITE, newWalkResult(), { secondStage: ss }))).toMatchObject({
      ok: false,
      stage: "second",
      kind: "permission",
      denied: "write",
      nested: "output",
    });
    // A 2 MiB first-level page over 4 KiB second-level pages gives a 4 KiB translation.
    put(mem, SHIFT + 0x3000 + 8, 0x20_0000n | URW | PS | A);
    sl.map(0x20_0000, SHIFT + 0x20_0000, 0x20_0000, { write: true }, 4096);
    expect(toOutcome(walkFirstLevel(mem, flCfg, 0x20_1234, READ, newWalkResult(), { secondStage: ss }))).toMatchObject({ ok: true, pa: SHIFT + 0x20_1234, pageSize: 4096 });
  });

  it("faults with address-width when a first-level pointer is beyond the second-level AGAW (the 0x74 case)", () => {
    const { mem, slCfg, flCfg } = rig({ accessed: true, slLevels: 3 });
    put(mem, SHIFT + 0x2000, BigInt(2 ** 40) | URW | A);
    const r = walkFirstLevel(mem, flCfg, 0x1000, READ, newWalkResult(), { secondStage: secondLevelStage(mem, slCfg) });
    expect(toOutcome(r)).toMatchObject({ ok: false, stage: "second", kind: "address-width", nested: "table", flLevel: 2, faultAddr: 2 ** 40 });
  });
});

describe("paging-structure caches", () => {
  it("bring a nested walk to a neighbouring 4 KiB page down to 2 references after one cold walk", () => {
    const { mem, slCfg, flCfg } = rig({ accessed: true });
    const flPsc = { cache: new WalkCache("fl-psc", 64), tag: 1 };
    const ss = secondLevelStage(mem, slCfg, { psc: { cache: new WalkCache("sl-psc", 64), tag: 7 } });
    const out = newWalkResult();
    expect(walkFirstLevel(mem, flCfg, 0x1000, READ, out, { secondStage: ss, psc: flPsc }).reads).toBeLessThanOrEqual(24);
    resetStats(mem.stats);
    const r = walkFirstLevel(mem, flCfg, 0x2010, READ, out, { secondStage: ss, psc: flPsc });
    expect(toOutcome(r)).toMatchObject({ ok: true, pa: SHIFT + 0x6010 });
    expect(r.reads).toBe(2);
    expect(mem.stats.reads).toBe(2);
  });

  it("keep serving a stale non-leaf entry until it is invalidated", () => {
    const { mem, slCfg, flCfg } = rig({ accessed: true });
    const cache = new WalkCache("fl-psc", 64);
    const psc = { cache, tag: 1 };
    const ss = secondLevelStage(mem, slCfg);
    const out = newWalkResult();
    walkFirstLevel(mem, flCfg, 0x1000, READ, out, { secondStage: ss, psc });
    // The guest clears its PDE: a walk through the cache does not notice...
    put(mem, SHIFT + 0x3000, 0n);
    expect(walkFirstLevel(mem, flCfg, 0x1000, READ, out, { secondStage: ss, psc }).ok).toBe(true);
    // ...until the range is invalidated.
    expect(cache.invalidateRange(1, 0x1000, 4096)).toBeGreaterThan(0);
    expect(toOutcome(walkFirstLevel(mem, flCfg, 0x1000, READ, out, { secondStage: ss, psc }))).toMatchObject({ ok: false, kind: "not-present", level: 2 });
  });

  it("serve a second-level-only walk to a neighbouring page with one reference", () => {
    const { mem, slCfg } = rig();
    const psc = { cache: new WalkCache("sl-psc", 64), tag: 3 };
    const out = newWalkResult();
    walkSecondLevel(mem, slCfg, 0x1000, READ, out, { psc });
    expect(walkSecondLevel(mem, slCfg, 0x2000, READ, out, { psc }).reads).toBe(1);
    expect(out.pscHits).toBe(1);
    // Another tag does not see those entries.
    expect(walkSecondLevel(mem, slCfg, 0x2000, READ, out, { psc: { cache: psc.cache, tag: 4 } }).reads).toBe(4);
  });
});
