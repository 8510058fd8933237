import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { VtdRig, desc } from "./testing/rig.js";

/**
 * Property: whatever sequence of table edits software makes, if each edit is
 * followed by an invalidation that covers it, every cached translation equals
 * a fresh, cache-bypassing walk, and every DMA sees the tables as they are.
 * And the converse, so the check is not vacuous: skipping the invalidation
 * after changing a cached page leaves a mismatch the checker reports.
 */

const BASE = 0x40_0000;
const PAGES = 12;
const SPACES = [
  { pasid: 5, did: 1, pgtt: 1 },
  { pasid: 6, did: 1, pgtt: 1 },
  { pasid: 0, did: 2, pgtt: 2 },
] as const;

type Op =
  | { kind: "map"; space: number; page: number; frame: number; inv: "page" | "domain" | "global" }
  | { kind: "unmap"; space: number; page: number; inv: "page" | "domain" | "global" }
  | { kind: "dma"; space: number; page: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    kind: fc.constant("map" as const),
    space: fc.nat(SPACES.length - 1),
    page: fc.nat(PAGES - 1),
    frame: fc.integer({ min: 0x200, max: 0x2ff }),
    inv: fc.constantFrom("page" as const, "domain" as const, "global" as const),
  }),
  fc.record({ kind: fc.constant("unmap" as const), space: fc.nat(SPACES.length - 1), page: fc.nat(PAGES - 1), inv: fc.constantFrom("page" as const, "domain" as const, "global" as const) }),
  fc.record({ kind: fc.constant("dma" as const), space: fc.nat(SPACES.length - 1), page: fc.nat(PAGES - 1) }),
);

function setup(): { rig: VtdRig; roots: number[] } {
  const rig = new VtdRig({ caches: { iotlb: 16, firstLevelPsc: 4, secondLevelPsc: 4 } }).bringUp();
  rig.device();
  const roots = SPACES.map((s) => {
    const root = rig.alloc();
    rig.setPasid(s.pasid, s.pgtt === 1 ? { pgtt: 1, did: s.did, flptr: root } : { pgtt: 2, did: s.did, slptr: root, aw: 2 });
    return root;
  });
  // Pre-build the tables so edits only touch leaves.
  SPACES.forEach((s, i) => {
    for (let p = 0; p < PAGES; p++) {
      const root = roots[i] ?? 0;
      if (s.pgtt === 1) rig.flMap(root, BASE + p * 4096, 0);
      else rig.slMap(root, BASE + p * 4096, 0);
      rig.w64(rig.leafEntry(root, 4, BASE + p * 4096), 0n);
    }
  });
  return { rig, roots };
}

function invalidate(rig: VtdRig, space: (typeof SPACES)[number], page: number, inv: "page" | "domain" | "global"): void {
  const addr = BASE + page * 4096;
  if (inv === "global") rig.submit(desc.iotlb(1));
  else if (space.pgtt === 1) rig.submit(inv === "page" ? desc.pasidIotlb(3, space.did, space.pasid, addr, 0) : desc.pasidIotlb(2, space.did, space.pasid));
  else rig.submit(inv === "page" ? desc.iotlb(3, space.did, addr, 0) : desc.iotlb(2, space.did));
}

describe("cached translations agree with fresh walks", () => {
  it("after every edit followed by the matching invalidation", () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 60 }), (ops) => {
        const { rig, roots } = setup();
        const model = SPACES.map(() => new Map<number, number>());
        for (const op of ops) {
          const s = SPACES[op.space];
          const root = roots[op.space];
          const m = model[op.space];
          if (s === undefined || root === undefined || m === undefined) continue;
          const addr = BASE + op.page * 4096;
          const req = s.pgtt === 1 ? { sid: rig.dev, pasid: s.pasid, addr, write: true } : { sid: rig.dev, addr, write: true };
          if (op.kind === "dma") {
            const r = rig.unit.translate(req);
            const want = m.get(op.page);
            expect(r.ok ? r.pa : null).toBe(want === undefined ? null : want * 4096);
            continue;
          }
          const leaf = rig.leafEntry(root, 4, addr);
          if (op.kind === "map") {
            rig.w64(leaf, (BigInt(op.frame) << 12n) | (s.pgtt === 1 ? 0x7n : 0x3n));
            m.set(op.page, op.frame);
          } else {
            rig.w64(leaf, 0n);
            m.delete(op.page);
          }
          invalidate(rig, s, op.page, op.inv);
          expect(rig.unit.debug.checkCaches()).toEqual([]);
        }
      }),
      { numRuns: 150 },
    );
  });

  it("and the checker reports the entry a missing invalidation leaves stale", () => {
    fc.assert(
      fc.property(fc.nat(SPACES.length - 1), fc.nat(PAGES - 1), fc.integer({ min: 0x200, max: 0x2ff }), (si, page, frame) => {
        const { rig, roots } = setup();
        const s = SPACES[si];
        const root = roots[si];
        if (s === undefined || root === undefined) return;
        const addr = BASE + page * 4096;
        const leaf = rig.leafEntry(root, 4, addr);
        rig.w64(leaf, (BigInt(frame) << 12n) | (s.pgtt === 1 ? 0x7n : 0x3n));
        rig.unit.translate(s.pgtt === 1 ? { sid: rig.dev, pasid: s.pasid, addr, write: false } : { sid: rig.dev, addr, write: false });
        rig.w64(leaf, (BigInt(frame + 1) << 12n) | (s.pgtt === 1 ? 0x7n : 0x3n));
        const bad = rig.unit.debug.checkCaches();
        expect(bad).toHaveLength(1);
        expect(bad[0]?.cached.pageBase).toBe(frame * 4096);
      }),
      { numRuns: 50 },
    );
  });
});
