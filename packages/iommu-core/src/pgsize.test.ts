import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { iommuPgsize, pgsizesFromBitmap } from "./pgsize.js";

const K4 = 0x1000;
const M2 = 0x20_0000;
const G1 = 0x4000_0000;
const sizes = [K4, M2, G1];

describe("iommuPgsize", () => {
  it("reads page sizes out of a bitmap, including sizes past bit 31", () => {
    expect(pgsizesFromBitmap(K4 | M2 | G1)).toEqual(sizes);
    expect(pgsizesFromBitmap(2 ** 39 + K4)).toEqual([K4, 2 ** 39]);
  });

  it("uses the largest page that alignment and length allow", () => {
    expect(iommuPgsize(sizes, 0, 0, G1)).toEqual({ pgsize: G1, count: 1 });
    expect(iommuPgsize(sizes, M2, 4 * M2, 3 * M2)).toEqual({ pgsize: M2, count: 3 });
    expect(iommuPgsize(sizes, K4, K4, 3 * K4)).toEqual({ pgsize: K4, count: 3 });
  });

  it("stops small pages at the next large-page boundary when iova and paddr are equally offset", () => {
    // 4 KiB pages up to the 2 MiB boundary, then 2 MiB pages can take over.
    expect(iommuPgsize(sizes, M2 - 2 * K4, M2 - 2 * K4, 2 * K4 + M2)).toEqual({ pgsize: K4, count: 2 });
  });

  it("keeps small pages to the end when iova and paddr are offset differently within a large page", () => {
    expect(iommuPgsize(sizes, M2 - 2 * K4, 3 * M2 - 3 * K4, 2 * K4 + M2)).toEqual({ pgsize: K4, count: (2 * K4 + M2) / K4 });
  });

  it("covers any aligned range exactly when applied repeatedly, never with a page past the end or misaligned", () => {
    fc.assert(
      fc.property(fc.nat({ max: 2 ** 20 }), fc.nat({ max: 2 ** 20 }), fc.integer({ min: 1, max: 2 ** 19 }), (iv, pa, n) => {
        const iova = iv * K4;
        const paddr = pa * K4;
        const size = n * K4;
        let done = 0;
        while (done < size) {
          const { pgsize, count } = iommuPgsize(sizes, iova + done, paddr + done, size - done);
          expect(count).toBeGreaterThan(0);
          expect((iova + done) % pgsize).toBe(0);
          expect((paddr + done) % pgsize).toBe(0);
          done += pgsize * count;
          expect(done).toBeLessThanOrEqual(size);
        }
        expect(done).toBe(size);
      }),
    );
  });
});
