import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { RIG_MEM_SIZE, makeRig } from "./testing/rig.js";

const PAGE = 0x1000;
const VA = 0x40_0000;
const PAGES = 16;

type PageKind = "next" | "jump" | "readOnly" | "unmapped" | "outside";

/**
 * In immediate mode the engine moves the pages that follow a translated page in one block
 * copy when the device TLB already maps them to the host-physical addresses that follow on
 * (DmaEngine.#extend). A stepwise engine moves exactly one page per step, so it is the plain
 * model: for any mapping (contiguous, scattered, read-only, missing, outside memory), any
 * warm-up and any transfer, both must end with the same result, bytes done, memory, and the
 * same device-TLB and engine counters (every page looked up once, as its own step would).
 */
describe("DMA engine: runs of device-TLB hits move as one block, exactly as page by page", () => {
  it("ends like a stepwise engine for any mapping, warm-up and transfer (property)", () => {
    const kind = fc.constantFrom<PageKind>("next", "next", "next", "jump", "readOnly", "unmapped", "outside");
    const transfer = fc.record({
      offset: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 2 * PAGE })),
      length: fc.integer({ min: 1, max: (PAGES - 2) * PAGE }),
      read: fc.boolean(),
      pattern: fc.constantFrom(PAGES * PAGE, 3 * PAGE + 5, 100),
    });
    // Between the transfer and its repeat: a page remapped elsewhere, with the device-TLB
    // invalidation sent or (stale entry served) not, or a whole flush, or nothing.
    const change = fc.record({ page: fc.integer({ min: 0, max: PAGES - 1 }), how: fc.constantFrom("invalidate", "stale", "flush", "none") });
    fc.assert(
      fc.property(fc.array(kind, { minLength: PAGES, maxLength: PAGES }), fc.array(fc.integer({ min: 0, max: PAGES - 1 }), { maxLength: 8 }), transfer, fc.boolean(), change, (kinds, warm, t, prewrite, ch) => {
        const ends = (["immediate", "stepwise"] as const).map((mode) => {
          const { iommu, ep, mem } = makeRig({ dma: { mode } });
          iommu.priCapable = false;
          let pa = 0x20_0000;
          kinds.forEach((k, i) => {
            pa = k === "jump" ? pa + 5 * PAGE : pa + PAGE;
            if (k === "unmapped") return;
            iommu.map(7, VA + i * PAGE, { pa: k === "outside" ? RIG_MEM_SIZE + i * PAGE : pa, write: k !== "readOnly" });
          });
          if (prewrite) for (let a = 0x20_0000; a < pa + PAGE; a += PAGE) mem.write8(a, 0x11);
          // Warm-up: one-byte reads fill the device TLB with some of the pages.
          const one = new Uint8Array(1);
          for (const w of warm) {
            ep.dma.setProgram({ pasid: 7, addr: VA + w * PAGE, length: 1, direction: "read", buffer: one });
            ep.dma.trigger();
            while (ep.dma.step()) {
              /* stepwise: one page per step */
            }
          }
          const pattern = Uint8Array.from({ length: t.pattern }, (_, i) => (i * 31 + 7) & 0xff);
          const buffer = new Uint8Array(t.length).fill(0xee);
          ep.dma.setProgram(t.read
            ? { pasid: 7, addr: VA + t.offset, length: t.length, direction: "read", buffer }
            : { pasid: 7, addr: VA + t.offset, length: t.length, direction: "write", pattern });
          const first = { result: ep.dma.trigger(), done: 0 };
          while (ep.dma.step()) {
            /* stepwise: one page per step */
          }
          first.result = ep.dma.result;
          first.done = ep.dma.bytesDone;
          // Repeated after the change: a run kept from the first transfer must not outlive it.
          if (ch.how !== "none") {
            const va = VA + ch.page * PAGE;
            iommu.unmap(7, va);
            iommu.map(7, va, { pa: 0x80_0000 + ch.page * PAGE });
            if (ch.how === "invalidate") iommu.invalidate(ep.sid, { pasid: 7, addr: va, size: PAGE });
            if (ch.how === "flush") ep.deviceTlb.flushAll();
          }
          ep.dma.trigger();
          while (ep.dma.step()) {
            /* stepwise: one page per step */
          }
          const memory = new Uint8Array(pa + PAGE - 0x20_0000);
          expect(mem.readBytes(0x20_0000, memory)).toBe(true);
          const moved = new Uint8Array(PAGES * PAGE);
          expect(mem.readBytes(0x80_0000, moved)).toBe(true);
          return {
            first,
            result: ep.dma.result,
            done: ep.dma.bytesDone,
            dma: { ...ep.dma.stats },
            tlb: { ...ep.deviceTlb.stats },
            translations: iommu.translations.length,
            aborts: mem.stats.aborts,
            bytes: [buffer, memory, moved],
          };
        });
        const [a, b] = ends;
        if (a === undefined || b === undefined) throw new Error("test setup");
        // Bytes compared apart (a diff of 100 KiB arrays would drown the report).
        expect(a.bytes.map((x, i) => Buffer.compare(x, b.bytes[i] ?? new Uint8Array(0)))).toEqual([0, 0, 0]);
        expect({ ...a, bytes: 0 }).toEqual({ ...b, bytes: 0 });
      }),
      { numRuns: 200 },
    );
    // Two engines per case over 16 MiB rigs: about a second unloaded, several on a loaded machine.
  }, 60_000);

  it("moves the pages before the end of memory and looks up none after it when a warm run crosses that end", () => {
    const ends = (["immediate", "stepwise"] as const).map((mode) => {
      const { iommu, ep, mem } = makeRig({ dma: { mode } });
      // Four pages mapped to the last two frames of memory and the two past its end.
      for (let i = 0; i < 4; i++) iommu.map(7, VA + i * PAGE, { pa: RIG_MEM_SIZE - 2 * PAGE + i * PAGE });
      for (let i = 0; i < 4; i++) {
        ep.dma.setProgram({ pasid: 7, addr: VA + i * PAGE, length: 1, direction: "read", buffer: new Uint8Array(1) });
        ep.dma.trigger();
        while (ep.dma.step()) {
          /* stepwise: one page per step */
        }
      }
      const hits = ep.deviceTlb.stats.hits;
      ep.dma.setProgram({ pasid: 7, addr: VA, length: 4 * PAGE, direction: "write", pattern: new Uint8Array(4 * PAGE).fill(0x77) });
      ep.dma.trigger();
      while (ep.dma.step()) {
        /* stepwise: one page per step */
      }
      return { result: ep.dma.result, done: ep.dma.bytesDone, hits: ep.deviceTlb.stats.hits - hits, last: mem.read8(RIG_MEM_SIZE - 1) };
    });
    expect(ends[0]).toEqual({ result: "memoryAbort", done: 2 * PAGE, hits: 3, last: 0x77 });
    expect(ends[1]).toEqual(ends[0]);
  });

  it("moves a warm 64 KiB transfer over contiguous host pages in one block write", () => {
    const { iommu, ep, mem } = makeRig();
    for (let i = 0; i < PAGES; i++) iommu.map(7, VA + i * PAGE, { pa: 0x20_0000 + i * PAGE });
    const pattern = new Uint8Array(PAGES * PAGE).fill(0x5a);
    ep.dma.setProgram({ pasid: 7, addr: VA, length: PAGES * PAGE, direction: "write", pattern });
    expect(ep.dma.trigger()).toBe("ok"); // cold: one ATS translation per page, page by page
    const writes = mem.stats.writes;
    const hits = ep.deviceTlb.stats.hits;
    expect(ep.dma.trigger()).toBe("ok");
    expect(mem.stats.writes - writes).toBe(1);
    expect(ep.deviceTlb.stats.hits - hits).toBe(PAGES);
    expect(mem.read8(0x20_0000 + PAGES * PAGE - 1)).toBe(0x5a);
  });
});
