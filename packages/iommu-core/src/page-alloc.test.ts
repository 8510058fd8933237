import { Errno, FaultInjector, KernelBug, KernelError } from "@vsva/kernel";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { PAGE_SIZE, type PageBacking, PageAllocator } from "./page-alloc.js";

/** A backing that records what it was asked to zero and can refuse a range. */
class RecordingBacking implements PageBacking {
  readonly bytes = new Map<number, number>();
  unbackedFrom = Infinity;
  zero(pa: number, len: number): boolean {
    if (pa + len > this.unbackedFrom) return false;
    for (let a = pa; a < pa + len; a += PAGE_SIZE) this.bytes.set(a, 0);
    return true;
  }
}

function pool(pages = 64, base = 0x10_0000) {
  const backing = new RecordingBacking();
  const faults = new FaultInjector();
  const alloc = new PageAllocator({ base, size: pages * PAGE_SIZE, backing, faults });
  return { alloc, backing, faults };
}

describe("PageAllocator", () => {
  it("hands out zeroed pages and counts them until they are freed", () => {
    const { alloc, backing } = pool();
    const a = alloc.allocPage("pt");
    const b = alloc.allocPage("pt");
    expect(a).not.toBe(b);
    expect(backing.bytes.get(a)).toBe(0);
    expect(alloc.stats).toMatchObject({ livePages: 2, allocs: 2 });
    alloc.freePages(a);
    alloc.freePages(b);
    expect(alloc.stats).toMatchObject({ livePages: 0, frees: 2, peakPages: 2 });
    expect(alloc.live()).toEqual([]);
  });

  it("aligns a block of 2^order pages to its size", () => {
    const { alloc } = pool(64, 0);
    alloc.allocPage("x");
    const big = alloc.allocPages(3, "pasid-dir");
    expect(big % (8 * PAGE_SIZE)).toBe(0);
    expect(alloc.stats.livePages).toBe(9);
  });

  it("fails with ENOMEM when the pool has no block left, and counts the failure", () => {
    const { alloc } = pool(4);
    alloc.allocPages(2, "all");
    expect(() => alloc.allocPage("more")).toThrow(expect.objectContaining({ errno: Errno.ENOMEM }) as Error);
    expect(alloc.stats.failed).toBe(1);
  });

  it("passes every allocation through the iommu.page-alloc injection point", () => {
    const { alloc, faults } = pool();
    faults.failPoint("iommu.page-alloc", { nth: 2 });
    alloc.allocPage("first");
    expect(() => alloc.allocPage("second")).toThrow(KernelError);
    expect(alloc.stats).toMatchObject({ livePages: 1, failed: 1 });
    expect(faults.counts.get("iommu.page-alloc")).toBe(2);
  });

  it("gives nothing out when the backing cannot be written", () => {
    const { alloc, backing } = pool(8, 0);
    backing.unbackedFrom = 0;
    expect(() => alloc.allocPage("x")).toThrow(expect.objectContaining({ errno: Errno.ENOMEM }) as Error);
    expect(alloc.stats.livePages).toBe(0);
  });

  it("treats a double free or a foreign address as a kernel bug", () => {
    const { alloc } = pool();
    const a = alloc.allocPage("x");
    alloc.freePages(a);
    expect(() => alloc.freePages(a)).toThrow(KernelBug);
    expect(() => alloc.freePages(a + 1)).toThrow(KernelBug);
  });

  it("refuses a misconfigured pool", () => {
    const faults = new FaultInjector();
    const backing = new RecordingBacking();
    expect(() => new PageAllocator({ base: 5, size: PAGE_SIZE, backing, faults })).toThrow(KernelError);
    expect(() => new PageAllocator({ base: 0, size: 100, backing, faults })).toThrow(KernelError);
  });

  it("never hands out overlapping blocks, whatever the allocation and free order", () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.boolean(), fc.nat({ max: 3 })), { maxLength: 60 }), (ops) => {
        const { alloc } = pool(32, 0);
        const held: { pa: number; n: number }[] = [];
        for (const [isAlloc, order] of ops) {
          if (isAlloc || held.length === 0) {
            try {
              const pa = alloc.allocPages(order, "p");
              const n = 1 << order;
              for (const h of held) expect(pa + n * PAGE_SIZE <= h.pa || h.pa + h.n * PAGE_SIZE <= pa).toBe(true);
              held.push({ pa, n });
            } catch (e) {
              expect(e).toBeInstanceOf(KernelError);
            }
          } else {
            const h = held.splice(order % held.length, 1)[0]!;
            alloc.freePages(h.pa);
          }
          expect(alloc.stats.livePages).toBe(held.reduce((s, h) => s + h.n, 0));
        }
      }),
    );
  });

  it("hands out the lowest free aligned block (first fit from page 0), whatever came before", () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.boolean(), fc.nat({ max: 3 }), fc.nat()), { maxLength: 80 }), (ops) => {
        const { alloc } = pool(32, 0);
        const used = new Uint8Array(32); // the model: a plain bitmap scanned from page 0
        const held: { pa: number; n: number }[] = [];
        for (const [isAlloc, order, pick] of ops) {
          if (isAlloc || held.length === 0) {
            const n = 1 << order;
            let want = -1;
            for (let i = 0; i + n <= 32 && want < 0; i += n) if (used.subarray(i, i + n).every((u) => u === 0)) want = i;
            let got = -1;
            try {
              got = alloc.allocPages(order, "p") / PAGE_SIZE;
            } catch (e) {
              expect(e).toBeInstanceOf(KernelError);
            }
            expect(got).toBe(want);
            if (got >= 0) {
              used.fill(1, got, got + n);
              held.push({ pa: got * PAGE_SIZE, n });
            }
          } else {
            const h = held.splice(pick % held.length, 1)[0]!;
            alloc.freePages(h.pa);
            used.fill(0, h.pa / PAGE_SIZE, h.pa / PAGE_SIZE + h.n);
          }
        }
      }),
    );
  });
});
