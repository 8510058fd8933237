import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { IdBitmap } from "./id-bitmap.js";

/** The obvious linear search the hierarchy must agree with. */
function naiveNextZero(used: ReadonlySet<number>, size: number, from: number, to: number): number {
  for (let i = Math.max(0, from); i <= Math.min(to, size - 1); i++) if (!used.has(i)) return i;
  return -1;
}

describe("IdBitmap: hierarchical find-next-zero", () => {
  it("finds the lowest clear bit at or after from, never past to or the size", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 5000 }),
        fc.array(fc.tuple(fc.boolean(), fc.nat()), { maxLength: 400 }),
        fc.array(fc.tuple(fc.nat(), fc.nat()), { minLength: 1, maxLength: 20 }),
        (size, ops, queries) => {
          const bm = new IdBitmap(size);
          const used = new Set<number>();
          for (const [setIt, raw] of ops) {
            const i = raw % size;
            if (setIt) {
              expect(bm.set(i)).toBe(!used.has(i));
              used.add(i);
            } else {
              expect(bm.clear(i)).toBe(used.has(i));
              used.delete(i);
            }
          }
          expect(bm.used).toBe(used.size);
          for (const [a, b] of queries) {
            const from = a % (size + 40);
            const to = from + (b % (size + 40));
            expect(bm.findNextZero(from, to)).toBe(naiveNextZero(used, size, from, to));
          }
        },
      ),
    );
  });

  it("skips full regions at every level: a 2^20 map filled but for its last bit answers that bit", () => {
    const size = 1 << 20;
    const bm = new IdBitmap(size);
    for (let i = 0; i < size - 1; i++) bm.set(i);
    expect(bm.findNextZero(0, size - 1)).toBe(size - 1);
    bm.set(size - 1);
    expect(bm.findNextZero(0, size - 1)).toBe(-1);
    bm.clear(123_456);
    expect(bm.findNextZero(1, size - 1)).toBe(123_456);
    expect(bm.findNextZero(123_457, size - 1)).toBe(-1);
  });

  it("treats bits past the size as used", () => {
    const bm = new IdBitmap(33);
    for (let i = 0; i < 33; i++) bm.set(i);
    expect(bm.findNextZero(0, 1000)).toBe(-1);
    expect(bm.test(40)).toBe(false);
  });
});
