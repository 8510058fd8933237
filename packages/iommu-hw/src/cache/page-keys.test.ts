import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { invalidatePageRange, pageKey, probePageKeys, sizeCodeOf } from "./page-keys.js";
import { TaggedLru } from "./tagged-lru.js";

const KB4 = 4096;
const MB2 = 2 ** 21;
const GB1 = 2 ** 30;
const entry = (inputBase: number, size: number) => ({ inputBase, size });
type Entry = ReturnType<typeof entry>;
const TAG = 5;

function cacheWith(...entries: Entry[]): TaggedLru<Entry> {
  const c = new TaggedLru<Entry>("tlb", 1024);
  for (const e of entries) c.insert(TAG, pageKey(e.inputBase / KB4, sizeCodeOf(e.size)), e);
  return c;
}

describe("page keys of a translation cache with 4 KiB, 2 MiB and 1 GiB entries", () => {
  it("keys an entry by its page number in units of its own size, with the size code in the low two bits", () => {
    expect(pageKey(0x12345, 0)).toBe(0x12345 * 4);
    expect(pageKey(0x12345, 1)).toBe(Math.floor(0x12345 / 512) * 4 + 1);
    expect(pageKey(0x12345, 2)).toBe(4 * 0 + 2);
    expect([KB4, 64 * 1024, MB2, 32 * MB2, GB1].map(sizeCodeOf)).toEqual([0, 0, 1, 1, 2]);
  });

  it("finds the entry covering a page, smallest size first, and nothing for an uncovered page", () => {
    const small = entry(MB2 + 3 * KB4, KB4);
    const block = entry(MB2, MB2);
    const huge = entry(GB1, GB1);
    const c = cacheWith(small, block, huge);
    const keys = c.keysOf(TAG);
    if (keys === undefined) throw new Error("no keys");
    expect(probePageKeys(keys, MB2 / KB4 + 3)).toBe(c.nodeOf(TAG, pageKey(MB2 / KB4 + 3, 0)));
    expect(probePageKeys(keys, MB2 / KB4 + 3)?.value).toBe(small); // the 4 KiB entry over the 2 MiB one
    expect(probePageKeys(keys, MB2 / KB4 + 4)?.value).toBe(block);
    expect(probePageKeys(keys, GB1 / KB4 + 777)?.value).toBe(huge);
    expect(probePageKeys(keys, 0)).toBeUndefined();
  });

  it("invalidates exactly the entries overlapping a page range, key by key or by filtering the tag", () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.integer({ min: 0, max: 4 * 512 - 1 }), { maxLength: 40 }),
        fc.integer({ min: 0, max: 3 }),
        fc.integer({ min: 0, max: 4 * 512 - 1 }),
        fc.integer({ min: 1, max: 3 * 512 }),
        (pages, blocks, pfn, count) => {
          // 4 KiB entries in the first 8 MiB, and up to three 2 MiB entries above them.
          const entries = [...pages.map((p) => entry(p * KB4, KB4)), ...Array.from({ length: blocks }, (_, b) => entry((4 + b) * MB2, MB2))];
          const c = cacheWith(...entries);
          const overlaps = (e: Entry) => e.inputBase / KB4 < pfn + count && (e.inputBase + e.size) / KB4 > pfn;
          expect(invalidatePageRange(c, TAG, pfn, count)).toBe(entries.filter(overlaps).length);
          for (const e of entries) expect(c.peek(TAG, pageKey(e.inputBase / KB4, sizeCodeOf(e.size))) === undefined).toBe(overlaps(e));
        },
      ),
    );
  });
});
