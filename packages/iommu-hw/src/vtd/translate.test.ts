import { type SourceId, sourceId } from "@vsva/kernel";
import { describe, expect, it } from "vitest";
import type { DmaRequest, TranslateResult } from "../iommu-port.js";
import { FaultReason } from "./fault-reason.js";
import { CTX_LO, FL_P, FL_RW, FL_US, GiB, MiB, PASID_DIR, R, ROOT, SL_R, VtdRig } from "./testing/rig.js";

const FRCD0 = 0x400;
const PASID = 42;
const DID = 7;

function ok(r: TranslateResult): { pa: number; size: number; write: boolean; privOnly: boolean } {
  if (!r.ok) throw new Error(`expected a translation, got fault 0x${r.reason.toString(16)} (${r.name})`);
  return r;
}

function reason(r: TranslateResult): number {
  if (r.ok) throw new Error(`expected a fault, got pa 0x${r.pa.toString(16)}`);
  return r.reason;
}

/** FRCD i as {fr, sid, pp, pv, fi, f, t1}, decoded from the raw 128 bits (VT-d §10.4 FRCD). */
function frcd(rig: VtdRig, i: number): { f: number; fr: number; sid: number; pp: number; pv: number; t1: number; fi: bigint } {
  const lo = rig.reg64(FRCD0 + 16 * i);
  const hi = rig.reg64(FRCD0 + 16 * i + 8);
  return {
    fi: lo & ~0xfffn,
    sid: Number(hi & 0xffffn),
    pp: Number((hi >> 31n) & 1n),
    fr: Number((hi >> 32n) & 0xffn),
    pv: Number((hi >> 40n) & 0xfffffn),
    t1: Number((hi >> 62n) & 1n),
    f: Number((hi >> 63n) & 1n),
  };
}

function flRig(opts: { flpm?: number } = {}): { rig: VtdRig; root: number } {
  const rig = new VtdRig().bringUp();
  rig.device();
  const root = rig.alloc();
  rig.setPasid(PASID, { pgtt: 1, did: DID, flptr: root, flpm: opts.flpm ?? 0, sre: true });
  return { rig, root };
}

const req = (rig: VtdRig, addr: number, extra: Partial<DmaRequest> = {}): DmaRequest => ({ sid: rig.dev, pasid: PASID, addr, write: false, ...extra });

describe("translation with TE off", () => {
  it("passes every request through untranslated", () => {
    const rig = new VtdRig();
    expect(ok(rig.unit.translate({ sid: rig.dev, addr: 0x1234_5678, write: true })).pa).toBe(0x1234_5678);
  });
});

describe("first-level only (PGTT=1)", () => {
  it("translates through a hand-encoded 4-level table, with the offset inside the page", () => {
    const { rig, root } = flRig();
    rig.flMap(root, 0x7f12_3456_7000, 0x0abc_d000);
    const r = ok(rig.unit.translate(req(rig, 0x7f12_3456_7123, { write: true })));
    expect(r.pa).toBe(0x0abc_d123);
    expect(r.size).toBe(4096);
    expect(r.write).toBe(true);
    expect(r.privOnly).toBe(false);
  });

  it("walks 5 levels when FLPM=1, reaching addresses above 2^47", () => {
    const { rig, root } = flRig({ flpm: 1 });
    const va = 2 ** 52 + 0x5000;
    rig.flMap(root, va, 0x0777_7000, { levels: 5 });
    expect(ok(rig.unit.translate(req(rig, va + 8))).pa).toBe(0x0777_7008);
  });

  it("refuses the same address as non-canonical with 4 levels (0x80)", () => {
    const { rig } = flRig();
    expect(reason(rig.unit.translate(req(rig, 2 ** 52 + 0x5000)))).toBe(FaultReason.NON_CANONICAL);
  });

  it("translates upper-half (sign-extended) addresses for supervisor requests", () => {
    const { rig, root } = flRig();
    const va = -(2 ** 47) + 0x20_0000; // 0xffff_8000_0020_0000
    rig.flMap(root, va, 0x0500_0000, { leaf: FL_P | FL_RW });
    expect(ok(rig.unit.translate(req(rig, va + 4, { priv: true }))).pa).toBe(0x0500_0004);
    expect(reason(rig.unit.translate(req(rig, va + 4)))).toBe(FaultReason.FL_USER_SUPERVISOR);
  });

  it("maps 2 MiB and 1 GiB first-level pages", () => {
    const { rig, root } = flRig();
    rig.flMap(root, 0x4000_0000, 0x0060_0000, { size: 2 * MiB });
    rig.flMap(root, 0x80_0000_0000, 0x4000_0000, { size: GiB });
    const a = ok(rig.unit.translate(req(rig, 0x4012_3456)));
    expect([a.pa, a.size]).toEqual([0x0072_3456, 2 * MiB]);
    const b = ok(rig.unit.translate(req(rig, 0x80_2345_6789)));
    expect([b.pa, b.size]).toEqual([0x6345_6789, GiB]);
  });

  it("treats a 1 GiB first-level page as reserved without CAP.FL1GP (0x72)", () => {
    const rig = new VtdRig({ firstLevel1g: false }).bringUp();
    rig.device();
    const root = rig.alloc();
    rig.setPasid(PASID, { pgtt: 1, did: DID, flptr: root });
    rig.flMap(root, 0x80_0000_0000, 0x4000_0000, { size: GiB });
    expect(reason(rig.unit.translate(req(rig, 0x80_0000_0000)))).toBe(FaultReason.FL_RSVD);
  });

  it("faults a write to a read-only page (0x85), marked recoverable under PRE", () => {
    const { rig, root } = flRig();
    rig.flMap(root, 0x1000, 0x9000, { leaf: FL_P | FL_US });
    const r = rig.unit.translate(req(rig, 0x1000, { write: true }));
    expect(r).toMatchObject({ ok: false, reason: FaultReason.WRITE_DENIED, recoverable: true });
  });

  it("faults a not-present page (0x71) and records PASID, SID, address and read type", () => {
    const { rig } = flRig();
    const r = rig.unit.translate(req(rig, 0x0dea_d000));
    expect(r).toMatchObject({ ok: false, reason: FaultReason.FL_NOT_PRESENT, recoverable: true });
    expect(frcd(rig, 0)).toEqual({ f: 1, fr: 0x71, sid: rig.dev, pp: 1, pv: PASID, t1: 1, fi: 0x0dea_d000n });
  });

  it("is not recoverable when the context entry has PRE=0", () => {
    const { rig } = flRig();
    rig.setContext(rig.dev, { pre: false });
    expect(rig.unit.translate(req(rig, 0x0dea_d000))).toMatchObject({ ok: false, recoverable: false });
  });
});

function slRig(aw = 2): { rig: VtdRig; root: number } {
  return slRigWith({}, aw);
}

function slRigWith(opts: ConstructorParameters<typeof VtdRig>[0], aw = 2): { rig: VtdRig; root: number } {
  const rig = new VtdRig(opts).bringUp();
  rig.device();
  const root = rig.alloc();
  rig.setPasid(0, { pgtt: 2, did: DID, slptr: root, aw });
  return { rig, root };
}

describe("second-level only (PGTT=2) and RID_PASID", () => {
  it("translates a request without PASID through the RID_PASID entry (4-level)", () => {
    const { rig, root } = slRig();
    rig.slMap(root, 0x1_2345_6000, 0x0020_0000);
    expect(ok(rig.unit.translate({ sid: rig.dev, addr: 0x1_2345_6abc, write: true })).pa).toBe(0x0020_0abc);
  });

  it("uses a non-zero RID_PASID from the context entry", () => {
    const rig = new VtdRig().bringUp();
    rig.device({ ridPasid: 5 });
    const root = rig.alloc();
    rig.setPasid(5, { pgtt: 2, did: DID, slptr: root, aw: 2 });
    rig.slMap(root, 0x3000, 0x0044_4000);
    expect(ok(rig.unit.translate({ sid: rig.dev, addr: 0x3010, write: false })).pa).toBe(0x0044_4010);
  });

  it("without ECAP.RPS a non-zero RID_PASID is a reserved context-entry field; zero still works", () => {
    const rig = new VtdRig({ ridPasid: false }).bringUp();
    rig.device({ ridPasid: 5 });
    const root = rig.alloc();
    rig.setPasid(5, { pgtt: 2, did: DID, slptr: root, aw: 2 });
    rig.slMap(root, 0x3000, 0x0044_4000);
    expect(reason(rig.unit.translate({ sid: rig.dev, addr: 0x3010, write: false }))).toBe(FaultReason.CONTEXT_ENTRY_RSVD);
    const { rig: zero, root: r0 } = slRigWith({ ridPasid: false });
    zero.slMap(r0, 0x3000, 0x0044_4000);
    expect(ok(zero.unit.translate({ sid: zero.dev, addr: 0x3010, write: false })).pa).toBe(0x0044_4010);
  });

  it("walks 3 levels for AW=1 and refuses input beyond 39 bits", () => {
    const { rig, root } = slRig(1);
    rig.slMap(root, 0x40_0000_0000 - 0x1000, 0x0050_0000, { levels: 3 });
    expect(ok(rig.unit.translate({ sid: rig.dev, addr: 0x3f_ffff_f000, write: false })).pa).toBe(0x0050_0000);
    expect(reason(rig.unit.translate({ sid: rig.dev, addr: 0x80_0000_0000, write: false }))).toBe(FaultReason.ADDR_BEYOND_HAW);
  });

  it("maps 2 MiB and 1 GiB second-level pages", () => {
    const { rig, root } = slRig();
    rig.slMap(root, 0x20_0000, 0x0080_0000, { size: 2 * MiB });
    rig.slMap(root, 0x40_0000_0000, 0x8000_0000, { size: GiB });
    expect(ok(rig.unit.translate({ sid: rig.dev, addr: 0x2f_ffff, write: false })).pa).toBe(0x008f_ffff);
    expect(ok(rig.unit.translate({ sid: rig.dev, addr: 0x40_1234_5678, write: false })).pa).toBe(0x9234_5678);
  });

  it("faults a second-level hole as an SL permission error (0x79) and a write to a read-only page as 0x85", () => {
    const { rig, root } = slRig();
    rig.slMap(root, 0x5000, 0x6000, { leaf: SL_R });
    expect(reason(rig.unit.translate({ sid: rig.dev, addr: 0x9000, write: false }))).toBe(FaultReason.SL_PERMISSION);
    expect(reason(rig.unit.translate({ sid: rig.dev, addr: 0x5000, write: true }))).toBe(FaultReason.WRITE_DENIED);
  });
});

describe("nested (PGTT=3)", () => {
  /** Guest tables at guest-physical addresses, every one translated by the second level. */
  function nestedRig(): { rig: VtdRig; slRoot: number; gpaOf: (hpa: number) => number } {
    const rig = new VtdRig().bringUp();
    rig.device();
    const slRoot = rig.alloc();
    // Guest RAM: GPA g is HPA g + 0x0800_0000, mapped page by page as the guest allocates.
    const GUEST_OFFSET = 0x0800_0000;
    const flRootHpa = GUEST_OFFSET + 0x1000;
    const gpaOf = (hpa: number): number => hpa - GUEST_OFFSET;
    rig.setPasid(PASID, { pgtt: 3, did: DID, slptr: slRoot, aw: 2, flptr: gpaOf(flRootHpa), sre: true });
    return { rig, slRoot, gpaOf };
  }

  it("translates every first-level table address and the output through the second level", () => {
    const { rig, slRoot, gpaOf } = nestedRig();
    const G = 0x0800_0000;
    // Guest page tables written at host addresses G + gpa, pointing at GPAs.
    const gTables = [0x1000, 0x2000, 0x3000, 0x4000];
    const va = 0x7000_0000_1000;
    const v = BigInt(va);
    const idx = (l: number): number => Number((v >> BigInt(12 + 9 * (l - 1))) & 511n);
    for (let l = 4; l > 1; l--) {
      const t = gTables[4 - l] ?? 0;
      const next = gTables[5 - l] ?? 0;
      rig.w64(G + t + 8 * idx(l), BigInt(next) | FL_P | FL_RW | FL_US);
    }
    rig.w64(G + 0x4000 + 8 * idx(1), 0x9000n | FL_P | FL_RW | FL_US);
    for (const t of [...gTables, 0x9000]) rig.slMap(slRoot, t, G + t);
    expect(gpaOf(G + 0x1000)).toBe(0x1000);
    const r = ok(rig.unit.translate(req(rig, va + 0x44, { write: true })));
    expect(r.pa).toBe(G + 0x9044);
    // A cold nested 4/4 walk: 5 second-level walks of 4 entries, plus 4 first-level entries.
    expect(rig.unit.debug.lastWalk.reads).toBeLessThanOrEqual(24);
  });

  it("reports the nested-group reasons when the second level hides a first-level table (0x75 root, 0x76 lower)", () => {
    const { rig, slRoot } = nestedRig();
    const G = 0x0800_0000;
    expect(reason(rig.unit.translate(req(rig, 0x1000)))).toBe(FaultReason.NESTED_FL_ROOT_SL_READ);
    rig.slMap(slRoot, 0x1000, G + 0x1000);
    rig.w64(G + 0x1000, 0x2000n | FL_P | FL_RW | FL_US); // PML4[0] -> GPA 0x2000, not mapped in SL
    expect(reason(rig.unit.translate(req(rig, 0x1000)))).toBe(FaultReason.NESTED_FL_ENTRY_SL_READ);
  });
});

describe("pass-through (PGTT=4)", () => {
  it("returns the input address, bounded by the host address width (0x83 beyond)", () => {
    const rig = new VtdRig().bringUp();
    rig.device();
    rig.setPasid(0, { pgtt: 4, did: 1 });
    expect(ok(rig.unit.translate({ sid: rig.dev, addr: 0x1234_5678, write: true })).pa).toBe(0x1234_5678);
    expect(reason(rig.unit.translate({ sid: rig.dev, addr: 2 ** 46, write: true }))).toBe(FaultReason.ADDR_BEYOND_HAW);
  });
});

describe("structure faults (scalable-mode reasons of VT-d spec appendix A)", () => {
  interface Case {
    name: string;
    code: number;
    setup: (rig: VtdRig) => void;
    request?: (rig: VtdRig) => DmaRequest;
  }
  const base = (rig: VtdRig): void => {
    rig.device();
    rig.setPasid(PASID, { pgtt: 1, did: DID, flptr: rig.alloc() });
  };
  const cases: Case[] = [
    { name: "root table in no memory", code: 0x38, setup: (rig) => rig.setRootTable(1, 0x3000_0000_0000) },
    { name: "root entry not present", code: 0x39, setup: (rig) => rig.setRoot(0, null, null) },
    { name: "root entry reserved bit", code: 0x3a, setup: (rig) => { base(rig); rig.w64(ROOT, BigInt(CTX_LO) | 1n | 0x10n); } },
    { name: "context table in no memory", code: 0x40, setup: (rig) => rig.setRoot(0, 0x3000_0000_0000) },
    { name: "context entry not present", code: 0x41, setup: (rig) => { base(rig); rig.setContext(rig.dev, { present: false }); } },
    { name: "context entry reserved bit", code: 0x42, setup: (rig) => { base(rig); rig.w64(CTX_LO + (rig.dev & 0x7f) * 32 + 16, 1n); } },
    { name: "DTE clear for a translation request", code: 0x44, setup: (rig) => { base(rig); rig.setContext(rig.dev, { dte: false }); }, request: (rig) => req(rig, 0x1000, { ats: true }) },
    { name: "PASIDE clear for a request with PASID", code: 0x45, setup: (rig) => { base(rig); rig.setContext(rig.dev, { paside: false }); } },
    { name: "PASID beyond the directory (PDTS)", code: 0x46, setup: (rig) => { base(rig); rig.setContext(rig.dev, { pdts: 0 }); }, request: (rig) => req(rig, 0x1000, { pasid: 8192 }) },
    { name: "PASID directory entry not present", code: 0x51, setup: base, request: (rig) => req(rig, 0x1000, { pasid: 64 * 9 }) },
    { name: "PASID directory entry reserved bit", code: 0x52, setup: (rig) => { base(rig); rig.w64(PASID_DIR, rig.r64(PASID_DIR) | 0x100n); } },
    { name: "PASID entry not present", code: 0x59, setup: base, request: (rig) => req(rig, 0x1000, { pasid: PASID + 1 }) },
    { name: "PASID entry reserved bit", code: 0x5a, setup: (rig) => { rig.device(); const pa = rig.setPasid(PASID, { pgtt: 1, did: DID, flptr: rig.alloc() }); rig.w64(pa + 40, 1n); } },
    { name: "PASID entry with reserved PGTT 5", code: 0x5b, setup: (rig) => { rig.device(); rig.setPasid(PASID, { pgtt: 5, did: DID }); } },
    { name: "PASID entry AW not in SAGAW", code: 0x5b, setup: (rig) => { rig.device(); rig.setPasid(PASID, { pgtt: 2, did: DID, aw: 3, slptr: rig.alloc() }); } },
    { name: "SRE clear for a supervisor request", code: 0x5d, setup: base, request: (rig) => req(rig, 0x1000, { priv: true }) },
    { name: "FLPTPTR in no memory", code: 0x73, setup: (rig) => { rig.device(); rig.setPasid(PASID, { pgtt: 1, did: DID, flptr: 0x1000_0000_0000 }); } },
  ];

  for (const c of cases) {
    it(`${c.name}: 0x${c.code.toString(16)}, recorded in FRCD`, () => {
      const rig = new VtdRig().bringUp();
      c.setup(rig);
      const r = rig.unit.translate(c.request?.(rig) ?? req(rig, 0x1000));
      expect(reason(r)).toBe(c.code);
      expect(frcd(rig, 0)).toMatchObject({ f: 1, fr: c.code, sid: rig.dev });
    });
  }

  it("a legacy TTM gives 0x31 (only scalable mode is modelled)", () => {
    const rig = new VtdRig();
    rig.setRootTable(0);
    rig.enableTranslation();
    expect(reason(rig.unit.translate(req(rig, 0)))).toBe(FaultReason.RTADDR_INV_TTM);
  });

  it("FPD in the context entry suppresses recording, even with P=0", () => {
    const rig = new VtdRig().bringUp();
    rig.device({ present: false, fpd: true });
    expect(reason(rig.unit.translate(req(rig, 0x1000)))).toBe(0x41);
    expect(frcd(rig, 0).f).toBe(0);
    expect(rig.unit.mmioRead32(R.FSTS) & 2).toBe(0);
  });

  it("FPD in the PASID-table entry suppresses recording of its walk faults", () => {
    const rig = new VtdRig().bringUp();
    rig.device();
    rig.setPasid(PASID, { pgtt: 1, did: DID, flptr: rig.alloc(), fpd: true });
    expect(reason(rig.unit.translate(req(rig, 0x1000)))).toBe(FaultReason.FL_NOT_PRESENT);
    expect(frcd(rig, 0).f).toBe(0);
  });

  it("an ATS translation request for a missing page is answered without a fault record", () => {
    const { rig } = flRig();
    expect(rig.unit.translate(req(rig, 0x5000, { ats: true }))).toMatchObject({ ok: false, reason: 0x71, recoverable: true });
    expect(frcd(rig, 0).f).toBe(0);
  });

  it("devices on another bus and in the upper context table are found through their root entry", () => {
    const rig = new VtdRig().bringUp();
    const sid: SourceId = sourceId(3, 0x11, 2); // devfn 0x8a: upper table
    rig.setRoot(3);
    rig.setContext(sid, {});
    rig.setPasid(0, { pgtt: 4, did: 1 });
    expect(ok(rig.unit.translate({ sid, addr: 0x7000, write: false })).pa).toBe(0x7000);
  });
});

describe("walk faults (scalable-mode reasons of VT-d spec appendix A)", () => {
  interface WalkCase {
    name: string;
    code: number;
    build: (rig: VtdRig) => DmaRequest;
    opts?: ConstructorParameters<typeof VtdRig>[0];
  }
  const G = 0x0800_0000;
  const fl = (rig: VtdRig, o: { nxe?: boolean; ere?: boolean } = {}): number => {
    const root = rig.alloc();
    rig.setPasid(PASID, { pgtt: 1, did: DID, flptr: root, sre: true, ...o });
    return root;
  };
  const sl = (rig: VtdRig, aw = 2): number => {
    const root = rig.alloc();
    rig.setPasid(0, { pgtt: 2, did: DID, slptr: root, aw });
    return root;
  };
  /** Nested with the guest's FL root at GPA 0x1000 (host G + 0x1000), mapped by the second level. */
  const nested = (rig: VtdRig, aw = 2): number => {
    const s = rig.alloc();
    rig.setPasid(PASID, { pgtt: 3, did: DID, slptr: s, aw, flptr: 0x1000 });
    rig.slMap(s, 0x1000, G + 0x1000, { levels: aw + 2 });
    return s;
  };
  const cases: WalkCase[] = [
    {
      name: "first-level next-table pointer into no memory", code: 0x70,
      build: (rig) => { const root = fl(rig); rig.w64(root, 0x1000_0000_0000n | FL_P | FL_RW | FL_US); return req(rig, 0x1000); },
    },
    {
      name: "execute request on an XD page with NXE", code: 0x82,
      build: (rig) => { const root = fl(rig, { nxe: true, ere: true }); rig.flMap(root, 0x1000, 0x9000, { leaf: FL_P | FL_RW | FL_US | (1n << 63n) }); return req(rig, 0x1000, { exec: true }); },
    },
    { name: "execute request with ERE=0", code: 0x5c, build: (rig) => { fl(rig); return req(rig, 0x1000, { exec: true }); } },
    {
      name: "second-level next-table pointer into no memory", code: 0x78,
      build: (rig) => { const root = sl(rig); rig.w64(root, 0x1000_0000_0000n | SL_R | 2n); return { sid: rig.dev, addr: 0x1000, write: false }; },
    },
    { name: "SLPTPTR into no memory", code: 0x7b, build: (rig) => { rig.setPasid(0, { pgtt: 2, did: DID, slptr: 0x1000_0000_0000, aw: 2 }); return { sid: rig.dev, addr: 0x1000, write: false }; } },
    {
      name: "second-level reserved bit (PS in a level-4 entry)", code: 0x7a,
      build: (rig) => { const root = sl(rig); rig.w64(root, BigInt(rig.alloc()) | SL_R | 2n | 0x80n); return { sid: rig.dev, addr: 0x1000, write: false }; },
    },
    {
      name: "read of a write-only second-level page", code: 0x86,
      build: (rig) => { const root = sl(rig); rig.slMap(root, 0x1000, 0x9000, { leaf: 2n }); return { sid: rig.dev, addr: 0x1000, write: false }; },
    },
    {
      name: "nested: first-level table GPA beyond the second level's width", code: 0x74,
      build: (rig) => { nested(rig, 1); rig.w64(G + 0x1000, BigInt(2 ** 40) | FL_P | FL_RW | FL_US | 0x20n); return req(rig, 0x1000); },
    },
    {
      name: "nested: accessed-flag update into a table the second level keeps read-only", code: 0x77,
      build: (rig) => {
        const s = nested(rig);
        rig.slMap(s, 0x1000, G + 0x1000, { leaf: SL_R }); // FL root readable, not writable
        rig.w64(G + 0x1000, 0x2000n | FL_P | FL_RW | FL_US); // A clear: hardware must set it
        return req(rig, 0x1000);
      },
    },
    {
      name: "RID_PASID beyond the PASID width", code: 0x48, opts: { pasidBits: 8 },
      build: (rig) => { rig.setContext(rig.dev, { ridPasid: 300 }); return { sid: rig.dev, addr: 0x1000, write: false }; },
    },
  ];
  for (const c of cases) {
    it(`${c.name}: 0x${c.code.toString(16)}`, () => {
      const rig = new VtdRig(c.opts).bringUp();
      rig.device();
      const r = rig.unit.translate(c.build(rig));
      expect(reason(r)).toBe(c.code);
      expect(frcd(rig, 0)).toMatchObject({ f: 1, fr: c.code });
    });
  }

  it("a page request under a legacy TTM is refused with 0x32", () => {
    const rig = new VtdRig();
    rig.setRootTable(0);
    rig.enableTranslation();
    const ok2 = rig.unit.pageRequest({ sid: rig.dev, priv: false, exec: false, addr: 0, read: true, write: false, lastInGroup: false, groupIndex: 0 });
    expect(ok2).toBe(false);
    expect(frcd(rig, 0).fr).toBe(0x32);
  });

  it("nested over 2 MiB second-level pages reports the smaller of the two page sizes", () => {
    const rig = new VtdRig().bringUp();
    rig.device();
    const s = rig.alloc();
    rig.setPasid(PASID, { pgtt: 3, did: DID, slptr: s, aw: 2, flptr: 0x1000 });
    rig.slMap(s, 0, G, { size: 2 * MiB }); // guest RAM 0..2 MiB in one second-level page
    rig.w64(G + 0x1000, 0x2000n | FL_P | FL_RW | FL_US);
    rig.w64(G + 0x2000, 0x3000n | FL_P | FL_RW | FL_US);
    rig.w64(G + 0x3000, 0x4000n | FL_P | FL_RW | FL_US);
    rig.w64(G + 0x4000, 0x9000n | FL_P | FL_RW | FL_US);
    const r = ok(rig.unit.translate(req(rig, 0x123)));
    expect([r.pa, r.size]).toEqual([G + 0x9123, 4096]);
  });
});
