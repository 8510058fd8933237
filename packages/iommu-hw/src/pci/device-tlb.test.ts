import { describe, expect, it } from "vitest";
import fc from "fast-check";
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

  it("accounts a hit on a kept handle exactly as a lookup: the same counters and recency, and refuses a handle whose entry has gone", () => {
    const viaHandle = new DeviceTlb("a", 3);
    const viaLookup = new DeviceTlb("b", 3);
    for (const t of [viaHandle, viaLookup]) for (const a of [0x1000, 0x2000, 0x3000]) t.fill(4, false, a, ok(0x10_0000 + a));
    const h = viaHandle.lookupHandle(4, false, 0x1234);
    expect(viaLookup.lookup(4, false, 0x1234)?.paBase).toBe(h?.value.paBase);
    for (const t of [viaHandle, viaLookup]) t.lookup(4, false, 0x2000);
    // The handle's hit marks 0x1000 used again, as the lookup does.
    expect(h !== undefined && viaHandle.hitAgain(h)).toBe(true);
    viaLookup.lookup(4, false, 0x1fff);
    for (const t of [viaHandle, viaLookup]) t.fill(4, false, 0x5000, ok(0x20_0000));
    const order = (t: DeviceTlb): number[] => [...t.entries()].map((e) => e.entry.base);
    // CLOCK: 0x1000 and 0x2000 were hit since they came in, so the fill's sweep spares both and gives up 0x3000.
    expect(order(viaHandle)).toEqual([0x5000, 0x2000, 0x1000]);
    expect(order(viaHandle)).toEqual(order(viaLookup));
    expect(viaHandle.stats).toEqual(viaLookup.stats);
    viaHandle.invalidate({ pasid: 4, addr: 0x1000, size: 0x1000 });
    const before = { ...viaHandle.stats };
    expect(h !== undefined && viaHandle.hitAgain(h)).toBe(false);
    expect(viaHandle.stats).toEqual(before);
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

  it("at capacity, evicts an entry not used since the clock last passed it (CLOCK), sparing a used one, and counts it", () => {
    const tlb = new DeviceTlb("t", 2);
    tlb.fill(1, false, 0x1000, ok(0xa000));
    tlb.fill(1, false, 0x2000, ok(0xb000));
    tlb.lookup(1, false, 0x1000);
    tlb.fill(1, false, 0x3000, ok(0xc000));
    expect(tlb.peek(1, false, 0x2000)).toBeUndefined();
    expect(tlb.peek(1, false, 0x1000)).toBeDefined();
    expect(tlb.stats.evictions).toBe(1);
  });

  it("caches every power-of-two completion size from 4 KiB up at the range holding the address, at any address, and nothing else (property)", () => {
    // The definition the fill's integer fast paths must agree with: a size is cached when it is
    // 2^n for an integer n >= 12, and the entry is the aligned range holding `addr`.
    const reference = (addr: number, size: number): { base: number; paBase: number } | undefined => {
      const n = Math.round(Math.log2(size));
      if (!Number.isInteger(size) || size < KiB4 || 2 ** n !== size) return undefined;
      const offset = addr % size;
      return { base: addr - offset, paBase: 0x7000_0000_0000 + (addr % KiB4) - offset };
    };
    const sizeArb = fc.oneof(
      fc.integer({ min: 0, max: 62 }).map((n) => 2 ** n),
      fc.integer({ min: 0, max: 40 }).map((n) => 2 ** n + 1),
      fc.integer({ min: 1, max: 40 }).map((n) => 3 * 2 ** n),
      fc.constantFrom(0, -KiB4, 0.5, KiB4 + 0.5, 2 ** 31, 2 ** 32, 2 ** 30 + 2 ** 29, Number.NaN, Number.POSITIVE_INFINITY),
    );
    const addrArb = fc.oneof(fc.integer({ min: 0, max: 2 ** 53 - 1 }), fc.integer({ min: 0, max: 2 ** 32 }), fc.constant(0));
    fc.assert(
      fc.property(addrArb, sizeArb, (addr, size) => {
        const tlb = new DeviceTlb("t", 4);
        const pa = 0x7000_0000_0000 + (addr % KiB4);
        const got = tlb.fill(3, false, addr, ok(pa, size));
        const want = reference(addr, size);
        expect(got === undefined ? undefined : { base: got.base, paBase: got.paBase }).toEqual(want);
        expect(tlb.size).toBe(want === undefined ? 0 : 1);
        if (want !== undefined) expect(tlb.peek(3, false, addr)?.base).toBe(want.base);
      }),
      { numRuns: 2000 },
    );
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

/**
 * The device TLB as the model describes it, with nothing clever: a list in
 * fill order (youngest first) with a reference bit per entry, searched in
 * full, the smallest covering range winning; a hit sets the entry's bit, and
 * a fill into a full list sweeps from the oldest end, clearing set bits and
 * moving those entries to the young end, and evicts the first whose bit is
 * clear (CLOCK). The real one answers through a Map per tag and a
 * direct-mapped lookup memo; this is what both must agree with.
 */
class ReferenceAtc {
  entries: { pasid: number | undefined; priv: boolean; base: number; size: number; paBase: number; referenced: boolean }[] = [];
  hits = 0;
  misses = 0;
  constructor(readonly capacity: number) {}
  fill(pasid: number | undefined, priv: boolean, addr: number, pa: number, size: number): void {
    const base = addr - (addr % size);
    this.entries = this.entries.filter((e) => !(e.pasid === pasid && e.priv === priv && e.base === base && e.size === size));
    while (this.entries.length >= this.capacity) {
      const oldest = this.entries.pop();
      if (oldest?.referenced === true) {
        oldest.referenced = false;
        this.entries.unshift(oldest);
      }
    }
    this.entries.unshift({ pasid, priv, base, size, paBase: pa - (addr % size), referenced: false });
  }
  lookup(pasid: number | undefined, priv: boolean, addr: number): { base: number; size: number; paBase: number } | undefined {
    let best: (typeof this.entries)[number] | undefined;
    for (const e of this.entries) {
      if (e.pasid === pasid && e.priv === priv && e.base <= addr && addr < e.base + e.size && (best === undefined || e.size < best.size)) best = e;
    }
    if (best === undefined) {
      this.misses++;
      return undefined;
    }
    this.hits++;
    best.referenced = true;
    return { base: best.base, size: best.size, paBase: best.paBase };
  }
  invalidate(pasid: number | undefined, addr: number, size: number): void {
    this.entries = this.entries.filter((e) => !(e.pasid === pasid && e.base < addr + size && addr < e.base + e.size));
  }
}

describe("DeviceTlb lookups agree with a plain CLOCK list (property)", () => {
  // Pages 256 apart share a lookup-memo slot; a 2 MiB range covers several of them,
  // so the memo is exercised where a stale answer would show: a smaller entry filled
  // under a remembered larger one, an invalidated or evicted remembered entry, and
  // two requesters or two pages taking turns in one slot.
  const pages = [0, 0x100, 0x200, 0x7f_0000_0100];
  const addrArb = fc.tuple(fc.constantFrom(...pages), fc.nat({ max: 0xfff })).map(([pfn, off]) => pfn * KiB4 + off);
  const reqArb = fc.oneof(
    { weight: 3, arbitrary: fc.constant<[number | undefined, boolean]>([3, false]) },
    { weight: 1, arbitrary: fc.constantFrom<[number | undefined, boolean]>([4, false], [3, true], [undefined, false]) },
  );
  const opArb = fc.oneof(
    { weight: 3, arbitrary: fc.record({ op: fc.constant("fill" as const), req: reqArb, addr: addrArb, big: fc.boolean(), pa: fc.nat({ max: 0xff }) }) },
    { weight: 6, arbitrary: fc.record({ op: fc.constant("lookup" as const), req: reqArb, addr: addrArb }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant("invalidate" as const), req: reqArb, addr: addrArb, big: fc.boolean() }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant("flush" as const) }) },
  );

  it("same hit or miss, same entry, same counters and the same replacement order after any sequence", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 6 }), fc.array(opArb, { minLength: 20, maxLength: 80 }), (capacity, ops) => {
        const tlb = new DeviceTlb("t", capacity);
        const ref = new ReferenceAtc(capacity);
        for (const o of ops) {
          if (o.op === "fill") {
            const size = o.big ? MiB2 : KiB4;
            const pa = o.pa * MiB2 + (o.addr % size);
            tlb.fill(o.req[0], o.req[1], o.addr, ok(pa, size));
            ref.fill(o.req[0], o.req[1], o.addr, pa, size);
          } else if (o.op === "lookup") {
            const got = tlb.lookup(o.req[0], o.req[1], o.addr);
            const want = ref.lookup(o.req[0], o.req[1], o.addr);
            expect(got === undefined ? undefined : { base: got.base, size: got.size, paBase: got.paBase }).toEqual(want);
          } else if (o.op === "invalidate") {
            const size = o.big ? MiB2 : KiB4;
            const addr = o.addr - (o.addr % size);
            tlb.invalidate(o.req[0] === undefined ? { addr, size } : { pasid: o.req[0], addr, size });
            // An invalidation names the PASID, not the privilege: both levels go (the reference ignores priv here).
            ref.invalidate(o.req[0], addr, size);
          } else {
            tlb.flushAll();
            ref.entries = [];
          }
        }
        expect(tlb.stats).toMatchObject({ hits: ref.hits, misses: ref.misses });
        expect([...tlb.entries()].map((e) => [e.pasid, e.priv, e.entry.base, e.entry.size])).toEqual(ref.entries.map((e) => [e.pasid, e.priv, e.base, e.size]));
      }),
      { numRuns: 1000 },
    );
  });

  it("stops serving a remembered 2 MiB entry for a page as soon as a 4 KiB entry for that page is filled", () => {
    const tlb = new DeviceTlb("t", 8);
    tlb.fill(5, false, 0, ok(0x4000_0000, MiB2));
    expect(tlb.lookup(5, false, 0x10_0000)?.size).toBe(MiB2); // remembered for page 0x100
    tlb.fill(5, false, 0x10_0000, ok(0x9000));
    expect(tlb.lookup(5, false, 0x10_0000)?.paBase).toBe(0x9000);
  });
});

describe("DeviceTlb generation", () => {
  it("changes whenever any peek answer changes, over any sequence of fills, lookups, invalidations and flushes (property)", () => {
    const addr = fc.integer({ min: 0, max: 0x3f }).map((p) => p * KiB4);
    const op = fc.oneof(
      fc.record({ k: fc.constant("fill" as const), pasid: fc.constantFrom(1, 2), priv: fc.boolean(), addr, pa: fc.integer({ min: 0, max: 0xff }), big: fc.boolean(), write: fc.boolean() }),
      fc.record({ k: fc.constant("lookup" as const), pasid: fc.constantFrom(1, 2), priv: fc.boolean(), addr }),
      fc.record({ k: fc.constant("invalidate" as const), pasid: fc.constantFrom(1, 2, undefined), global: fc.boolean(), addr, pages: fc.integer({ min: 1, max: 8 }) }),
      fc.constant({ k: "flush" as const }),
    );
    // Every probe the test can make: (PASID, privilege, page).
    const probes: [number, boolean, number][] = [];
    for (const pasid of [1, 2]) for (const priv of [false, true]) for (let p = 0; p < 0x40; p++) probes.push([pasid, priv, p * KiB4]);
    fc.assert(
      fc.property(fc.array(op, { minLength: 1, maxLength: 60 }), (ops) => {
        const tlb = new DeviceTlb("t", 8); // small: fills evict
        const snapshot = (): (AtcEntryLike | undefined)[] => probes.map(([pa, pr, a]) => tlb.peek(pa, pr, a));
        let gen = tlb.generation;
        let seen = snapshot();
        for (const o of ops) {
          if (o.k === "fill") tlb.fill(o.pasid, o.priv, o.addr, ok(o.pa * MiB2, o.big ? MiB2 : KiB4, { write: o.write }));
          else if (o.k === "lookup") tlb.lookup(o.pasid, o.priv, o.addr);
          else if (o.k === "invalidate") tlb.invalidate({ ...(o.pasid === undefined ? {} : { pasid: o.pasid }), global: o.global, addr: o.addr, size: o.pages * KiB4 });
          else tlb.flushAll();
          const now = snapshot();
          if (tlb.generation === gen) expect(now).toEqual(seen);
          gen = tlb.generation;
          seen = now;
        }
      }),
    );
  });
});

type AtcEntryLike = ReturnType<DeviceTlb["peek"]>;
