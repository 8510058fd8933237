import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { type Rig, makeRig } from "./testing/rig.js";

/**
 * The DMA engine's translation memo (handles on device-TLB entries, re-used while the device
 * TLB's generation holds, for the first page of each step and for the pages that join a run)
 * must be invisible: the same workload run with it on and off gives the same device-TLB
 * counters, entries in recency order, ATS and untranslated traffic, page requests, engine
 * counters and results, and the same memory.
 */
const PAGE = 0x1000;
/** Pages the workload touches: more than the 16-entry device TLB of the rig holds, so entries are evicted too. */
const PAGES = 40;
const TLB_ENTRIES = 16;
const VA = 0x40_0000;
const PA_BASE = 0x20_0000;
/** A 2 MiB mapping of PASID 2 (one device-TLB entry covering many pages). */
const HUGE_VA = 0x80_0000;
const HUGE_PA = 0x60_0000;
const PASIDS = [1, 2] as const;

const pageArb = fc.integer({ min: 0, max: PAGES - 1 });
const offArb = fc.constantFrom(0, 8, 0x800, 0xff0);
const addrArb = fc.oneof(
  { weight: 6, arbitrary: fc.tuple(pageArb, offArb).map(([p, o]) => VA + p * PAGE + o) },
  { weight: 1, arbitrary: fc.tuple(fc.integer({ min: 0, max: 500 }), offArb).map(([p, o]) => HUGE_VA + p * PAGE + o) },
);

const dmaArb = fc.record({
  kind: fc.constant("dma" as const),
  pasid: fc.constantFrom<number | undefined>(undefined, ...PASIDS),
  priv: fc.boolean(),
  read: fc.boolean(),
  addr: addrArb,
  length: fc.oneof(fc.integer({ min: 1, max: 64 }), fc.integer({ min: 1, max: 6 * PAGE })),
  pattern: fc.constantFrom(100, 3 * PAGE + 5, 8 * PAGE),
  repeat: fc.integer({ min: 1, max: 4 }),
});

const actionArb = fc.oneof(
  { weight: 8, arbitrary: dmaArb },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("unmap" as const), pasid: fc.constantFrom(...PASIDS), page: pageArb }) },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant("map" as const), pasid: fc.constantFrom(...PASIDS), page: pageArb, to: pageArb, write: fc.boolean(), privOnly: fc.boolean() }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("invalidate" as const),
      pasid: fc.constantFrom<number | undefined>(undefined, ...PASIDS),
      global: fc.boolean(),
      page: pageArb,
      pages: fc.constantFrom(1, 4, PAGES),
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("respond" as const), code: fc.constantFrom("success" as const, "success" as const, "invalid" as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("flr" as const) }) },
);

type Action = typeof actionArb extends fc.Arbitrary<infer T> ? T : never;

function rig(memo: boolean, mode: "immediate" | "stepwise"): Rig {
  const r = makeRig({ dma: { mode, translationMemo: memo }, deviceTlbEntries: TLB_ENTRIES });
  for (const pasid of [undefined, ...PASIDS]) {
    const k = pasid ?? 0;
    // Mostly contiguous host pages (runs form), some jumps, some read-only, some unmapped (page requests).
    for (let p = 0; p < PAGES; p++) {
      if ((p * 7 + k) % 11 === 0) continue;
      const frame = p % 9 === 4 ? PAGES + p : p;
      r.iommu.map(pasid, VA + p * PAGE, { pa: PA_BASE + frame * PAGE, write: (p + k) % 13 !== 0, privOnly: pasid !== undefined && (p + k) % 17 === 0 });
    }
  }
  r.iommu.map(2, HUGE_VA, { pa: HUGE_PA, size: 2 << 20 });
  r.mem.writeBytes(PA_BASE, Uint8Array.from({ length: 2 * PAGES * PAGE }, (_, i) => (i * 13 + 5) & 0xff));
  return r;
}

/** What each DMA ended with, in order. */
interface Log {
  results: { result: string; done: number; buffer: string }[];
}

function runDma(r: Rig, a: Extract<Action, { kind: "dma" }>, log: Log): void {
  const pattern = Uint8Array.from({ length: a.pattern }, (_, i) => (i * 31 + 7) & 0xff);
  const buffer = new Uint8Array(a.length);
  const priv = a.pasid !== undefined && a.priv;
  const base = a.pasid === undefined ? {} : { pasid: a.pasid, priv };
  for (let i = 0; i < a.repeat; i++) {
    r.ep.dma.setProgram(a.read ? { ...base, addr: a.addr, length: a.length, direction: "read", buffer } : { ...base, addr: a.addr, length: a.length, direction: "write", pattern });
    r.ep.dma.trigger();
    while (r.ep.dma.step()) {
      /* stepwise: one page per step */
    }
    log.results.push({ result: r.ep.dma.result, done: r.ep.dma.bytesDone, buffer: createHash("sha256").update(buffer).digest("hex") });
  }
}

function play(r: Rig, a: Action, log: Log): void {
  switch (a.kind) {
    case "dma":
      runDma(r, a, log);
      return;
    case "unmap":
      r.iommu.unmap(a.pasid, VA + a.page * PAGE);
      return;
    case "map":
      r.iommu.unmap(a.pasid, VA + a.page * PAGE);
      r.iommu.map(a.pasid, VA + a.page * PAGE, { pa: PA_BASE + a.to * PAGE, write: a.write, privOnly: a.privOnly });
      return;
    case "invalidate":
      r.iommu.invalidate(
        r.ep.sid,
        a.global ? { global: true, addr: VA + a.page * PAGE, size: a.pages * PAGE } : { ...(a.pasid === undefined ? {} : { pasid: a.pasid }), addr: VA + a.page * PAGE, size: a.pages * PAGE },
      );
      return;
    case "respond": {
      const req = r.iommu.pendingPageRequests[0];
      if (req === undefined) return;
      // A success response after mapping the page, as a fault handler would.
      if (a.code === "success") {
        const page = req.addr - (req.addr % PAGE);
        r.iommu.unmap(req.pasid, page);
        r.iommu.map(req.pasid, page, { pa: PA_BASE + (Math.floor(page / PAGE) % PAGES) * PAGE });
      }
      r.iommu.respond(req, a.code);
      while (r.ep.dma.step()) {
        /* stepwise: the resumed transfer */
      }
      return;
    }
    case "flr":
      r.ep.functionLevelReset();
      return;
  }
}

/** Everything the memo could make differ. */
function observe(r: Rig, log: Log): unknown {
  const tlb = r.ep.deviceTlb;
  const mem = new Uint8Array(2 * PAGES * PAGE);
  r.mem.readBytes(PA_BASE, mem);
  const huge = new Uint8Array(2 << 20);
  r.mem.readBytes(HUGE_PA, huge);
  return {
    tlbStats: { ...tlb.stats },
    tlbEntries: [...tlb.entries()],
    translations: r.iommu.translations.map((t) => ({ ...t })),
    pageRequests: r.iommu.allPageRequests.map((p) => ({ ...p })),
    dmaStats: { ...r.ep.dma.stats },
    result: r.ep.dma.result,
    done: r.ep.dma.bytesDone,
    memStats: { ...r.mem.stats },
    log: log.results,
    // Digests: a deep comparison of megabytes element by element costs seconds.
    mem: createHash("sha256").update(mem).digest("hex"),
    huge: createHash("sha256").update(huge).digest("hex"),
  };
}

describe("DMA engine translation memo", () => {
  it("changes nothing observable: the same workload with the memo on and off gives identical device-TLB stats, entries in recency order, ATS traffic and memory (property)", () => {
    fc.assert(
      fc.property(fc.constantFrom("immediate" as const, "immediate" as const, "stepwise" as const), fc.array(actionArb, { minLength: 1, maxLength: 50 }), (mode, actions) => {
        const on = rig(true, mode);
        const off = rig(false, mode);
        const logOn: Log = { results: [] };
        const logOff: Log = { results: [] };
        for (const a of actions) {
          play(on, a, logOn);
          play(off, a, logOff);
          expect(on.ep.deviceTlb.stats).toEqual(off.ep.deviceTlb.stats);
          expect([...on.ep.deviceTlb.entries()]).toEqual([...off.ep.deviceTlb.entries()]);
        }
        expect(observe(on, logOn)).toEqual(observe(off, logOff));
      }),
      { numRuns: 60 },
    );
  });

  it("accounts a repeated 64 KiB transfer's hits on its handles with the counts and recency a probe gives", () => {
    const make = (memo: boolean): Rig => {
      const r = makeRig({ dma: { translationMemo: memo } });
      for (let p = 0; p < 16; p++) r.iommu.map(1, VA + p * PAGE, { pa: PA_BASE + p * PAGE });
      // Another PASID's page, touched between the repeats, so recency order has something to get wrong.
      r.iommu.map(2, VA, { pa: PA_BASE + 32 * PAGE });
      const buffer = new Uint8Array(16 * PAGE);
      const one = new Uint8Array(1);
      for (let i = 0; i < 4; i++) {
        r.ep.dma.setProgram({ pasid: 1, addr: VA, length: 16 * PAGE, direction: "read", buffer });
        r.ep.dma.trigger();
        r.ep.dma.setProgram({ pasid: 2, addr: VA, length: 1, direction: "read", buffer: one });
        r.ep.dma.trigger();
      }
      return r;
    };
    const on = make(true);
    const st = on.ep.deviceTlb.stats;
    // 17 pages filled once; 4 rounds of 16 + 1 lookups, the first of each page a miss.
    expect({ hits: st.hits, misses: st.misses, fills: st.fills }).toEqual({ hits: 4 * 17 - 17, misses: 17, fills: 17 });
    expect(on.ep.dma.stats.deviceTlbHits).toBe(4 * 17 - 17);
    const off = make(false);
    expect(observe(on, { results: [] })).toEqual(observe(off, { results: [] }));
  });

  it("drops its handles when the device TLB's generation moves, even while their entries stay cached", () => {
    // A read-only 2 MiB entry answers a read and is remembered; the mapping then changes to a
    // writable 4 KiB page inside it (no invalidation sent): a write hits the 2 MiB entry, is not
    // permitted, and fills the 4 KiB one. A probe now finds the 4 KiB entry first, so the next
    // read must use (and make most recent) that one, not the remembered 2 MiB handle.
    const page = HUGE_VA + 5 * PAGE;
    const run = (memo: boolean): Rig => {
      const r = makeRig({ dma: { translationMemo: memo } });
      r.iommu.map(2, HUGE_VA, { pa: HUGE_PA, size: 2 << 20, write: false });
      const buffer = new Uint8Array(64);
      const read = { pasid: 2, addr: page, length: 64, direction: "read" as const, buffer };
      r.ep.dma.setProgram(read);
      r.ep.dma.trigger();
      r.iommu.unmap(2, HUGE_VA);
      r.iommu.map(2, page, { pa: PA_BASE + 20 * PAGE });
      r.mem.write8(PA_BASE + 20 * PAGE, 0x5a);
      r.ep.dma.setProgram({ pasid: 2, addr: page + 64, length: 64, direction: "write", pattern: new Uint8Array(64).fill(0xa5) });
      r.ep.dma.trigger();
      r.ep.dma.setProgram(read);
      r.ep.dma.trigger();
      expect(buffer[0]).toBe(0x5a);
      return r;
    };
    const on = run(true);
    const sizes = [...on.ep.deviceTlb.entries()].map((e) => e.entry.size);
    expect(sizes).toEqual([PAGE, 2 << 20]);
    expect(observe(on, { results: [] })).toEqual(observe(run(false), { results: [] }));
  });
});
