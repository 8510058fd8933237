import { describe, expect, it } from "vitest";
import { SparseMemory } from "@vsva/pgtable";
import { GCMD_QIE, GCMD_SRTP, GCMD_TE, MiB, R, VtdRig } from "./testing/rig.js";
import { VtdUnit } from "./vtd-unit.js";

const bit = (v: bigint, n: number): number => Number((v >> BigInt(n)) & 1n);
const bits = (v: bigint, hi: number, lo: number): number => Number((v >> BigInt(lo)) & ((1n << BigInt(hi - lo + 1)) - 1n));

describe("VT-d capability registers", () => {
  it("report the default scalable-mode unit: 20-bit PASIDs, 5-level FL, nesting, PRS, DT, no caching mode, no VCS", () => {
    const { unit } = new VtdRig();
    const rig = new VtdRig();
    const cap = rig.reg64(R.CAP);
    const ecap = rig.reg64(R.ECAP);
    expect(unit.mmioRead32(R.VER)).toBe(0x30);
    expect(bits(cap, 2, 0)).toBe(6); // ND: 64K domains
    expect(bit(cap, 7)).toBe(0); // CM
    expect(bits(cap, 12, 8)).toBe(0b0110); // SAGAW 39 and 48
    expect(bits(cap, 21, 16)).toBe(47); // MGAW - 1
    expect(bits(cap, 37, 34)).toBe(0b11); // SLLPS 2M + 1G
    expect(bits(cap, 47, 40)).toBe(7); // NFR - 1
    expect(bit(cap, 56)).toBe(1); // FL1GP
    expect(bit(cap, 60)).toBe(1); // FL5LP
    expect(bit(ecap, 1)).toBe(1); // QI
    expect(bit(ecap, 2)).toBe(1); // DT
    expect(bit(ecap, 6)).toBe(1); // PT
    expect(bit(ecap, 26)).toBe(1); // NEST
    expect(bit(ecap, 29)).toBe(1); // PRS
    expect(bit(ecap, 31)).toBe(1); // SRS
    expect(bits(ecap, 39, 35)).toBe(19); // PSS: 20-bit PASIDs
    expect(bit(ecap, 40)).toBe(1); // PASID
    expect(bit(ecap, 43)).toBe(1); // SMTS
    expect(bit(ecap, 44)).toBe(0); // VCS
    expect(bit(ecap, 46)).toBe(1); // SLTS
    expect(bit(ecap, 47)).toBe(1); // FLTS
  });

  it("follow the constructor options (caching mode, 8-bit PASIDs, 57-bit SAGAW, no FL 5-level, VCS)", () => {
    const rig = new VtdRig({
      cachingMode: true, pasidBits: 8, mgaw: 57, firstLevel5: false, nesting: false, pageRequests: false,
      virtualCommand: true,
    });
    const cap = rig.reg64(R.CAP);
    const ecap = rig.reg64(R.ECAP);
    expect(bit(cap, 7)).toBe(1);
    expect(bits(cap, 12, 8)).toBe(0b1110);
    expect(bits(cap, 21, 16)).toBe(56);
    expect(bit(cap, 60)).toBe(0);
    expect(bits(ecap, 39, 35)).toBe(7);
    expect(bit(ecap, 26)).toBe(0);
    expect(bit(ecap, 29)).toBe(0);
    expect(bit(ecap, 44)).toBe(1);
  });

  it("refuse impossible configurations with EINVAL", () => {
    const mem = new SparseMemory({ regions: [{ base: 0, size: MiB }] });
    expect(() => new VtdUnit({ mem, pasidBits: 21 })).toThrow(/EINVAL.*PASID width/);
    expect(() => new VtdUnit({ mem, nesting: true, secondLevel: false })).toThrow(/EINVAL.*nesting/);
    expect(() => new VtdUnit({ mem, faultRecords: 0 })).toThrow(/EINVAL/);
    expect(() => new VtdUnit({ mem, caches: { iotlb: 0 } })).toThrow(/EINVAL.*iotlb/);
  });

  it("are read-only: writes to CAP, ECAP and VER are ignored", () => {
    const rig = new VtdRig();
    const cap = rig.reg64(R.CAP);
    rig.setReg64(R.CAP, 0n);
    rig.unit.mmioWrite32(R.VER, 0);
    expect(rig.reg64(R.CAP)).toBe(cap);
    expect(rig.unit.mmioRead32(R.VER)).toBe(0x30);
  });
});

describe("VT-d register access semantics", () => {
  it("GCMD is write-only and reads 0; GSTS reflects the commands", () => {
    const rig = new VtdRig();
    rig.unit.mmioWrite32(R.GCMD, GCMD_TE);
    expect(rig.unit.mmioRead32(R.GCMD)).toBe(0);
    expect(rig.unit.mmioRead32(R.GSTS) >>> 0).toBe(GCMD_TE >>> 0);
  });

  it("SRTP latches RTADDR (with TTM) and sets RTPS; a later RTADDR write changes nothing until the next SRTP", () => {
    const rig = new VtdRig();
    rig.setRootTable(1, 0x10000);
    expect(rig.unit.mmioRead32(R.GSTS) & GCMD_SRTP).toBe(GCMD_SRTP);
    expect(rig.reg64(R.RTADDR)).toBe(0x10000n | (1n << 10n));
    // RTADDR bits 9:0 are reserved: they read back 0.
    rig.setReg64(R.RTADDR, 0x99000n | 0x3ffn);
    expect(rig.reg64(R.RTADDR)).toBe(0x99000n);
  });

  it("holes in the register window read 0 and ignore writes", () => {
    const rig = new VtdRig();
    rig.unit.mmioWrite32(0x300, 0xffffffff);
    expect(rig.unit.mmioRead32(0x300)).toBe(0);
    expect(rig.unit.mmioRead32(0x2000)).toBe(0);
  });

  it("64-bit registers keep bits above 2^53 exactly when written as {lo, hi}", () => {
    const rig = new VtdRig();
    const v = 0xfedc_ba98_7654_3000n | (1n << 11n) | 1n; // IQA with DW and QS=1
    rig.setReg64(R.IQA, v);
    expect(rig.reg64(R.IQA)).toBe(v);
    // and 32-bit halves reach the same register
    rig.unit.mmioWrite32(R.IQA + 4, 0x1234_5678);
    expect(rig.reg64(R.IQA)).toBe(0x1234_5678_7654_3000n | (1n << 11n) | 1n);
  });

  it("FECTL and IECTL come out of reset with IM set (QEMU's intel_iommu.c register model)", () => {
    const rig = new VtdRig();
    expect(rig.unit.mmioRead32(R.FECTL) >>> 0).toBe(0x8000_0000);
    expect(rig.unit.mmioRead32(R.IECTL) >>> 0).toBe(0x8000_0000);
  });

  it("enabling QI sets QIES; disabling it clears QIES and resets IQH to 0", () => {
    const rig = new VtdRig();
    rig.setRootTable();
    rig.enableQi();
    expect(rig.unit.mmioRead32(R.GSTS) & GCMD_QIE).toBe(GCMD_QIE);
    rig.submit([5n, 0n]); // a wait descriptor with no flags: consumed at once
    expect(rig.reg64(R.IQH)).toBe(32n);
    rig.gcmd(GCMD_QIE, false);
    expect(rig.unit.mmioRead32(R.GSTS) & GCMD_QIE).toBe(0);
    expect(rig.reg64(R.IQH)).toBe(0n);
  });

  it("the virtual command registers are inert on a host unit (no backend)", () => {
    const rig = new VtdRig();
    rig.setReg64(R.VCMD, 1n);
    expect(rig.reg64(R.VCCAP)).toBe(0n);
    expect(rig.reg64(R.VCRSP)).toBe(0n);
    expect(rig.reg64(R.VCMD)).toBe(0n);
  });
});
