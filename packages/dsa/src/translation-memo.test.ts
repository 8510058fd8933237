import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { KernelError } from "@vsva/kernel";
import { decodeCompletion, encodeDescriptor } from "./descriptor.js";
import { DSA_BAR0_SIZE, DSA_COMPLETION_SIZE, DescFlag, DsaOpcode, DsaReg, DsaStatus } from "./regs.js";
import { DSA_RIG_MEM_SIZE, bringUp, makeDsaRig, type DsaRig } from "./testing/index.js";

/**
 * The engine's translation memo (handles on device-TLB entries, re-used while
 * the device TLB's generation holds) and the express path built on it (a
 * MEMMOVE whose pages the handles translate, run in one pass) must be
 * invisible: the same workload run with both, with the memo alone and with
 * neither gives the same device-TLB counters, contents and replacement order,
 * the same ATS translation requests and page requests, the same device state
 * and the same memory.
 */
const PAGE = 0x1000;
/** Pages the workload touches: more than the 64-entry device TLB holds, so entries are evicted too. */
const PAGES = 96;
const PASIDS = [1, 2] as const;
/** A 2 MiB mapping for PASID 2 at this address (one device-TLB entry covering many pages). */
const HUGE_VA = 0x4000_0000;
const HUGE_PA = 0x80_0000;
const PA_BASE = 0x10_0000;

const pageArb = fc.integer({ min: 0, max: PAGES - 1 });
const offArb = fc.constantFrom(0, 8, 64, 0x800, 0xfe0);
const addrArb = fc.oneof(
  { weight: 6, arbitrary: fc.tuple(pageArb, offArb).map(([p, o]) => p * PAGE + o) },
  { weight: 1, arbitrary: fc.tuple(fc.integer({ min: 0, max: 511 }), offArb).map(([p, o]) => HUGE_VA + p * PAGE + o) },
);

const submitArb = fc.record({
  kind: fc.constant("submit" as const),
  shared: fc.boolean(),
  pasid: fc.constantFrom(...PASIDS),
  opcode: fc.constantFrom(DsaOpcode.MEMMOVE, DsaOpcode.MEMMOVE, DsaOpcode.MEMFILL, DsaOpcode.COMPARE, DsaOpcode.NOOP),
  bof: fc.boolean(),
  src: addrArb,
  dst: addrArb,
  compl: fc.tuple(pageArb, fc.integer({ min: 0, max: 127 })).map(([p, k]) => p * PAGE + 32 * k),
  size: fc.oneof(fc.integer({ min: 1, max: 64 }), fc.integer({ min: 1, max: 3 * PAGE })),
  repeat: fc.integer({ min: 1, max: 4 }),
});

const actionArb = fc.oneof(
  { weight: 8, arbitrary: submitArb },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("unmap" as const), pasid: fc.constantFrom(...PASIDS), page: pageArb }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("map" as const), pasid: fc.constantFrom(...PASIDS), page: pageArb, write: fc.boolean(), privOnly: fc.boolean() }) },
  // A translation to host memory that is not there: the copy aborts (TRANSLATION_FAIL) after the page translated.
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("hole" as const), pasid: fc.constantFrom(...PASIDS), page: pageArb }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("invalidate" as const),
      pasid: fc.constantFrom(...PASIDS),
      global: fc.boolean(),
      page: pageArb,
      pages: fc.constantFrom(1, 4, PAGES),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("respond" as const), code: fc.constantFrom("success" as const, "invalid" as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("flr" as const) }) },
  // Software turning Bus Master Enable or ATS Enable off and on again in config space (the express path reads both bits in place).
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("config" as const), bit: fc.constantFrom("busMaster" as const, "ats" as const), on: fc.boolean() }) },
);

type Action = typeof actionArb extends fc.Arbitrary<infer T> ? T : never;

/** The three engines compared: memo and express path (the default), the memo alone, neither. */
type Engine = "express" | "memo" | "plain";
const ENGINES: readonly Engine[] = ["express", "memo", "plain"];

function rig(engine: Engine | boolean): DsaRig {
  const e = engine === true ? "express" : engine === false ? "plain" : engine;
  const r = makeDsaRig({ translationMemo: e !== "plain", expressPath: e === "express" });
  for (const pasid of PASIDS) {
    for (let p = 0; p < PAGES; p++) if ((p * 7 + pasid) % 11 !== 0) r.iommu.map(pasid, p * PAGE, { pa: PA_BASE + p * PAGE, write: (p + pasid) % 9 !== 0 });
  }
  r.iommu.map(2, HUGE_VA, { pa: HUGE_PA, size: 2 << 20 });
  r.mem.writeBytes(PA_BASE, Uint8Array.from({ length: PAGES * PAGE }, (_, i) => (i * 13 + 5) & 0xff));
  bringUp(r.dev, [
    { mode: "dedicated", size: 8, pasid: 1, bof: true },
    { mode: "shared", size: 8, bof: true },
  ]);
  return r;
}

function play(r: DsaRig, a: Action): void {
  switch (a.kind) {
    case "submit": {
      const desc = encodeDescriptor({
        opcode: a.opcode,
        flags: DescFlag.CRAV | DescFlag.RCR | (a.bof ? DescFlag.BOF : 0),
        pasid: a.pasid,
        completionAddr: a.compl,
        ...(a.opcode === DsaOpcode.MEMFILL ? { pattern: 0x0123_4567_89ab_cdefn } : { src: a.src }),
        dst: a.dst,
        size: a.size,
      });
      for (let i = 0; i < a.repeat; i++) {
        if (a.shared) r.dev.enqcmd(1, desc);
        else r.dev.movdir64b(0, desc);
      }
      return;
    }
    case "unmap":
      r.iommu.unmap(a.pasid, a.page * PAGE);
      return;
    case "map":
      r.iommu.map(a.pasid, a.page * PAGE, { pa: PA_BASE + a.page * PAGE, write: a.write, privOnly: a.privOnly });
      return;
    case "hole":
      r.iommu.map(a.pasid, a.page * PAGE, { pa: DSA_RIG_MEM_SIZE + a.page * PAGE });
      return;
    case "invalidate":
      r.iommu.invalidate(r.dev.ep.sid, a.global ? { global: true, addr: a.page * PAGE, size: a.pages * PAGE } : { pasid: a.pasid, addr: a.page * PAGE, size: a.pages * PAGE });
      return;
    case "respond": {
      const req = r.iommu.pendingPageRequests[0];
      if (req !== undefined) {
        // A success response after mapping the page, as a fault handler would.
        if (a.code === "success") r.iommu.map(req.pasid, req.addr - (req.addr % PAGE), { pa: PA_BASE + (Math.floor(req.addr / PAGE) % PAGES) * PAGE });
        r.iommu.respond(req, a.code);
      }
      return;
    }
    case "flr":
      r.dev.ep.functionLevelReset();
      return;
    case "config": {
      const ep = r.dev.ep;
      if (a.bit === "busMaster") {
        // PCI Command (offset 4, 16 bits), Bus Master Enable bit 2: a 16-bit write leaves the Status register's RW1C bits alone.
        const cmd = ep.configRead(4, 2);
        ep.configWrite(4, 2, a.on ? cmd | 4 : cmd & ~4);
        return;
      }
      const ats = ep.config.ats;
      if (ats === undefined) return;
      const { word, mask } = ats.layout.bit("ENABLE");
      const at = ats.offset + 4 * word;
      const v = ep.configRead(at, 4);
      ep.configWrite(at, 4, a.on ? v | mask : v & ~mask);
      return;
    }
  }
}

/** Everything the memo could make differ: device-TLB counters, entries in recency order, ATS traffic, page requests, device counters, registers, memory. */
function observe(r: DsaRig): unknown {
  const tlb = r.dev.ep.deviceTlb;
  const mem = new Uint8Array(PAGES * PAGE);
  r.mem.readBytes(PA_BASE, mem);
  const regs: number[] = [];
  for (let off = 0; off < DSA_BAR0_SIZE; off += 4) regs.push(r.dev.mmioRead32(off));
  return {
    tlbStats: { ...tlb.stats },
    tlbEntries: [...tlb.entries()],
    ats: r.iommu.translations.map((t) => ({ ...t })),
    pageRequests: r.iommu.allPageRequests.map((p) => ({ ...p })),
    devStats: { ...r.dev.stats },
    memStats: { ...r.mem.stats },
    regs,
    swerr: r.dev.mmioRead64(DsaReg.SWERR),
    // A digest: a deep comparison of 384 KiB element by element costs seconds.
    mem: createHash("sha256").update(mem).digest("hex"),
  };
}

describe("translation memo", () => {
  it("changes nothing observable: the same workload with memo and express path, the memo alone, and neither gives identical device-TLB stats, contents and order, ATS traffic and memory", () => {
    fc.assert(
      fc.property(fc.array(actionArb, { minLength: 1, maxLength: 60 }), (actions) => {
        const rigs = ENGINES.map(rig);
        const [express, ...others] = rigs;
        if (express === undefined) throw new Error("no rig");
        for (const a of actions) {
          for (const r of rigs) {
            try {
              play(r, a);
            } catch (e) {
              if (!(e instanceof KernelError)) throw e;
            }
          }
          for (const r of others) expect(r.dev.ep.deviceTlb.stats).toEqual(express.dev.ep.deviceTlb.stats);
        }
        // observe() reads memory, which counts: each rig is observed once.
        const want = observe(express);
        for (const r of others) expect(observe(r)).toEqual(want);
      }),
      { numRuns: 40 },
    );
  });

  it("stops where the engine stops when software turns Bus Master Enable or ATS Enable off, and resumes with them", () => {
    const memmove: Action = { kind: "submit", shared: false, pasid: 1, opcode: DsaOpcode.MEMMOVE, bof: false, src: 4 * PAGE, dst: 6 * PAGE + 8, compl: 10 * PAGE, size: 0x1800, repeat: 2 };
    const script: Action[] = [
      memmove, // warms the device TLB and the memo: the second submission is an express one
      { kind: "config", bit: "busMaster", on: false },
      memmove,
      { kind: "config", bit: "busMaster", on: true },
      memmove,
      { kind: "config", bit: "ats", on: false },
      memmove,
      { kind: "config", bit: "ats", on: true },
      memmove,
    ];
    const rigs = ENGINES.map(rig);
    const records: number[][] = rigs.map(() => []);
    rigs.forEach((r, i) => {
      for (const a of script) {
        play(r, a);
        if (a.kind !== "submit") continue;
        const rec = new Uint8Array(DSA_COMPLETION_SIZE);
        r.mem.readBytes(PA_BASE + 10 * PAGE, rec);
        records[i]?.push(decodeCompletion(rec).status);
        r.mem.writeBytes(PA_BASE + 10 * PAGE, new Uint8Array(DSA_COMPLETION_SIZE));
      }
    });
    // With Bus Master off nothing is translated, so not even the record is written; with ATS off the
    // device asks the IOMMU to translate every access (no device-TLB hits, no express path).
    expect(records[0]).toEqual([DsaStatus.SUCCESS, 0, DsaStatus.SUCCESS, DsaStatus.SUCCESS, DsaStatus.SUCCESS]);
    expect(rigs[0]?.dev.mmioRead64(DsaReg.SWERR)).not.toBe(0n); // the refused descriptor's error
    const [express, ...others] = rigs.map(observe);
    for (const o of others) expect(o).toEqual(express);
  });

  it("serves repeated hits from the memo with the counts and recency a probe gives", () => {
    const on = rig("express");
    const memoOnly = rig("memo");
    const off = rig("plain");
    const desc = encodeDescriptor({ opcode: DsaOpcode.MEMMOVE, flags: DescFlag.CRAV | DescFlag.RCR, completionAddr: 12 * PAGE, src: 10 * PAGE, dst: 11 * PAGE, size: PAGE });
    const other = encodeDescriptor({ opcode: DsaOpcode.MEMMOVE, flags: DescFlag.CRAV | DescFlag.RCR, completionAddr: 12 * PAGE + 32, src: 15 * PAGE, dst: 16 * PAGE, size: PAGE });
    for (const r of [on, memoOnly, off]) for (let i = 0; i < 5; i++) for (const d of [desc, other]) r.dev.movdir64b(0, d);
    const st = on.dev.ep.deviceTlb.stats;
    // 5 pages filled once; 10 descriptors x 3 translations, of which the first of each page missed.
    expect({ hits: st.hits, misses: st.misses, fills: st.fills }).toEqual({ hits: 25, misses: 5, fills: 5 });
    const want = observe(off);
    expect(observe(on)).toEqual(want);
    expect(observe(memoOnly)).toEqual(want);
  });

  it("hands a MEMMOVE whose copy or record aborts in host memory to the engine, with the engine's status, fault address and SWERR", () => {
    // Page 30 and the record page 31 translate to host memory that is not there. The first
    // submission fills the device TLB the slow way; the
    // third finds every page's handle (the second took them), so the express path starts it and
    // meets the abort after the source and destination translated.
    const run = (engine: Engine): DsaRig => {
      const r = rig(engine);
      r.iommu.map(1, 30 * PAGE, { pa: DSA_RIG_MEM_SIZE + PAGE });
      r.iommu.map(1, 31 * PAGE, { pa: DSA_RIG_MEM_SIZE + 2 * PAGE });
      const copyAborts = encodeDescriptor({ opcode: DsaOpcode.MEMMOVE, flags: DescFlag.CRAV | DescFlag.RCR, completionAddr: 12 * PAGE, src: 29 * PAGE + 0x800, dst: 40 * PAGE, size: PAGE });
      const recordAborts = encodeDescriptor({ opcode: DsaOpcode.MEMMOVE, flags: DescFlag.CRAV | DescFlag.RCR, completionAddr: 31 * PAGE, src: 20 * PAGE, dst: 21 * PAGE, size: 64 });
      for (let i = 0; i < 3; i++) {
        for (const d of [copyAborts, recordAborts]) r.dev.movdir64b(0, d);
        // The driver's error handler: read SWERR, clear VALID and OVERFLOW (RW1C), so the next error is recorded whole.
        if (i < 2) r.dev.mmioWrite32(DsaReg.SWERR, 0b11);
      }
      return r;
    };
    const want = observe(run("plain"));
    const got = run("express");
    // Observed before the record is read below (reads are counted).
    expect(observe(got)).toEqual(want);
    expect(observe(run("memo"))).toEqual(want);
    // The copy failed at the hole: half a page done, the fault at page 30's first byte.
    const rec = new Uint8Array(DSA_COMPLETION_SIZE);
    got.mem.readBytes(PA_BASE + 12 * PAGE, rec);
    expect(decodeCompletion(rec)).toMatchObject({ status: DsaStatus.TRANSLATION_FAIL, bytesCompleted: 0x800, faultAddr: 30 * PAGE });
    // The record page's writes failed every time; SWERR holds the last, the express path's.
    expect(got.dev.stats.swerrs).toBe(3);
    expect(Number(got.dev.mmioRead64(DsaReg.SWERR) >> 8n) & 0xff).toBe(DsaStatus.CRA_XLAT);
  });

  it("drops a handle when the device TLB's generation moves, even while its entry stays cached", () => {
    // A read-only 2 MiB entry is cached and remembered; the IOMMU's mapping then changes to a
    // writable 4 KiB page inside it (without an invalidation), a write hits the 2 MiB entry, is
    // not permitted, and fills the 4 KiB one. Both are cached now, and a probe finds the 4 KiB
    // entry first: the next read must use (and make most recent) that one, not the handle's.
    const page = HUGE_VA + 5 * PAGE;
    const run = (memo: boolean): DsaRig => {
      const r = rig(memo);
      r.iommu.map(2, HUGE_VA, { pa: HUGE_PA, size: 2 << 20, write: false });
      const read = encodeDescriptor({ opcode: DsaOpcode.MEMMOVE, flags: DescFlag.CRAV | DescFlag.RCR, pasid: 2, completionAddr: 12 * PAGE, src: page, dst: 11 * PAGE, size: 64 });
      const write = encodeDescriptor({ opcode: DsaOpcode.MEMMOVE, flags: DescFlag.CRAV | DescFlag.RCR, pasid: 2, completionAddr: 12 * PAGE, src: 10 * PAGE, dst: page, size: 64 });
      r.dev.enqcmd(1, read);
      r.iommu.unmap(2, HUGE_VA);
      r.iommu.map(2, page, { pa: PA_BASE + 20 * PAGE });
      r.dev.enqcmd(1, write);
      r.dev.enqcmd(1, read);
      return r;
    };
    const on = run(true);
    const sizes = [...on.dev.ep.deviceTlb.entries()].map((e) => e.entry.size);
    // Most recent first: the record's page, the 4 KiB entry the last read used, then ...
    expect(sizes.slice(0, 3)).toEqual([PAGE, PAGE, PAGE]);
    expect(sizes).toContain(2 << 20);
    expect(observe(on)).toEqual(observe(run(false)));
  });
});
