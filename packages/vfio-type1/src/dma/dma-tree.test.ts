import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { DmaTree, type VfioDma } from "./dma-tree.js";
import { planUnmap } from "./unmap-plan.js";
import { errnoOf } from "@vsva/kernel/testing";
import { Errno } from "@vsva/kernel";

const P = 4096;
const dma = (page: number, pages: number): VfioDma => ({ iova: page * P, size: pages * P, vaddr: page * P, read: true, write: true });

describe("DmaTree (vfio_find_dma / vfio_link_dma)", () => {
  it("answers find() like a linear scan over random non-overlapping mappings", () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 63 }), fc.integer({ min: 1, max: 6 })), { maxLength: 40 }), fc.array(fc.tuple(fc.integer({ min: 0, max: 70 }), fc.integer({ min: 0, max: 8 }))), (adds, probes) => {
        const tree = new DmaTree();
        const model: VfioDma[] = [];
        const hits = (d: VfioDma, iova: number, size: number) => d.iova < (size === 0 ? iova + 1 : iova + size) && iova < d.iova + d.size;
        for (const [page, pages] of adds) {
          const d = dma(page, pages);
          if (tree.find(d.iova, d.size) !== undefined) {
            expect(model.some((m) => hits(m, d.iova, d.size))).toBe(true);
            continue;
          }
          expect(model.some((m) => hits(m, d.iova, d.size))).toBe(false);
          tree.insert(d);
          model.push(d);
        }
        model.sort((a, b) => a.iova - b.iova);
        expect(tree.entries()).toEqual(model);
        for (const [page, pages] of probes) {
          const want = model.find((m) => hits(m, page * P, pages * P));
          expect(tree.find(page * P, pages * P)).toBe(want);
        }
        for (const d of model) tree.remove(d);
        expect(tree.count).toBe(0);
      }),
    );
  });

  it("refuses to link an overlapping mapping or unlink one it does not hold (a kernel bug, not user input)", () => {
    const tree = new DmaTree();
    tree.insert(dma(4, 4));
    expect(() => tree.insert(dma(6, 4))).toThrow(/overlaps/);
    expect(() => tree.remove(dma(4, 4))).toThrow(/not linked/);
  });
});

describe("planUnmap (type1v2: never split a mapping)", () => {
  const tree = new DmaTree();
  for (const d of [dma(0, 4), dma(8, 2), dma(16, 1)]) tree.insert(d);

  it("takes every mapping wholly inside the range, holes included", () => {
    expect(planUnmap(tree, 0, 32 * P).map((d) => d.iova / P)).toEqual([0, 8, 16]);
    expect(planUnmap(tree, 4 * P, 4 * P)).toEqual([]);
  });

  it("is EINVAL when the range starts or ends inside a mapping", () => {
    expect(errnoOf(() => planUnmap(tree, 1 * P, 3 * P))).toBe(Errno.EINVAL);
    expect(errnoOf(() => planUnmap(tree, 0, 9 * P))).toBe(Errno.EINVAL);
    expect(errnoOf(() => planUnmap(tree, 0, 10 * P))).toBe(0);
  });
});
