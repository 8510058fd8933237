import { describe, expect, it } from "vitest";
import type { TranslateOk } from "../iommu-port.js";
import { DeviceTlb } from "./device-tlb.js";

const KiB4 = 0x1000;
const MiB2 = 0x20_0000;

function ok(pa: number, size = KiB4, perms: Partial<Omit<TranslateOk, "ok" | "pa" | "size">> = {}): TranslateOk {
  return { ok: true, pa, size, read: true, write: true, exec: false, privOnly: false, ...perms };
}

describe("DeviceTlb", () => {
  it("serves a filled translation for every address of its range, and misses outside it", () => {
    const tlb = new DeviceTlb("t", 8);
    tlb.fill(5, false, 0x40_0000, ok(0x80_0000, MiB2));
    expect(tlb.lookup(5, false, 0x41_2345)?.paBase).toBe(0x80_0000);
    expect(tlb.lookup(5, false, 0x60_0000)).toBeUndefined();
    expect(tlb.stats).toMatchObject({ hits: 1, misses: 1, fills: 1 });
  });

  it("keeps PASIDs, no-PASID and privilege levels apart", () => {
    const tlb = new DeviceTlb("t", 8);
    tlb.fill(1, false, 0x1000, ok(0xa000));
    tlb.fill(undefined, false, 0x1000, ok(0xb000));
    tlb.fill(1, true, 0x1000, ok(0xc000));
    expect(tlb.peek(1, false, 0x1000)?.paBase).toBe(0xa000);
    expect(tlb.peek(undefined, false, 0x1000)?.paBase).toBe(0xb000);
    expect(tlb.peek(1, true, 0x1000)?.paBase).toBe(0xc000);
    expect(tlb.peek(2, false, 0x1000)).toBeUndefined();
  });

  it("removes by PASID and range only what overlaps, both privilege levels", () => {
    const tlb = new DeviceTlb("t", 16);
    for (const a of [0x0, 0x1000, 0x2000, 0x3000]) tlb.fill(7, false, a, ok(0x10_0000 + a));
    tlb.fill(7, true, 0x1000, ok(0x20_0000));
    tlb.fill(8, false, 0x1000, ok(0x30_0000));
    expect(tlb.invalidate({ pasid: 7, addr: 0x0, size: 0x2000 })).toBe(3);
    expect(tlb.peek(7, false, 0x0)).toBeUndefined();
    expect(tlb.peek(7, false, 0x1000)).toBeUndefined();
    expect(tlb.peek(7, true, 0x1000)).toBeUndefined();
    expect(tlb.peek(7, false, 0x2000)).toBeDefined();
    expect(tlb.peek(8, false, 0x1000)).toBeDefined();
  });

  it("removes a large entry when any part of it is invalidated", () => {
    const tlb = new DeviceTlb("t", 4);
    tlb.fill(3, false, 0x20_0000, ok(0x40_0000, MiB2));
    expect(tlb.invalidate({ pasid: 3, addr: 0x2f_f000, size: KiB4 })).toBe(1);
    expect(tlb.peek(3, false, 0x20_0000)).toBeUndefined();
  });

  it("an invalidation without PASID touches only requests without PASID", () => {
    const tlb = new DeviceTlb("t", 4);
    tlb.fill(undefined, false, 0x1000, ok(0xa000));
    tlb.fill(1, false, 0x1000, ok(0xb000));
    expect(tlb.invalidate({ addr: 0, size: 2 ** 40 })).toBe(1);
    expect(tlb.peek(1, false, 0x1000)).toBeDefined();
  });

  it("a global invalidation removes every PASID's overlapping entries", () => {
    const tlb = new DeviceTlb("t", 8);
    tlb.fill(1, false, 0x1000, ok(0xa000));
    tlb.fill(2, true, 0x1000, ok(0xb000));
    tlb.fill(2, false, 0x9000, ok(0xc000));
    tlb.fill(undefined, false, 0x1000, ok(0xd000));
    expect(tlb.invalidate({ global: true, addr: 0x1000, size: KiB4 })).toBe(2);
    expect(tlb.peek(2, false, 0x9000)).toBeDefined();
    expect(tlb.peek(undefined, false, 0x1000)).toBeDefined();
  });

  it("evicts the least recently used entry at capacity and counts it", () => {
    const tlb = new DeviceTlb("t", 2);
    tlb.fill(1, false, 0x1000, ok(0xa000));
    tlb.fill(1, false, 0x2000, ok(0xb000));
    tlb.lookup(1, false, 0x1000);
    tlb.fill(1, false, 0x3000, ok(0xc000));
    expect(tlb.peek(1, false, 0x2000)).toBeUndefined();
    expect(tlb.peek(1, false, 0x1000)).toBeDefined();
    expect(tlb.stats.evictions).toBe(1);
  });

  it("does not cache a malformed completion size", () => {
    const tlb = new DeviceTlb("t", 2);
    expect(tlb.fill(1, false, 0x1000, ok(0xa000, 0x1800))).toBeUndefined();
    expect(tlb.fill(1, false, 0x1000, ok(0xa000, 0x800))).toBeUndefined();
    expect(tlb.size).toBe(0);
  });
});

describe("DeviceTlb repeated lookups of one requester", () => {
  it("stop serving an entry at its invalidation and serve the refill, counting each lookup once", () => {
    const tlb = new DeviceTlb("t", 8);
    tlb.fill(7, false, 0x1000, ok(0xa000));
    expect(tlb.lookup(7, false, 0x1008)?.paBase).toBe(0xa000);
    expect(tlb.invalidate({ pasid: 7, addr: 0x1000, size: KiB4 })).toBe(1);
    expect(tlb.lookup(7, false, 0x1008)).toBeUndefined();
    tlb.fill(7, false, 0x1000, ok(0xb000));
    expect(tlb.lookup(7, false, 0x1008)?.paBase).toBe(0xb000);
    tlb.flushAll();
    expect(tlb.lookup(7, false, 0x1008)).toBeUndefined();
    expect(tlb.stats).toMatchObject({ hits: 2, misses: 2, fills: 2 });
  });
});
