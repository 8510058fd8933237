import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { NodeIndex } from "./node-index.js";

// Keys shaped like the caches' (page number * 4 + size code), drawn from a small
// range so that sets, deletes and probe-run collisions meet often, plus the odd
// key a Map treats specially (-0, NaN, fractions, keys above 2^32).
const key = fc.oneof(
  { weight: 8, arbitrary: fc.integer({ min: 0, max: 255 }).map((k) => k * 4 + (k % 3)) },
  { weight: 2, arbitrary: fc.integer({ min: 0, max: 2 ** 20 }).map((k) => k * 2 ** 13) },
  { weight: 1, arbitrary: fc.constantFrom(-0, 0, Number.NaN, 0.5, 2 ** 32 + 4, 2 ** 40 + 1, -4) },
  // The device TLB's keys (range index * 64 + size shift): long probe runs on few home slots.
  { weight: 4, arbitrary: fc.integer({ min: 0, max: 127 }).map((k) => (2 ** 35 + k) * 64 + (k % 2 === 0 ? 12 : 21)) },
);
const op = fc.oneof(
  fc.record({ kind: fc.constant("set" as const), key, value: fc.integer() }),
  fc.record({ kind: fc.constant("delete" as const), key }),
  fc.record({ kind: fc.constant("get" as const), key }),
  fc.record({ kind: fc.constant("clear" as const) }),
);

describe("NodeIndex", () => {
  it("answers every get, delete and size exactly as a Map under any sequence of operations", () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 600 }), (ops) => {
        const idx = new NodeIndex<number>();
        const model = new Map<number, number>();
        for (const o of ops) {
          if (o.kind === "set") {
            idx.set(o.key, o.value);
            model.set(o.key, o.value);
          } else if (o.kind === "delete") {
            expect(idx.delete(o.key)).toBe(model.delete(o.key));
          } else if (o.kind === "get") {
            expect(idx.get(o.key)).toBe(model.get(o.key));
          } else {
            idx.clear();
            model.clear();
          }
          expect(idx.size).toBe(model.size);
        }
        // Every key the model holds is still reachable (no entry stranded behind a deletion's hole).
        for (const [k, v] of model) expect(idx.get(k)).toBe(v);
        expect(idx.values().sort((a, b) => a - b)).toEqual([...model.values()].sort((a, b) => a - b));
      }),
      { numRuns: 300 },
    );
  });

  it("keeps a sweep of thousands of consecutive pages reachable while deleting every other one", () => {
    const idx = new NodeIndex<number>();
    for (let p = 0; p < 5000; p++) idx.set(p * 4, p);
    for (let p = 0; p < 5000; p += 2) expect(idx.delete(p * 4)).toBe(true);
    expect(idx.size).toBe(2500);
    for (let p = 0; p < 5000; p++) expect(idx.get(p * 4)).toBe(p % 2 === 0 ? undefined : p);
  });
});
