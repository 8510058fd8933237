import { type SourceId, sourceId } from "@vsva/kernel";
import type { TranslateResult } from "../iommu-port.js";
import { describe, expect, it } from "vitest";
import { resetStats } from "@vsva/pgtable";
import { EventId } from "./structures.js";
import { CD_TABLE, CR0_CMDQEN, CR0_EVENTQEN, D_AF, D_AP1, D_AP2, D_S2R, D_T, D_V, S1_PAGE, S2_PAGE, SR, STRTAB, SmmuRig, cmd } from "./testing/rig.js";
import { armIdx, mapPath } from "./testing/tables.js";

// Hand-encoded STEs, CDs and tables (testing/rig.ts restates SMMUv3 spec chapter 5 and the Arm ARM bit by bit).
const VA = 0x12_3456_7000;
const reason = (r: TranslateResult): number => (r.ok ? -1 : r.reason);

function s1Rig(o: { cd?: Parameters<SmmuRig["cd"]>[1]; ste?: Partial<Parameters<SmmuRig["ste"]>[1]> } = {}): { rig: SmmuRig; root: number; dev: SourceId } {
  const rig = new SmmuRig().bringUp();
  const root = rig.alloc();
  rig.ste(rig.dev, { config: 5, ctx: CD_TABLE, ...o.ste });
  rig.cd(CD_TABLE, { ttb0: root, asid: 7, ...o.cd });
  mapPath(rig, root, VA, 0x9000n | S1_PAGE);
  return { rig, root, dev: rig.dev };
}

describe("SMMUv3 translation: STE configurations", () => {
  it("aborts without an event for Config = abort, and passes through for Config = bypass", () => {
    const rig = new SmmuRig().bringUp();
    rig.ste(rig.dev, { config: 0 });
    expect(rig.unit.translate({ sid: rig.dev, addr: 0x5000, write: false })).toMatchObject({ ok: false, reason: 0, name: "ABORT" });
    rig.ste(rig.dev, { config: 4 });
    rig.submit(cmd.cfgiSte(rig.dev));
    expect(rig.unit.translate({ sid: rig.dev, addr: 0x5123, write: true })).toMatchObject({ ok: true, pa: 0x5123, write: true });
    expect(rig.events()).toEqual([]);
  });

  it("reports C_BAD_STE for V = 0 and for a stage-2 STE with S2AA64 = 0, recording each", () => {
    const rig = new SmmuRig().bringUp();
    rig.ste(rig.dev, { v: false, config: 4 });
    expect(rig.unit.translate({ sid: rig.dev, addr: 0, write: false })).toMatchObject({ ok: false, reason: EventId.C_BAD_STE });
    rig.ste(rig.dev, { config: 6, s2aa64: false });
    expect(rig.unit.translate({ sid: rig.dev, addr: 0, write: false }).ok).toBe(false);
    expect(rig.events().map((e) => [e.id, e.sid])).toEqual([[0x04, rig.dev], [0x04, rig.dev]]);
  });

  it("translates stage 1 through a single CD (S1CDMax = 0) and records F_TRANSLATION only with CD.R", () => {
    const { rig, dev } = s1Rig();
    expect(rig.unit.translate({ sid: dev, addr: VA + 0x42, write: true })).toMatchObject({ ok: true, pa: 0x9042, size: 4096 });
    expect(rig.unit.translate({ sid: dev, addr: VA + 0x10_0000, write: false })).toMatchObject({ ok: false, reason: EventId.F_TRANSLATION });
    const [e] = rig.events();
    expect(e).toMatchObject({ id: 0x10, sid: dev, ssv: false, rnw: true, s2: false, cls: 2, addr: BigInt(VA + 0x10_0000) });
    const q = s1Rig({ cd: { r: false } });
    expect(q.rig.unit.translate({ sid: q.dev, addr: VA + 0x10_0000, write: false }).ok).toBe(false);
    expect(q.rig.events()).toEqual([]);
  });

  it("selects the CD by SubstreamID in a linear CD table, and refuses one beyond S1CDMax with C_BAD_SUBSTREAMID", () => {
    const rig = new SmmuRig().bringUp();
    rig.ste(rig.dev, { config: 5, ctx: CD_TABLE, cdmax: 4 });
    const roots = [rig.alloc(), rig.alloc()];
    rig.cd(CD_TABLE + 64 * 3, { ttb0: roots[0] ?? 0, asid: 3 });
    rig.cd(CD_TABLE + 64 * 9, { ttb0: roots[1] ?? 0, asid: 9 });
    mapPath(rig, roots[0] ?? 0, VA, 0xa000n | S1_PAGE);
    mapPath(rig, roots[1] ?? 0, VA, 0xb000n | S1_PAGE);
    expect(rig.unit.translate({ sid: rig.dev, pasid: 3, addr: VA, write: false })).toMatchObject({ ok: true, pa: 0xa000 });
    expect(rig.unit.translate({ sid: rig.dev, pasid: 9, addr: VA, write: false })).toMatchObject({ ok: true, pa: 0xb000 });
    expect(rig.unit.translate({ sid: rig.dev, pasid: 16, addr: VA, write: false })).toMatchObject({ ok: false, reason: EventId.C_BAD_SUBSTREAMID });
    expect(rig.events()).toMatchObject([{ id: 0x08, ssv: true, ssid: 16 }]);
  });

  it("walks a 2-level CD table (64 KiB leaves) with 20-bit SubstreamIDs; an invalid L1 descriptor is C_BAD_SUBSTREAMID", () => {
    const rig = new SmmuRig().bringUp();
    rig.ste(rig.dev, { config: 5, s1fmt: 2, ctx: CD_TABLE, cdmax: 20 });
    const ssid = 0xf_4005;
    const l2 = rig.alloc(16);
    rig.w64(CD_TABLE + 8 * (ssid >> 10), BigInt(l2) | 1n);
    const root = rig.alloc();
    rig.cd(l2 + 64 * (ssid & 0x3ff), { ttb0: root, asid: 0x77 });
    mapPath(rig, root, VA, 0xc000n | S1_PAGE);
    expect(rig.unit.translate({ sid: rig.dev, pasid: ssid, addr: VA, write: false })).toMatchObject({ ok: true, pa: 0xc000 });
    expect(rig.unit.translate({ sid: rig.dev, pasid: ssid + 1024, addr: VA, write: false })).toMatchObject({ ok: false, reason: EventId.C_BAD_SUBSTREAMID });
    expect(rig.unit.translate({ sid: rig.dev, pasid: ssid + 1, addr: VA, write: false })).toMatchObject({ ok: false, reason: EventId.C_BAD_CD });
  });

  it("handles traffic without a SubstreamID by S1DSS: terminate, bypass, or substream 0", () => {
    const rig = new SmmuRig().bringUp();
    const root = rig.alloc();
    rig.cd(CD_TABLE, { ttb0: root });
    mapPath(rig, root, VA, 0xd000n | S1_PAGE);
    const req = { sid: rig.dev, addr: VA, write: false };
    rig.ste(rig.dev, { config: 5, ctx: CD_TABLE, cdmax: 4, s1dss: 0 });
    expect(rig.unit.translate(req)).toMatchObject({ ok: false, reason: EventId.F_STREAM_DISABLED });
    rig.ste(rig.dev, { config: 5, ctx: CD_TABLE, cdmax: 4, s1dss: 1 });
    rig.submit(cmd.cfgiSte(rig.dev));
    expect(rig.unit.translate(req)).toMatchObject({ ok: true, pa: VA });
    rig.ste(rig.dev, { config: 5, ctx: CD_TABLE, cdmax: 4, s1dss: 2 });
    rig.submit(cmd.cfgiSte(rig.dev));
    expect(rig.unit.translate(req)).toMatchObject({ ok: true, pa: 0xd000 });
  });

  it("finds STEs in a 2-level stream table; SPAN = 0 and StreamIDs beyond the span or the table are C_BAD_STREAMID", () => {
    const rig = new SmmuRig().bringUp({ twoLevel: true });
    const sid = 0x1234;
    rig.ste(sid, { config: 4 }, true);
    expect(rig.unit.translate({ sid: sourceId(0x12, 6, 4), addr: 0x7000, write: false })).toMatchObject({ ok: true, pa: 0x7000 });
    expect(rig.unit.translate({ sid: sourceId(0x13, 0, 0), addr: 0, write: false })).toMatchObject({ reason: EventId.C_BAD_STREAMID });
    rig.w64(STRTAB + 8 * 0x14, BigInt(rig.alloc()) | 3n); // SPAN 3: 4 STEs
    expect(rig.unit.translate({ sid: sourceId(0x14, 0, 4), addr: 0, write: false })).toMatchObject({ reason: EventId.C_BAD_STREAMID });
    expect(rig.events().map((e) => e.id)).toEqual([0x02, 0x02]);
    const lin = new SmmuRig().bringUp({ log2size: 4 });
    expect(lin.unit.translate({ sid: sourceId(0, 2, 0), addr: 0, write: false })).toMatchObject({ reason: EventId.C_BAD_STREAMID });
  });

  it("translates stage 2 only, records faults with S2 = 1 and the IPA when S2R, and refuses a SubstreamID", () => {
    const rig = new SmmuRig().bringUp();
    const s2 = rig.alloc();
    rig.ste(rig.dev, { config: 6, vmid: 5, s2ttb: s2, s2r: true });
    mapPath(rig, s2, 0x4000_0000, 0x8000n | S2_PAGE);
    expect(rig.unit.translate({ sid: rig.dev, addr: 0x4000_0010, write: true })).toMatchObject({ ok: true, pa: 0x8010 });
    expect(rig.unit.translate({ sid: rig.dev, addr: 0x4000_1000, write: true })).toMatchObject({ ok: false, reason: EventId.F_TRANSLATION });
    expect(rig.unit.translate({ sid: rig.dev, pasid: 1, addr: 0x4000_0000, write: true })).toMatchObject({ reason: EventId.C_BAD_SUBSTREAMID });
    const [f] = rig.events();
    expect(f).toMatchObject({ id: 0x10, s2: true, rnw: false, cls: 2 });
    expect(f?.dw3).toBe(0x4000_1000n);
  });

  it("reports fetch aborts with their address: F_STE_FETCH, F_CD_FETCH, F_WALK_EABT", () => {
    const rig = new SmmuRig().bringUp();
    rig.ste(rig.dev, { config: 5, ctx: 0x8000_0000 * 2 });
    expect(reason(rig.unit.translate({ sid: rig.dev, addr: 0, write: false }))).toBe(EventId.F_CD_FETCH);
    rig.cd(CD_TABLE, { ttb0: 0x10_0000_0000 });
    rig.ste(rig.dev, { config: 5, ctx: CD_TABLE });
    rig.submit(cmd.cfgiSte(rig.dev));
    expect(reason(rig.unit.translate({ sid: rig.dev, addr: VA, write: false }))).toBe(EventId.F_WALK_EABT);
    rig.setReg(SR.CR0, CR0_EVENTQEN | CR0_CMDQEN);
    rig.setReg64(SR.STRTAB_BASE, 0x20_0000_0000n);
    rig.setReg(SR.CR0, CR0_EVENTQEN | CR0_CMDQEN | 1);
    // The old STE stays cached until software says the table changed.
    expect(reason(rig.unit.translate({ sid: rig.dev, addr: VA, write: false }))).toBe(EventId.F_WALK_EABT);
    rig.submit(cmd.cfgiAll());
    expect(reason(rig.unit.translate({ sid: rig.dev, addr: 0, write: false }))).toBe(EventId.F_STE_FETCH);
    const ev = rig.events();
    expect(ev.map((e) => e.id)).toEqual([0x09, 0x0b, 0x0b, 0x03]);
    expect(ev.map((e) => e.dw3 & ~7n)).toEqual([0x1_0000_0000n, BigInt(0x10_0000_0000 + 8 * armIdx(VA, 0)), BigInt(0x10_0000_0000 + 8 * armIdx(VA, 0)), BigInt(0x20_0000_0000 + 64 * rig.dev)]);
  });

  it("reports C_BAD_CD for V = 0, T0SZ outside 16..39, a 64 KiB granule, A = 0 and HA without HTTU", () => {
    for (const [cd, opts] of [[{ v: false }, {}], [{ t0sz: 40 }, {}], [{ tg0: 1 }, {}], [{ a: false }, {}], [{ ha: true }, { httu: 0 as const }]] as const) {
      const rig = new SmmuRig(opts).bringUp();
      rig.ste(rig.dev, { config: 5, ctx: CD_TABLE });
      rig.cd(CD_TABLE, { ttb0: 0x1000, ...cd });
      expect(reason(rig.unit.translate({ sid: rig.dev, addr: 0, write: false }))).toBe(EventId.C_BAD_CD);
    }
  });

  it("reports F_ADDR_SIZE, F_ACCESS and F_PERMISSION from the stage-1 walk; HA sets AF instead of faulting", () => {
    const { rig, root, dev } = s1Rig({ cd: { ips: 0 } });
    mapPath(rig, root, VA + 0x1000, 0x1_0000_0000n | S1_PAGE);
    mapPath(rig, root, VA + 0x2000, 0xe000n | D_V | D_T | D_AP1);
    mapPath(rig, root, VA + 0x3000, 0xe000n | D_V | D_T | D_AF | D_AP1 | D_AP2);
    const t = (off: number, write = false) => rig.unit.translate({ sid: dev, addr: VA + off, write });
    expect([reason(t(0x1000)), reason(t(0x2000)), reason(t(0x3000, true))]).toEqual([
      EventId.F_ADDR_SIZE, EventId.F_ACCESS, EventId.F_PERMISSION,
    ]);
    const ha = s1Rig({ cd: { ha: true } });
    mapPath(ha.rig, ha.root, VA + 0x2000, 0xe000n | D_V | D_T | D_AP1);
    expect(ha.rig.unit.translate({ sid: ha.dev, addr: VA + 0x2000, write: false }).ok).toBe(true);
  });

  it("follows GBPA while SMMUEN = 0: bypass, or abort once a write with UPDATE sets ABORT", () => {
    const rig = new SmmuRig();
    const req = { sid: rig.dev, addr: 0x1234, write: false };
    expect(rig.unit.translate(req)).toMatchObject({ ok: true, pa: 0x1234 });
    rig.setReg(SR.GBPA, 1 << 20);
    expect(rig.reg(SR.GBPA) & (1 << 20)).toBe(0);
    expect(rig.unit.translate(req).ok).toBe(true);
    rig.setReg(SR.GBPA, (1 << 31) | (1 << 20));
    expect(rig.reg(SR.GBPA) >>> 20).toBe(1);
    expect(rig.unit.translate(req)).toMatchObject({ ok: false, reason: 0 });
  });
});

describe("nested translation (stage 1 over stage 2)", () => {
  // Stage 2 maps IPA g → PA g + SHIFT page by page; the CD and the stage-1 tables live at IPAs.
  const SHIFT = 0x400_0000;
  function nested(): { rig: SmmuRig; s2: number; s1root: number } {
    const rig = new SmmuRig().bringUp();
    const s2 = rig.alloc();
    const s1root = rig.alloc();
    rig.ste(rig.dev, { config: 7, ctx: CD_TABLE, vmid: 3, s2ttb: s2, s2r: true });
    const s2map = (ipa: number): void => mapPath(rig, s2, ipa, BigInt(ipa + SHIFT) | S2_PAGE);
    rig.cd(CD_TABLE + SHIFT, { ttb0: s1root, asid: 5 });
    s2map(CD_TABLE);
    const before = new Set<number>();
    mapPath(rig, s1root, VA, 0x9000n | S1_PAGE, { hpa: (a) => a + SHIFT });
    mapPath(rig, s1root, VA + 0x1000, 0xa000n | S1_PAGE, { hpa: (a) => a + SHIFT });
    // Every stage-1 table the path allocated, plus the root and the two pages, is an IPA stage 2 must map.
    let t = s1root;
    before.add(t);
    for (let l = 0; l < 3; l++) {
      t = Number(rig.r64(t + SHIFT + 8 * armIdx(VA, l)) & 0xffff_ffff_f000n);
      before.add(t);
    }
    for (const ipa of [...before, 0x9000, 0xa000]) s2map(ipa);
    return { rig, s2, s1root };
  }

  it("translates every stage-1 table and the output through stage 2: 4 + 4 cold, then the stage-2 walk cache serves the other four IPAs", () => {
    const { rig } = nested();
    const req = { sid: rig.dev, addr: VA + 8, write: false };
    expect(rig.unit.translate(req)).toMatchObject({ ok: true, pa: 0x9008 + SHIFT });
    rig.submit(cmd.s12Vmall(3)); // drop TLB and walk caches; STE and CD stay cached
    resetStats(rig.mem.stats);
    expect(rig.unit.translate(req).ok).toBe(true);
    // Five stage-2 translations (four tables, one output) and four stage-1 descriptors. The IPAs share one
    // 2 MiB region, so after the first 4-read stage-2 walk each later one is a single read from the level-2
    // walk-cache entry: 4 + 4 + 4 × 1. (With IPAs in different 512 GiB regions it is 5 × 4 + 4 = 24: bench/smmu.ts.)
    expect(rig.mem.stats.reads).toBe(12);
    expect(rig.unit.debug.lastWalk.reads).toBe(12);
    resetStats(rig.mem.stats);
    expect(rig.unit.translate({ ...req, addr: VA + 0x1000 })).toMatchObject({ ok: true, pa: 0xa000 + SHIFT });
    // The neighbour: its stage-1 leaf, and its output IPA from the stage-2 walk cache.
    expect(rig.mem.stats.reads).toBe(2);
  });

  it("reports a stage-2 fault on a stage-1 table with S2 = 1, CLASS = TT and the IPA; on the output with CLASS = IN", () => {
    const { rig, s1root } = nested();
    const l0 = s1root + SHIFT + 8 * armIdx(VA, 0);
    const keep = rig.r64(l0);
    rig.w64(l0, 0x77_0000n | D_V | D_T);
    expect(rig.unit.translate({ sid: rig.dev, addr: VA, write: false })).toMatchObject({ ok: false, reason: EventId.F_TRANSLATION });
    rig.w64(l0, keep);
    mapPath(rig, s1root, VA + 0x5000, 0x66_0000n | S1_PAGE, { hpa: (a) => a + SHIFT });
    expect(rig.unit.translate({ sid: rig.dev, addr: VA + 0x5000, write: false }).ok).toBe(false);
    const ev = rig.events();
    expect(ev.map((e) => [e.id, e.s2, e.cls, e.dw3])).toEqual([[0x10, true, 1, 0x77_0000n], [0x10, true, 2, 0x66_0000n]]);
  });

  it("fetches the CD through stage 2 and reports its stage-2 fault with CLASS = CD", () => {
    const rig = new SmmuRig().bringUp();
    const s2 = rig.alloc();
    rig.ste(rig.dev, { config: 7, ctx: 0x50_0000, s2ttb: s2, s2r: true });
    expect(reason(rig.unit.translate({ sid: rig.dev, addr: 0, write: false }))).toBe(EventId.F_TRANSLATION);
    expect(rig.events().map((e) => [e.id, e.s2, e.cls, e.dw3])).toEqual([[0x10, true, 0, 0x50_0000n]]);
  });

  it("reads the stage-2 permission of the output: a read-only IPA page refuses a write with S2 = 1", () => {
    const { rig, s2 } = nested();
    mapPath(rig, s2, 0x9000, BigInt(0x9000 + SHIFT) | D_V | D_T | D_AF | D_S2R);
    rig.submit(cmd.s12Vmall(3));
    expect(rig.unit.translate({ sid: rig.dev, addr: VA, write: true })).toMatchObject({ ok: false, reason: EventId.F_PERMISSION });
    expect(rig.events()).toMatchObject([{ id: 0x13, s2: true, cls: 2 }]);
  });
});
