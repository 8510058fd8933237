import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { DmaRequest, TranslateResult } from "../iommu-port.js";
import { CD_TABLE, D_AP2, S1_PAGE, SmmuRig, cmd } from "./testing/rig.js";
import { mapPath } from "./testing/tables.js";

/**
 * Past the 64-entry micro-TLB, a request of the stream it last served probes
 * the TLB entries of the stream's ASID through a kept handle. That is a
 * shortcut for the full pipeline only: the same answers, the same counts, and
 * gone the moment an invalidation reaches the STE, CD or TLB entry it rests on.
 */
const BASE = 0x40_0000;
/** Two pages per micro-TLB slot (its index is the page number's low 6 bits), so a sweep always misses it. */
const PAGES = 128;
const ASID = 7;
const frame = (p: number, gen: number): number => 0x100_0000 + (gen * PAGES + p) * 4096;

function world(): { rig: SmmuRig; root: number; at: (p: number, o?: Partial<DmaRequest>) => DmaRequest } {
  const rig = new SmmuRig().bringUp();
  const root = rig.alloc();
  rig.ste(rig.dev, { config: 5, ctx: CD_TABLE });
  rig.cd(CD_TABLE, { ttb0: root, asid: ASID });
  // Every fourth page is read-only.
  for (let p = 0; p < PAGES; p++) mapPath(rig, root, BASE + p * 4096, BigInt(frame(p, 0)) | S1_PAGE | (p % 4 === 3 ? D_AP2 : 0n));
  const at = (p: number, o: Partial<DmaRequest> = {}): DmaRequest => ({ sid: rig.dev, addr: BASE + p * 4096 + 0x20, write: false, ...o });
  return { rig, root, at };
}

const seen = (r: TranslateResult): unknown => (r.ok ? { ...r } : { fault: r.reason });

describe("the SMMUv3 TLB-proper fast path", () => {
  it("serves a sweep the micro-TLB cannot hold with the fill's answers, one TLB hit per request and no STE or CD lookup", () => {
    const { rig, at } = world();
    const fills = Array.from({ length: PAGES }, (_, p) => rig.unit.translate(at(p)));
    expect(fills.every((r) => r.ok)).toBe(true);
    const { ste, cd, tlb } = rig.unit.debug.caches.stats();
    const before = { ste: { ...ste }, cd: { ...cd }, tlb: { ...tlb } };
    for (let round = 0; round < 2; round++) {
      for (let p = 0; p < PAGES; p++) expect(seen(rig.unit.translate(at(p)))).toEqual(seen(fills[p] ?? fills[0]!));
    }
    expect(tlb.hits - before.tlb.hits).toBe(2 * PAGES);
    expect(tlb.misses).toBe(before.tlb.misses);
    expect([ste.hits, ste.misses, cd.hits, cd.misses]).toEqual([before.ste.hits, before.ste.misses, before.cd.hits, before.cd.misses]);
  });

  it("gives a repeated address the entry's frozen answer, and another address its own", () => {
    const { rig, at } = world();
    const first = rig.unit.translate(at(5));
    rig.unit.translate(at(5 + 64)); // takes page 5's micro-TLB slot
    const again = rig.unit.translate(at(5)); // the TLB proper
    expect(Object.isFrozen(again)).toBe(true);
    expect(again).toEqual(first);
    expect(rig.unit.translate(at(5))).toBe(again);
    expect(rig.unit.translate(at(5, { addr: at(5).addr + 8 }))).not.toBe(again);
  });

  it("answers as a fresh walk does across remaps, their TLBI_NH_VA, CD and STE invalidations, writes and ATS (property)", () => {
    type Op = { kind: "dma"; page: number; write: boolean; ats: boolean } | { kind: "remap"; page: number } | { kind: "cfgi" };
    const op: fc.Arbitrary<Op> = fc.oneof(
      { weight: 8, arbitrary: fc.record({ kind: fc.constant("dma" as const), page: fc.nat(PAGES - 1), write: fc.boolean(), ats: fc.boolean() }) },
      { weight: 2, arbitrary: fc.record({ kind: fc.constant("remap" as const), page: fc.nat(PAGES - 1) }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant("cfgi" as const) }) },
    );
    fc.assert(
      fc.property(fc.array(op, { minLength: 1, maxLength: 150 }), (ops) => {
        const { rig, root, at } = world();
        const gen = new Array<number>(PAGES).fill(0);
        for (const o of ops) {
          if (o.kind === "dma") {
            const r = rig.unit.translate(at(o.page, { write: o.write, ats: o.ats }));
            const readOnly = o.page % 4 === 3;
            if (o.ats) expect(r.ok).toBe(false); // the STE does not enable ATS
            else if (o.write && readOnly) expect(r.ok).toBe(false);
            else expect(r.ok && r.pa).toBe(frame(o.page, gen[o.page] ?? 0) + 0x20);
          } else if (o.kind === "remap") {
            const g = (gen[o.page] ?? 0) + 1;
            gen[o.page] = g;
            mapPath(rig, root, BASE + o.page * 4096, BigInt(frame(o.page, g)) | S1_PAGE | (o.page % 4 === 3 ? D_AP2 : 0n));
            rig.submit(cmd.nhVa(0, ASID, BASE + o.page * 4096), cmd.sync());
          } else {
            rig.submit(cmd.cfgiSte(rig.dev), cmd.sync());
          }
        }
        expect(rig.unit.debug.checkCaches()).toEqual([]);
      }),
      { numRuns: 150 },
    );
  });
});
