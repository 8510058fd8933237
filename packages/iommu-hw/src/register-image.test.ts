import { Errno } from "@vsva/kernel";
import { errnoOf } from "@vsva/kernel/testing";
import { SparseMemory } from "@vsva/pgtable";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { RegOffset } from "./vtd/regs.js";
import { VtdUnit } from "./vtd/vtd-unit.js";
import type { VtdConfig, VtdOptions } from "./vtd/options.js";
import { SmmuReg } from "./smmu/regs.js";
import { SmmuUnit } from "./smmu/smmu-unit.js";
import type { SmmuConfig, SmmuOptions } from "./smmu/options.js";

const mem = (): SparseMemory => new SparseMemory({ addrBits: 46, regions: [{ base: 0, size: 1 << 24 }] });

const capsOf = (u: VtdUnit): { cap: bigint; ecap: bigint } => ({ cap: u.mmioRead64(RegOffset.CAP), ecap: u.mmioRead64(RegOffset.ECAP) });
const idrOffsets = [SmmuReg.IDR0, SmmuReg.IDR1, SmmuReg.IDR2, SmmuReg.IDR3, SmmuReg.IDR4, SmmuReg.IDR5] as const;
const idrsOf = (u: SmmuUnit): [number, number, number, number, number, number] =>
  idrOffsets.map((o) => u.mmioRead32(o)) as [number, number, number, number, number, number];

/** The configuration without what an image cannot carry (the name, and the reported-only fields an image fills in). */
function capability(c: VtdConfig | SmmuConfig): Record<string, unknown> {
  const { name: _name, reportedOnly: _ro, ...rest } = c;
  return rest;
}

type VtdCaps = Omit<VtdOptions, "mem">;
const VTD_VARIANTS: readonly VtdCaps[] = [
  {},
  { mgaw: 57, pasidBits: 16, faultRecords: 4, domainIdBits: 8, cachingMode: true, virtualCommand: true },
  { nesting: false, firstLevel: false, secondLevelWidths: [48], firstLevel5: false, firstLevel1g: false, secondLevel1g: false },
  { queuedInvalidation: false, maxAddressMask: 9, ridPasid: false, faultRecordOffset: 0x220, iotlbOffset: 0xf0, snoopControl: true },
  { deviceTlbThrottling: true, secondLevelAd: true, extendedAccessed: true, executeRequests: false, supervisorRequests: false, passThrough: false },
];

describe("VT-d CAP/ECAP images", () => {
  it("round-trips: options → CAP/ECAP → image → the same capabilities, and the image reads back unchanged", () => {
    for (const v of VTD_VARIANTS) {
      const a = new VtdUnit({ mem: mem(), ...v });
      const image = capsOf(a);
      const b = new VtdUnit({ mem: mem(), ...image });
      expect(capability(b.cfg)).toEqual(capability(a.cfg));
      expect(capsOf(b)).toEqual(image);
      // The named options that made the image agree with it.
      const c = new VtdUnit({ mem: mem(), ...v, ...image });
      expect(capsOf(c)).toEqual(image);
    }
  });

  it("a named option that disagrees with the image is EINVAL naming the register field", () => {
    const image = capsOf(new VtdUnit({ mem: mem() }));
    expect(() => new VtdUnit({ mem: mem(), ...image, pasidBits: 10 })).toThrow(/pasidBits = 10 disagrees with ECAP\.PSS/);
    expect(errnoOf(() => new VtdUnit({ mem: mem(), ...image, secondLevelWidths: [48] }))).toBe(Errno.EINVAL);
    expect(() => new VtdUnit({ mem: mem(), ...image, secondLevelWidths: [48] })).toThrow("CAP.SAGAW");
    // The same widths in another order agree.
    expect(new VtdUnit({ mem: mem(), ...image, secondLevelWidths: [48, 39] }).cfg.sagaw).toBe(0b110);
  });

  it("a field the model does not implement, set in the image, is EINVAL naming it", () => {
    const { cap, ecap } = capsOf(new VtdUnit({ mem: mem() }));
    const cases: readonly [bigint, bigint, string][] = [
      [cap | (1n << 3n), ecap, "CAP.AFL"],
      [cap | (1n << 59n), ecap, "CAP.PI"],
      [cap & ~(1n << 39n), ecap, "CAP.PSI"],
      [cap | (1n << 63n), ecap, "CAP bit 63"],
      [cap | (1n << 8n), ecap, "CAP.SAGAW bit 0"],
      [cap, ecap | (1n << 3n), "ECAP.IR"],
      [cap, ecap | (1n << 33n), "ECAP.NWFS"],
      [cap, ecap & ~(1n << 40n), "ECAP.PASID"],
      [cap, ecap & ~(1n << 43n), "ECAP.SMTS"],
      [cap, ecap & ~(1n << 42n), "ECAP.PDS"],
      [cap, ecap | (1n << 50n), "ECAP bit 50"],
      // QI off with DT/PRS on: the consistency rule names the fields too.
      [cap, ecap & ~(1n << 1n), "ECAP.QI"],
    ];
    for (const [c, e, field] of cases) {
      expect(errnoOf(() => new VtdUnit({ mem: mem(), cap: c, ecap: e }))).toBe(Errno.EINVAL);
      expect(() => new VtdUnit({ mem: mem(), cap: c, ecap: e })).toThrow(field);
    }
  });

  it("reported-only fields read back as the image gave them (ECAP.C, CAP.DWD/DRD, CAP.RWBF)", () => {
    const { cap, ecap } = capsOf(new VtdUnit({ mem: mem() }));
    const image = { cap: cap | (3n << 54n) | (1n << 4n), ecap: ecap & ~1n };
    const u = new VtdUnit({ mem: mem(), ...image });
    expect(capsOf(u)).toEqual(image);
  });

  it("an image must be both registers, as bigints in 64 bits; the register blocks it places must fit", () => {
    const { cap, ecap } = capsOf(new VtdUnit({ mem: mem() }));
    expect(() => new VtdUnit({ mem: mem(), cap })).toThrow("both CAP and ECAP");
    expect(errnoOf(() => new VtdUnit({ mem: mem(), cap: Number(cap) as unknown as bigint, ecap }))).toBe(Errno.EINVAL);
    expect(errnoOf(() => new VtdUnit({ mem: mem(), cap: 1n << 64n, ecap }))).toBe(Errno.EINVAL);
    // FRO = IRO = 0x0f puts the fault-recording registers over the IOTLB block at 0xf0.
    const iro0f = (ecap & ~(0x3ffn << 8n)) | (0xfn << 8n);
    const fro0f = (cap & ~(0x3ffn << 24n)) | (0xfn << 24n);
    expect(() => new VtdUnit({ mem: mem(), cap: fro0f, ecap: iro0f })).toThrow("overlap");
    const fro2 = (cap & ~(0x3ffn << 24n)) | (0x2n << 24n);
    expect(() => new VtdUnit({ mem: mem(), cap: fro2, ecap })).toThrow("CAP.FRO");
  });

  it("QEMU's intel-iommu defaults: the legacy-mode part is refused for ECAP.SMTS; with the scalable-mode and PASID fields it matches", () => {
    // hw/i386/intel_iommu.c vtd_init() (QEMU 3.x) with x-aw-bits=48, caching-mode=on,
    // device-iotlb=on, pt on and intremap off: CAP = FRO(0x220) | NFR(1) | ND(16 bits) | MAMV(18)
    // | PSI | SLLPS(2M, 1G) | SAGAW(39, 48) | MGAW(48) | CM; ECAP = QI | IRO(0xf0) | DT | PT.
    const cap = 0x0012008c222f0686n;
    const legacy = 0xf46n;
    expect(() => new VtdUnit({ mem: mem(), cap, ecap: legacy })).toThrow("ECAP.SMTS");
    // vtd_cap_init() in later QEMU adds SMTS | SRS | SLTS for x-scalable-mode=on, and
    // PASID | PSS (20-bit PASIDs) for x-pasid-mode=on.
    const ecap = legacy | (1n << 43n) | (1n << 31n) | (1n << 46n) | (1n << 40n) | (19n << 35n);
    const u = new VtdUnit({ mem: mem(), cap, ecap });
    expect(capsOf(u)).toEqual({ cap, ecap });
    expect(u.cfg).toMatchObject({
      cachingMode: true,
      sagaw: 0b110,
      mgaw: 48,
      faultRecords: 1,
      faultRecordOffset: 0x220,
      iotlbOffset: 0xf0,
      nd: 6,
      maxAddressMask: 18,
      secondLevel2m: true,
      secondLevel1g: true,
      firstLevel: false,
      firstLevel5: false,
      firstLevel1g: false,
      secondLevel: true,
      nesting: false,
      passThrough: true,
      deviceTlb: true,
      pageRequests: false,
      supervisorRequests: true,
      executeRequests: false,
      pasidBits: 20,
      queuedInvalidation: true,
      ridPasid: false,
    });
    // The IOTLB registers answer where ECAP.IRO says (0xf0, IOTLB at +8): a global invalidation completes.
    u.mmioWrite64(0xf8, (1n << 63n) | (1n << 60n));
    expect(u.mmioRead64(0xf8) >> 63n).toBe(0n);
  });
});

type SmmuCaps = Omit<SmmuOptions, "mem">;
const SMMU_VARIANTS: readonly SmmuCaps[] = [
  {},
  { stage2: false, ssidBits: 8, sidBits: 24, oas: 44, httu: 1, hyp: true, xnx: true, ril: false, had: false },
  { stage1: false, ats: false, pri: false, asid16: false, vmid16: false, msi: false, sev: false, twoLevelStreamTable: false, twoLevelCdTable: false },
  { stall: true, stallMax: 300, cmdqBits: 8, eventqBits: 7, priqBits: 6, httu: 0, oas: 40 },
];

describe("SMMUv3 IDR0–IDR5 images", () => {
  it("round-trips: options → IDR0..5 → image → the same capabilities, and the image reads back unchanged", () => {
    for (const v of SMMU_VARIANTS) {
      const a = new SmmuUnit({ mem: mem(), ...v });
      const idr = idrsOf(a);
      const b = new SmmuUnit({ mem: mem(), idr });
      expect(capability(b.cfg)).toEqual(capability(a.cfg));
      expect(idrsOf(b)).toEqual(idr);
      expect(idrsOf(new SmmuUnit({ mem: mem(), ...v, idr }))).toEqual(idr);
    }
  });

  it("a named option that disagrees with the image is EINVAL naming the field; unsupported fields too", () => {
    const idr = idrsOf(new SmmuUnit({ mem: mem() }));
    expect(() => new SmmuUnit({ mem: mem(), idr, ssidBits: 8 })).toThrow("IDR1.SSIDSIZE");
    const withBit = (i: number, bit: number): [number, number, number, number, number, number] => {
      const c = [...idr] as [number, number, number, number, number, number];
      c[i] = ((c[i] ?? 0) | (1 << bit)) >>> 0;
      return c;
    };
    const cases: readonly [number, number, string][] = [
      [0, 5, "IDR0.BTM"],
      [0, 15, "IDR0.ATOS"],
      [0, 2, "IDR0.TTF"],
      [1, 31, "IDR1.ECMDQ"],
      [2, 0, "IDR2.BA_VATOS"],
      [3, 11, "IDR3.BBML"],
      [5, 5, "IDR5.GRAN16K"],
      [5, 10, "IDR5.VAX"],
      [5, 3, "IDR5 bit 3"],
    ];
    for (const [i, bit, field] of cases) {
      expect(errnoOf(() => new SmmuUnit({ mem: mem(), idr: withBit(i, bit) }))).toBe(Errno.EINVAL);
      expect(() => new SmmuUnit({ mem: mem(), idr: withBit(i, bit) })).toThrow(field);
    }
    // IMPLEMENTATION DEFINED IDR4 and COHACC only report: they read back as given.
    const custom = [...idr] as [number, number, number, number, number, number];
    custom[4] = 0xdeadbeef;
    custom[0] &= ~(1 << 4);
    expect(idrsOf(new SmmuUnit({ mem: mem(), idr: custom }))).toEqual(custom);
    expect(errnoOf(() => new SmmuUnit({ mem: mem(), idr: [0, 0, 0] as unknown as NonNullable<SmmuOptions["idr"]> }))).toBe(Errno.EINVAL);
  });

  it("QEMU's smmuv3 defaults are refused for IDR5.GRAN64K; without the 64 KiB granule they match", () => {
    // hw/arm/smmuv3.c smmuv3_init_regs() (QEMU 5.x): IDR0 = S1P | TTF(AArch64) | COHACC | ASID16
    // | TTENDIAN(LE) | STALL_MODEL(1) | TERM_MODEL | ST_LEVEL(2-level); IDR1 = SIDSIZE(16) |
    // EVENTQS(19) | CMDQS(19); IDR3 = RIL | HAD; IDR5 = GRAN4K | GRAN64K | OAS(44 bits).
    const qemu: [number, number, number, number, number, number] = [0x0d40101a, 0x02730010, 0, 0x404, 0, 0x54];
    expect(() => new SmmuUnit({ mem: mem(), idr: qemu })).toThrow("IDR5.GRAN64K");
    const idr: [number, number, number, number, number, number] = [...qemu.slice(0, 5), 0x14] as [number, number, number, number, number, number];
    const u = new SmmuUnit({ mem: mem(), idr });
    expect(idrsOf(u)).toEqual(idr);
    expect(u.cfg).toMatchObject({
      stage1: true,
      stage2: false,
      twoLevelStreamTable: true,
      twoLevelCdTable: false,
      ssidBits: 0,
      sidBits: 16,
      ats: false,
      pri: false,
      asid16: true,
      vmid16: false,
      oas: 44,
      httu: 0,
      stall: false,
      hyp: false,
      msi: false,
      sev: false,
      had: true,
      ril: true,
      xnx: false,
      cmdqBits: 19,
      eventqBits: 19,
    });
  });
});

/**
 * Random images, from outright junk to a valid image with a few bits flipped:
 * construction either refuses with EINVAL (never another error, never a
 * TypeError) or builds a unit whose registers read back exactly the image.
 */
describe("random register images", () => {
  const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
  const flips = (base: bigint): fc.Arbitrary<bigint> => fc.array(fc.integer({ min: 0, max: 63 }), { maxLength: 3 }).map((bits) => bits.reduce((v, b) => v ^ (1n << BigInt(b)), base));
  const junk = fc.oneof(fc.constant(-1n), fc.constant(1n << 64n), fc.constant(Number.NaN), fc.constant(0x1234), fc.constant("0xff"), fc.constant(undefined));

  it("VT-d: CAP/ECAP images build a unit that reads them back, or are EINVAL", () => {
    const valid = capsOf(new VtdUnit({ mem: mem() }));
    const image = fc.oneof(fc.record({ cap: u64, ecap: u64 }), fc.record({ cap: flips(valid.cap), ecap: flips(valid.ecap) }));
    fc.assert(
      fc.property(image, ({ cap, ecap }) => {
        const errno = errnoOf(() => {
          const u = new VtdUnit({ mem: mem(), cap, ecap });
          expect(capsOf(u)).toEqual({ cap, ecap });
        });
        expect([0, Errno.EINVAL]).toContain(errno);
      }),
      { numRuns: 300 },
    );
    fc.assert(
      fc.property(junk, (v) => {
        expect(errnoOf(() => new VtdUnit({ mem: mem(), cap: v as bigint, ecap: valid.ecap }))).toBe(Errno.EINVAL);
      }),
    );
  });

  it("SMMUv3: IDR0-5 images build a unit that reads them back, or are EINVAL", () => {
    const valid = idrsOf(new SmmuUnit({ mem: mem() }));
    const u32 = fc.integer({ min: 0, max: 0xffff_ffff });
    const flip = (w: number): fc.Arbitrary<number> => fc.array(fc.integer({ min: 0, max: 31 }), { maxLength: 2 }).map((bits) => bits.reduce((v, b) => (v ^ (1 << b)) >>> 0, w));
    const [i0, i1, i2, i3, i4, i5] = valid;
    const flipped = fc.tuple(flip(i0), flip(i1), flip(i2), flip(i3), flip(i4), flip(i5));
    const image = fc.oneof(fc.tuple(u32, u32, u32, u32, u32, u32), flipped);
    fc.assert(
      fc.property(image, (idr) => {
        const errno = errnoOf(() => {
          const u = new SmmuUnit({ mem: mem(), idr });
          expect(idrsOf(u)).toEqual(idr);
        });
        expect([0, Errno.EINVAL]).toContain(errno);
      }),
      { numRuns: 300 },
    );
    expect(errnoOf(() => new SmmuUnit({ mem: mem(), idr: valid.slice(0, 5) as unknown as typeof valid }))).toBe(Errno.EINVAL);
    expect(errnoOf(() => new SmmuUnit({ mem: mem(), idr: [...valid.slice(0, 5), -1] as unknown as typeof valid }))).toBe(Errno.EINVAL);
  });
});
