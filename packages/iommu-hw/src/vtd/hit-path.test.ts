import { type SourceId, sourceId } from "@vsva/kernel";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { DmaRequest, TranslateResult } from "../iommu-port.js";
import { CacheClass, cacheTag, iotlbKey } from "./caches.js";
import { FaultReason } from "./fault-reason.js";
import { ResolvedPath, ResolvedPaths } from "./resolved-path.js";
import { FL_P, FL_RW, FL_US, VtdRig, desc } from "./testing/rig.js";
import { MICRO_TLB_SLOTS } from "./translate.js";

/**
 * The IOTLB-hit path (resolved (source, PASID) paths and the micro-TLB in
 * front of the IOTLB) must answer exactly what the full pipeline answers:
 * the same translation or fault as a fresh walk once software has made the
 * invalidations its edits require, the same hit accounting, the same replacement.
 */

const BASE = 0x40_0000;
const PAGES = MICRO_TLB_SLOTS + 8; // more pages than micro-TLB slots
const PASID = 5;
const DID = 1;
const SL_DID = 2;

type PageKind = "rw" | "ro" | "supervisor" | "absent";
const KINDS: readonly PageKind[] = ["rw", "ro", "supervisor", "absent"];
const leafBits = (k: PageKind, frame: number): bigint =>
  k === "absent" ? 0n : (BigInt(frame) << 12n) | FL_P | (k === "ro" || k === "supervisor" ? 0n : FL_RW) | (k === "supervisor" ? 0n : FL_US) | (k === "supervisor" ? FL_RW : 0n);

interface World {
  rig: VtdRig;
  dev2: SourceId;
  flRoot: number;
  slRoot: number;
  sre: boolean;
  dte: boolean;
}

function world(): World {
  const rig = new VtdRig({ caches: { iotlb: 64, context: 4, pasid: 8 } }).bringUp();
  const dev2 = sourceId(0, 3, 0);
  rig.device();
  rig.device({}, dev2);
  const flRoot = rig.alloc();
  const slRoot = rig.alloc();
  rig.setPasid(PASID, { pgtt: 1, did: DID, flptr: flRoot, sre: true, ere: true });
  rig.setPasid(0, { pgtt: 2, did: SL_DID, slptr: slRoot, aw: 2 });
  for (let p = 0; p < PAGES; p++) {
    rig.flMap(flRoot, BASE + p * 4096, 0);
    rig.w64(rig.leafEntry(flRoot, 4, BASE + p * 4096), leafBits(KINDS[p % 4] ?? "rw", 0x300 + p));
    rig.slMap(slRoot, BASE + p * 4096, (0x400 + p) * 4096);
  }
  return { rig, dev2, flRoot, slRoot, sre: true, dte: true };
}

type Op =
  | { kind: "dma"; dev: 0 | 1 | 2; pasid: "none" | "fl" | "unset"; page: number; off: number; write: boolean; priv: boolean; exec: boolean; ats: boolean }
  | { kind: "upgrade"; page: number }
  | { kind: "remap"; page: number; pageKind: PageKind; frame: number }
  | { kind: "sre" }
  | { kind: "dte" };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 8, arbitrary: fc.record({
    kind: fc.constant("dma" as const),
    dev: fc.constantFrom(0 as const, 1 as const, 2 as const),
    pasid: fc.constantFrom("none" as const, "fl" as const, "unset" as const),
    page: fc.nat(PAGES - 1),
    off: fc.nat(4095),
    write: fc.boolean(),
    priv: fc.boolean(),
    exec: fc.boolean(),
    ats: fc.boolean(),
  }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("upgrade" as const), page: fc.nat(PAGES - 1) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("remap" as const), page: fc.nat(PAGES - 1), pageKind: fc.constantFrom(...KINDS), frame: fc.integer({ min: 0x500, max: 0x5ff }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("sre" as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("dte" as const) }) },
);

/** What a device can compare: the whole translation, or the fault reason. */
const seen = (r: TranslateResult): unknown => (r.ok ? { ...r } : { fault: r.reason });

function apply(w: World, op: Op): void {
  const { rig } = w;
  switch (op.kind) {
    case "dma": {
      // dev 2 is no device at all: a source ID that is not an integer.
      const sid = op.dev === 0 ? rig.dev : op.dev === 1 ? w.dev2 : ((rig.dev + 0.5) as SourceId);
      const req: DmaRequest = {
        sid,
        ...(op.pasid === "none" ? {} : { pasid: op.pasid === "fl" ? PASID : 9 }),
        addr: BASE + op.page * 4096 + op.off,
        write: op.write,
        priv: op.priv,
        exec: op.exec,
        ats: op.ats,
      };
      expect(seen(rig.unit.translate(req))).toEqual(seen(rig.unit.debug.translateUncached(req)));
      return;
    }
    case "upgrade": {
      // Adding rights needs no invalidation: a cached entry lacking them is re-walked.
      const at = rig.leafEntry(w.flRoot, 4, BASE + op.page * 4096);
      const e = rig.r64(at);
      if ((e & FL_P) !== 0n) rig.w64(at, e | FL_RW | FL_US);
      return;
    }
    case "remap":
      rig.w64(rig.leafEntry(w.flRoot, 4, BASE + op.page * 4096), leafBits(op.pageKind, op.frame));
      rig.submit(desc.pasidIotlb(3, DID, PASID, BASE + op.page * 4096, 0));
      return;
    case "sre":
      // A PASID-entry change: PASID-cache invalidation, then the PASID's IOTLB entries.
      w.sre = !w.sre;
      rig.setPasid(PASID, { pgtt: 1, did: DID, flptr: w.flRoot, sre: w.sre, ere: true });
      rig.submit(desc.pasidCache(1, DID, PASID), desc.pasidIotlb(2, DID, PASID));
      return;
    case "dte":
      // A context-entry change: device-selective context invalidation, then the IOTLB.
      w.dte = !w.dte;
      rig.setContext(rig.dev, { dte: w.dte });
      rig.submit(desc.contextCache(3, 0, rig.dev, 0), desc.iotlb(1));
      return;
  }
}

describe("the IOTLB-hit path", () => {
  it("answers every request as a fresh walk does, across edits followed by their invalidations", () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 120 }), (ops) => {
        const w = world();
        for (const op of ops) apply(w, op);
        // A rights upgrade made without invalidation leaves a cached entry narrower than the
        // tables (served correctly by the re-walk above, but reported by the checker).
        if (!ops.some((o) => o.kind === "upgrade")) expect(w.rig.unit.debug.checkCaches()).toEqual([]);
      }),
      { numRuns: 300 },
    );
  });

  it("counts each IOTLB hit once, whether the micro-TLB or the IOTLB lookup serves it", () => {
    const w = world();
    const stats = w.rig.unit.debug.caches.iotlb.stats;
    const reqs = Array.from({ length: PAGES }, (_, p) => ({ sid: w.rig.dev, pasid: PASID, addr: BASE + p * 4096, write: false }))
      .filter((_, p) => KINDS[p % 4] === "rw" || KINDS[p % 4] === "ro");
    for (const r of reqs) expect(w.rig.unit.translate(r).ok).toBe(true);
    expect(stats.misses).toBe(reqs.length);
    const before = stats.hits;
    // Twice in a row per page (the second from the micro-TLB), then all pages in turn (from the IOTLB).
    for (const r of reqs) {
      w.rig.unit.translate(r);
      w.rig.unit.translate({ ...r, addr: r.addr + 8 });
    }
    for (const r of reqs) w.rig.unit.translate(r);
    expect(stats.hits - before).toBe(3 * reqs.length);
    expect(stats.misses).toBe(reqs.length);
  });

  it("counts context-cache and PASID-cache hits on an IOTLB lookup, as the lookups would", () => {
    const w = world();
    const { context, pasid } = w.rig.unit.debug.caches.stats();
    const a = { sid: w.rig.dev, pasid: PASID, addr: BASE, write: false };
    const b = { ...a, addr: BASE + MICRO_TLB_SLOTS * 4096 }; // same micro-TLB slot as a
    w.rig.unit.translate(a);
    w.rig.unit.translate(b);
    expect([context.misses, pasid.misses]).toEqual([1, 1]);
    const hits = [context.hits, pasid.hits];
    w.rig.unit.translate(a); // evicts b from the slot: an IOTLB lookup
    expect([context.hits - (hits[0] ?? 0), pasid.hits - (hits[1] ?? 0)]).toEqual([1, 1]);
  });

  it("serves a sweep of as many consecutive pages as the micro-TLB has slots from the micro-TLB: hits counted, no context or PASID lookup", () => {
    const rig = new VtdRig().bringUp();
    rig.device();
    const root = rig.alloc();
    rig.setPasid(PASID, { pgtt: 1, did: DID, flptr: root });
    const reqs = Array.from({ length: MICRO_TLB_SLOTS }, (_, p): DmaRequest => ({ sid: rig.dev, pasid: PASID, addr: BASE + p * 4096, write: false }));
    for (const r of reqs) rig.flMap(root, r.addr, r.addr + 0x100_0000);
    for (const r of reqs) rig.unit.translate(r); // fills
    for (const r of reqs) rig.unit.translate(r); // IOTLB lookups proper: each page enters its slot
    const { context, pasid, iotlb } = rig.unit.debug.caches.stats();
    const before = [context.hits, pasid.hits, iotlb.hits];
    for (const r of reqs) expect(rig.unit.translate(r).ok).toBe(true);
    expect([context.hits, pasid.hits, iotlb.hits]).toEqual([before[0], before[1], (before[2] ?? 0) + MICRO_TLB_SLOTS]);
    expect(MICRO_TLB_SLOTS).toBeGreaterThanOrEqual(64);
  });

  it("marks a page hit in the micro-TLB referenced for the IOTLB's CLOCK, so the next eviction spares it", () => {
    const rig = new VtdRig({ caches: { iotlb: 2 } }).bringUp();
    rig.device();
    const root = rig.alloc();
    rig.setPasid(PASID, { pgtt: 1, did: DID, flptr: root });
    for (let p = 0; p < 3; p++) rig.flMap(root, BASE + p * 4096, (0x300 + p) * 4096);
    const at = (p: number): DmaRequest => ({ sid: rig.dev, pasid: PASID, addr: BASE + p * 4096, write: false });
    const tag = cacheTag(CacheClass.FIRST, DID, PASID);
    const cached = (p: number): boolean => rig.unit.debug.caches.iotlb.peek(tag, iotlbKey(BASE / 4096 + p, 0)) !== undefined;
    rig.unit.translate(at(0)); // miss: fills page 0
    rig.unit.translate(at(0)); // IOTLB hit: page 0 enters the micro-TLB, its bit set
    rig.unit.translate(at(1)); // miss: fills page 1
    rig.unit.translate(at(2)); // miss: the sweep spares page 0 (clearing its bit) and evicts page 1
    expect([cached(0), cached(1), cached(2)]).toEqual([true, false, true]);
    rig.unit.translate(at(0)); // micro-TLB hit: only this sets page 0's bit again
    rig.unit.translate(at(1)); // miss: the sweep spares page 0 once more and evicts page 2
    expect([cached(0), cached(1), cached(2)]).toEqual([true, true, false]);
  });

  it("gives a repeated address the IOTLB entry's frozen answer, another address in the page its own, and a remapped page a new one", () => {
    const w = world();
    const r: DmaRequest = { sid: w.rig.dev, pasid: PASID, addr: BASE + 0x10, write: false };
    const first = w.rig.unit.translate(r); // the fill
    const again = w.rig.unit.translate(r); // micro-TLB
    const far = w.rig.unit.translate({ ...r, addr: r.addr + MICRO_TLB_SLOTS * 4096 }); // a read-write page in the same micro-TLB slot
    const third = w.rig.unit.translate(r); // its micro-TLB slot was taken: the IOTLB proper
    expect(far.ok).toBe(true);
    expect(Object.isFrozen(first)).toBe(true);
    expect(again).toBe(first);
    expect(third).toBe(first);
    const other = w.rig.unit.translate({ ...r, addr: BASE + 0x18 });
    expect(other).not.toBe(first);
    expect(other.ok && first.ok && other.pa - first.pa).toBe(8);
    expect(w.rig.unit.translate(r)).toEqual(first); // the memo follows the last address asked
    w.rig.w64(w.rig.leafEntry(w.flRoot, 4, BASE), leafBits("rw", 0x7aa));
    w.rig.submit(desc.pasidIotlb(3, DID, PASID, BASE, 0));
    const remapped = w.rig.unit.translate(r);
    expect(remapped.ok && remapped.pa).toBe(0x7aa * 4096 + 0x10);
    expect(w.rig.unit.debug.caches.iotlb.stats.hits).toBeGreaterThan(0);
  });

  it("checks a device's own context entry before handing out an entry's memo another device's request left (ATS with DTE clear)", () => {
    const w = world();
    const a: DmaRequest = { sid: w.rig.dev, pasid: PASID, addr: BASE + 0x40, write: false };
    const b: DmaRequest = { ...a, sid: w.dev2 }; // the same DID and PASID: the same IOTLB entry
    w.rig.unit.translate(b);
    expect(w.rig.unit.translate(b).ok).toBe(true); // the entry's memo, kept for a plain read
    w.rig.setContext(w.rig.dev, { dte: false });
    w.rig.submit(desc.contextCache(3, 0, w.rig.dev, 0));
    expect(w.rig.unit.translate(a).ok).toBe(true); // resolved afresh; the entry enters this path's micro-TLB
    const ats = w.rig.unit.translate({ ...a, ats: true }); // same address and flags as the memo, but ATS
    expect(ats.ok ? null : ats.reason).toBe(FaultReason.DTE_CLEAR);
    expect(w.rig.unit.translate(b).ok).toBe(true);
  });

  it("does not let a user write through a read-only page a supervisor write (WPE=0) cached as writable", () => {
    const w = world();
    const ro = BASE + 4096; // page 1 is read-only
    const sup: DmaRequest = { sid: w.rig.dev, pasid: PASID, addr: ro, write: true, priv: true };
    expect(w.rig.unit.translate(sup).ok).toBe(true); // CR0.WP=0 semantics
    expect(w.rig.unit.translate(sup).ok).toBe(true); // and again, from the IOTLB
    const user = w.rig.unit.translate({ ...sup, priv: false });
    expect(user.ok ? null : user.reason).toBe(FaultReason.WRITE_DENIED);
    expect(w.rig.unit.translate(sup).ok).toBe(true);
  });

  it("stays stale after a PASID-entry change until the PASID-cache invalidation, then resolves afresh", () => {
    const w = world();
    const r: DmaRequest = { sid: w.rig.dev, pasid: PASID, addr: BASE, write: false, priv: true };
    w.rig.unit.translate(r);
    expect(w.rig.unit.translate(r).ok).toBe(true);
    w.rig.setPasid(PASID, { pgtt: 1, did: DID, flptr: w.flRoot, sre: false, ere: true });
    expect(w.rig.unit.translate(r).ok).toBe(true); // the cached entry, SRE=1, is still used
    w.rig.submit(desc.pasidCache(1, DID, PASID));
    const after = w.rig.unit.translate(r);
    expect(after.ok ? null : after.reason).toBe(FaultReason.SRE_CLEAR);
  });

  it("gives a new root table (SRTP) a fresh start, without trusting paths resolved under the old one", () => {
    const w = world();
    const r: DmaRequest = { sid: w.rig.dev, pasid: PASID, addr: BASE, write: false };
    w.rig.unit.translate(r);
    expect(w.rig.unit.translate(r).ok).toBe(true);
    // An empty root table, and the global context-cache and IOTLB invalidations software owes after SRTP.
    w.rig.setRootTable(1, w.rig.alloc());
    w.rig.submit(desc.contextCache(1), desc.pasidCache(3, 0), desc.iotlb(1));
    const after = w.rig.unit.translate(r);
    expect(after.ok ? null : after.reason).toBe(FaultReason.ROOT_ENTRY_NOT_PRESENT);
  });
});

describe("resolved paths", () => {
  it("are found only under their exact source ID and PASID, never through a colliding key", () => {
    const w = world();
    w.rig.unit.translate({ sid: w.rig.dev, pasid: PASID, addr: BASE, write: false });
    const [ctx] = w.rig.unit.debug.caches.context.entries();
    const [pe] = w.rig.unit.debug.caches.pasid.entries();
    if (ctx === undefined || pe === undefined) throw new Error("the context and PASID caches should hold the device's entries");
    const paths = new ResolvedPaths(8);
    paths.add(new ResolvedPath(1, 2 ** 20 - 1, ctx, pe, 2 ** 20 - 1, CacheClass.FIRST, 0));
    paths.add(new ResolvedPath(2, 3, ctx, pe, 3, CacheClass.FIRST, 0)); // the one-entry front now holds another path
    // (1.5, -1) computes the same number as (1, 2^20 - 1).
    expect(paths.find(1.5, -1)).toBeNull();
    expect(paths.find(1, 2 ** 20 - 1)?.pasidKey).toBe(2 ** 20 - 1);
  });

  it("die with the context or PASID cache entry they rest on", () => {
    const w = world();
    w.rig.unit.translate({ sid: w.rig.dev, pasid: PASID, addr: BASE, write: false });
    const [ctx] = w.rig.unit.debug.caches.context.entries();
    const [pe] = w.rig.unit.debug.caches.pasid.entries();
    if (ctx === undefined || pe === undefined) throw new Error("the context and PASID caches should hold the device's entries");
    const paths = new ResolvedPaths(8);
    paths.add(new ResolvedPath(w.rig.dev, PASID, ctx, pe, PASID, CacheClass.FIRST, 0));
    expect(paths.find(w.rig.dev, PASID)).not.toBeNull();
    w.rig.submit(desc.pasidCache(1, DID, PASID));
    expect(paths.find(w.rig.dev, PASID)).toBeNull();
  });
});
