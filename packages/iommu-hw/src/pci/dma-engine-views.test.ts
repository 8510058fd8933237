import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { makeRig } from "./testing/rig.js";

const PAGE = 0x1000;
const VA = 0x100_000;
const PA = 0x200_000;
const PAGES = 8;

/** Index of the first byte where `a` and `b` differ (or their lengths do), -1 if none: a fast `toEqual` for big arrays. */
function firstDiff(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

/**
 * The engine keeps the views it makes of a program's pattern and buffer, one
 * per chunk offset, and uses a kept view only when it is exactly the chunk
 * asked for. These tests drive one engine through many transfers that reuse,
 * swap and overlap patterns and buffers (views of one ArrayBuffer at different
 * offsets, chunks at different phases and lengths) and compare every byte with
 * a plain model: a view of the wrong array, offset or length would put wrong
 * bytes somewhere.
 */
describe("DMA engine: chunk views are reused only when they are the chunk", () => {
  it("writes and reads exactly what a copy per chunk would, over many transfers (property)", () => {
    const shared = Uint8Array.from({ length: 4 * PAGES * PAGE }, (_, i) => (i * 7 + 3) & 0xff);
    const patterns = [
      Uint8Array.from({ length: 3 * PAGE }, (_, i) => (i * 13 + 1) & 0xff),
      shared.subarray(100, 100 + 3 * PAGE),
      shared.subarray(0, 2 * PAGE + 5),
      shared.subarray(PAGE, PAGE + 6 * PAGE),
      Uint8Array.from({ length: 5 }, (_, i) => 0xa0 + i),
    ];
    // Two buffers at byte offset 0 of different ArrayBuffers: their chunks have equal offsets and lengths.
    const buffers = [
      new Uint8Array(PAGES * PAGE),
      new Uint8Array(2 * PAGES * PAGE).subarray(0, PAGES * PAGE),
      new Uint8Array(2 * PAGES * PAGE).subarray(64, 64 + PAGES * PAGE),
    ];
    const transfer = fc.record({
      pattern: fc.integer({ min: 0, max: patterns.length - 1 }),
      buffer: fc.integer({ min: 0, max: buffers.length - 1 }),
      // A few offsets, so that transfers over different arrays often cut chunks at the same places.
      offset: fc.oneof(fc.constantFrom(0, 0x10, 0x800, PAGE, PAGE + 0x800), fc.integer({ min: 0, max: 2 * PAGE })),
      length: fc.integer({ min: 1, max: 5 * PAGE }),
      read: fc.boolean(),
      poke: fc.integer({ min: 0, max: 255 }),
    });
    fc.assert(
      fc.property(fc.array(transfer, { minLength: 1, maxLength: 12 }), fc.boolean(), (transfers, ats) => {
        const { iommu, ep, mem } = makeRig({ enable: { ats } });
        for (let i = 0; i < PAGES; i++) iommu.map(9, VA + i * PAGE, { pa: PA + (PAGES - 1 - i) * PAGE });
        const model = new Uint8Array(PAGES * PAGE);
        for (const t of transfers) {
          const pat = patterns[t.pattern] ?? patterns[0];
          const buf = buffers[t.buffer] ?? buffers[0];
          if (pat === undefined || buf === undefined) throw new Error("test setup");
          // Change the pattern between transfers: a kept view must show the new bytes.
          pat[t.poke % pat.length] = t.poke;
          if (t.read) {
            buf.fill(0xee);
            ep.dma.setProgram({ pasid: 9, addr: VA + t.offset, length: t.length, direction: "read", buffer: buf });
            expect(ep.dma.trigger()).toBe("ok");
            expect(firstDiff(buf.subarray(0, t.length), model.subarray(t.offset, t.offset + t.length))).toBe(-1);
            expect(buf.subarray(t.length).findIndex((b) => b !== 0xee)).toBe(-1);
          } else {
            ep.dma.setProgram({ pasid: 9, addr: VA + t.offset, length: t.length, direction: "write", pattern: pat });
            expect(ep.dma.trigger()).toBe("ok");
            for (let i = 0; i < t.length; i++) model[t.offset + i] = pat[i % pat.length] ?? 0;
          }
        }
        // Memory, page by page through the (reversed) mapping, equals the model.
        const page = new Uint8Array(PAGE);
        for (let i = 0; i < PAGES; i++) {
          expect(mem.readBytes(PA + (PAGES - 1 - i) * PAGE, page)).toBe(true);
          expect(firstDiff(page, model.subarray(i * PAGE, (i + 1) * PAGE))).toBe(-1);
        }
      }),
      { numRuns: 100 },
    );
  });

  it("a transfer that repeats over the same pattern writes the same bytes every time, including after the pattern changes", () => {
    const { iommu, ep, mem } = makeRig();
    for (let i = 0; i < 4; i++) iommu.map(9, VA + i * PAGE, { pa: PA + i * PAGE });
    const pattern = Uint8Array.from({ length: 4 * PAGE }, (_, i) => i & 0xff);
    const prog = { pasid: 9, addr: VA + 0x10, length: 4 * PAGE - 0x10, direction: "write" as const, pattern };
    const out = new Uint8Array(4 * PAGE - 0x10);
    for (let round = 0; round < 3; round++) {
      pattern.fill(round + 1, 0, PAGE); // first page of the pattern changes each round
      ep.dma.setProgram(prog);
      expect(ep.dma.trigger()).toBe("ok");
      expect(mem.readBytes(PA + 0x10, out)).toBe(true);
      expect(firstDiff(out, pattern.subarray(0, 4 * PAGE - 0x10))).toBe(-1);
    }
  });
});
