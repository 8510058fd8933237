import { Errno, KernelError, isKernelError } from "@vsva/kernel";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { NestingFeature, PasidFormat } from "./constants.js";
import { EMPTY_NESTING_INFO, type NestingInfo, NestingInfoLayout, decodeNestingInfo, reportNestingInfo } from "./nesting-info.js";

const vtd: NestingInfo = {
  format: PasidFormat.INTEL_VTD,
  features: NestingFeature.BIND_PGTBL | NestingFeature.CACHE_INVLD,
  addrWidth: 48,
  pasidBits: 20,
  vendor: { kind: "vtd", capReg: 0x00d2_0086_6f0n, ecapReg: 0xf0_0000_0000_8e8n },
};

function userBuf(argsz: number, len = argsz): Uint8Array {
  const b = new Uint8Array(len);
  NestingInfoLayout.set(b, "argsz", argsz);
  return b;
}

describe("iommu_nesting_info", () => {
  it("tells a caller with a short argsz the size it needs, writing nothing else", () => {
    const b = userBuf(8, 64);
    b[20] = 0xee;
    expect(reportNestingInfo(vtd, b)).toBe(64);
    expect(NestingInfoLayout.get(b, "argsz")).toBe(64);
    expect(b[20]).toBe(0xee);
  });

  it("round-trips a VT-d report through the user buffer", () => {
    const b = userBuf(72);
    expect(reportNestingInfo(vtd, b)).toBe(64);
    expect(decodeNestingInfo(b)).toEqual(vtd);
  });

  it("reports SMMU's empty info as the bare 32-byte header with format 0 (seed 004)", () => {
    const b = userBuf(56);
    expect(reportNestingInfo(EMPTY_NESTING_INFO, b)).toBe(32);
    expect(NestingInfoLayout.get(b, "argsz")).toBe(32);
    expect(decodeNestingInfo(b)).toEqual(EMPTY_NESTING_INFO);
  });

  it("faults when the user buffer is shorter than its argsz claims", () => {
    expect(() => reportNestingInfo(vtd, userBuf(64, 40))).toThrow(KernelError);
    expect(() => reportNestingInfo(vtd, new Uint8Array(2))).toThrow(expect.objectContaining({ errno: Errno.EFAULT }) as Error);
  });

  it("refuses, on the VMM side, reserved bits and unknown features", () => {
    const b = userBuf(64);
    reportNestingInfo(vtd, b);
    const flip = (at: number, v: number) => {
      const c = b.slice();
      c[at] = v;
      return c;
    };
    expect(() => decodeNestingInfo(flip(4, 1))).toThrow(expect.objectContaining({ errno: Errno.EINVAL }) as Error);
    expect(() => decodeNestingInfo(flip(12, 0x04))).toThrow(expect.objectContaining({ errno: Errno.EINVAL }) as Error);
    expect(() => decodeNestingInfo(flip(25, 1))).toThrow(expect.objectContaining({ errno: Errno.EINVAL }) as Error);
    expect(() => decodeNestingInfo(flip(36, 1))).toThrow(expect.objectContaining({ errno: Errno.EINVAL }) as Error);
    expect(() => decodeNestingInfo(flip(47, 1))).toThrow(expect.objectContaining({ errno: Errno.EINVAL }) as Error);
    expect(() => decodeNestingInfo(flip(8, 7))).toThrow(expect.objectContaining({ errno: Errno.EINVAL }) as Error);
  });

  it("decodes the 64 bytes the series' tree writes for VT-d: vendor part with padding[12], cap_reg at 16, ecap_reg at 24", () => {
    const hex = (t: string): Uint8Array => Uint8Array.from((t.replace(/\s+/g, "").match(/../g) ?? []).map((b) => parseInt(b, 16)));
    const linux = hex(
      "40000000 00000000 01000000 03000000 3000 1400" + // argsz 64, flags, format VT-d, BIND_PGTBL | CACHE_INVLD, addr_width 48, pasid_bits 20
        "000000000000000000000000" + // padding[12]
        "00000000 000000000000000000000000" + // vtd.flags, vtd.padding[12]
        "f06608200d000000 e808000000000f00", // cap_reg, ecap_reg
    );
    expect(linux.length).toBe(64);
    expect(decodeNestingInfo(linux)).toEqual(vtd);
    const b = userBuf(64);
    reportNestingInfo(vtd, b);
    expect(b).toEqual(linux);
  });

  it("never throws anything but a KernelError when decoding random bytes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 80 }), (bytes) => {
        try {
          decodeNestingInfo(bytes);
        } catch (e) {
          expect(isKernelError(e)).toBe(true);
        }
      }),
      { numRuns: 2000 },
    );
  });
});
