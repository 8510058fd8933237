import { Errno, isKernelError } from "@vsva/kernel";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { IOMMU_SVA_GPASID_VAL, PASID_MAX, VtdGpasidFlag } from "./constants.js";
import { type GpasidBindFields, GpasidBindLayout, decodeGpasidBindData, encodeGpasidBindData } from "./gpasid-bind.js";
import { errnoOf } from "@vsva/kernel/testing";

const good: GpasidBindFields = {
  addrWidth: 48,
  flags: BigInt(IOMMU_SVA_GPASID_VAL),
  gpgd: 0x1234_5000n,
  hpasid: 0x40n,
  gpasid: 101n,
  vtd: { flags: BigInt(VtdGpasidFlag.SRE | VtdGpasidFlag.WPE), pat: 0x0706_0406, emt: 6 },
};

describe("iommu_gpasid_bind_data at the boundary", () => {
  it("decodes a well-formed request into typed, branded values", () => {
    const d = decodeGpasidBindData(encodeGpasidBindData(good));
    expect(d).toEqual({
      format: 1,
      addrWidth: 48,
      gpgd: 0x1234_5000n,
      hpasid: 0x40,
      gpasid: 101,
      vtd: { flags: VtdGpasidFlag.SRE | VtdGpasidFlag.WPE, pat: 0x0706_0406, emt: 6 },
    });
  });

  it("leaves gpasid out unless IOMMU_SVA_GPASID_VAL says it is valid", () => {
    const d = decodeGpasidBindData(encodeGpasidBindData({ ...good, flags: 0n, gpasid: 7n }));
    expect(d.gpasid).toBeUndefined();
  });

  it("keeps the declared offsets of the v5.10 layout", () => {
    const off = (f: keyof typeof GpasidBindLayout.fields) => GpasidBindLayout.offsetOf(f);
    expect([off("argsz"), off("version"), off("format"), off("addr_width"), off("flags"), off("gpgd"), off("hpasid"), off("gpasid"), off("padding"), off("vendor")]).toEqual([
      0, 4, 8, 12, 16, 24, 32, 40, 48, 56,
    ]);
    expect(GpasidBindLayout.size).toBe(72);
  });

  const pad = (i: number) => {
    const p = new Uint8Array(8);
    p[i] = 1;
    return p;
  };

  it.each<[string, GpasidBindFields, number]>([
    ["argsz below offsetof(vendor)", { ...good, argsz: 55 }, Errno.EINVAL],
    ["argsz zero", { ...good, argsz: 0 }, Errno.EINVAL],
    ["version 0", { ...good, version: 0 }, Errno.EINVAL],
    ["version 2", { ...good, version: 2 }, Errno.EINVAL],
    ["format 2 (past IOMMU_PASID_FORMAT_LAST)", { ...good, format: 2 }, Errno.EINVAL],
    ["format 0 (no format)", { ...good, format: 0 }, Errno.EINVAL],
    ["flags bit 1", { ...good, flags: 2n }, Errno.EINVAL],
    ["flags bit 32 (the u64 mask bug fixed in v5.10-rc2)", { ...good, flags: 1n << 32n }, Errno.EINVAL],
    ["padding byte 0", { ...good, padding: pad(0) }, Errno.EINVAL],
    ["padding byte 7", { ...good, padding: pad(7) }, Errno.EINVAL],
    ["hpasid = PASID_MAX", { ...good, hpasid: BigInt(PASID_MAX) }, Errno.EINVAL],
    ["hpasid above u32", { ...good, hpasid: 1n << 40n }, Errno.EINVAL],
    ["gpasid = PASID_MAX with GPASID_VAL", { ...good, gpasid: BigInt(PASID_MAX) }, Errno.EINVAL],
    ["VT-d flag bit 7 (IOMMU_SVA_VTD_GPASID_LAST)", { ...good, vtd: { flags: 1n << 7n } }, Errno.EINVAL],
    ["VT-d flag bit 63", { ...good, vtd: { flags: 1n << 63n } }, Errno.EINVAL],
    ["EMT wider than 3 bits", { ...good, vtd: { emt: 8 } }, Errno.EINVAL],
    ["addr_width 39", { ...good, addrWidth: 39 }, Errno.EINVAL],
    ["addr_width 0", { ...good, addrWidth: 0 }, Errno.EINVAL],
  ])("refuses %s", (_what, fields, errno) => {
    expect(errnoOf(() => decodeGpasidBindData(encodeGpasidBindData(fields)))).toBe(errno);
  });

  it("accepts gpasid beyond 20 bits when GPASID_VAL is clear: the field is not read", () => {
    expect(errnoOf(() => decodeGpasidBindData(encodeGpasidBindData({ ...good, flags: 0n, gpasid: 1n << 50n })))).toBe(0);
  });

  it("faults (EFAULT) when the user mapped fewer bytes than it must copy", () => {
    const b = encodeGpasidBindData(good);
    expect(errnoOf(() => decodeGpasidBindData(b.subarray(0, 3)))).toBe(Errno.EFAULT);
    expect(errnoOf(() => decodeGpasidBindData(b.subarray(0, 55)))).toBe(Errno.EFAULT);
    // argsz says 72 but only 60 bytes are mapped: the vendor copy faults.
    expect(errnoOf(() => decodeGpasidBindData(b.subarray(0, 60)))).toBe(Errno.EFAULT);
  });

  it("zero-fills a vendor part the user's shorter argsz leaves out, as min(argsz, sizeof) does", () => {
    const b = encodeGpasidBindData({ ...good, argsz: 56 });
    const d = decodeGpasidBindData(b.subarray(0, 56));
    expect(d.vtd).toEqual({ flags: 0, pat: 0, emt: 0 });
  });

  describe("a larger argsz from a newer header", () => {
    const bigger = (tail: number[]) => {
      const b = new Uint8Array(72 + tail.length);
      b.set(encodeGpasidBindData({ ...good, argsz: 72 + tail.length }));
      b.set(tail, 72);
      return b;
    };
    it("is accepted and its tail ignored under the series' rule", () => {
      expect(errnoOf(() => decodeGpasidBindData(bigger([0, 9, 0])))).toBe(0);
    });
    it("gets E2BIG for a non-zero tail under copy_struct_from_user's rule", () => {
      expect(errnoOf(() => decodeGpasidBindData(bigger([0, 9, 0]), { trailingBytes: "strict" }))).toBe(Errno.E2BIG);
      expect(errnoOf(() => decodeGpasidBindData(bigger([0, 0, 0]), { trailingBytes: "strict" }))).toBe(0);
    });
  });

  it("never throws anything but a KernelError, whatever the bytes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 96 }), fc.boolean(), (bytes, strict) => {
        try {
          const d = decodeGpasidBindData(bytes, { trailingBytes: strict ? "strict" : "ignore" });
          expect(d.hpasid).toBeLessThan(PASID_MAX);
        } catch (e) {
          expect(isKernelError(e)).toBe(true);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it("never throws anything but a KernelError when single fields of a good request are mutated", () => {
    const base = encodeGpasidBindData(good);
    fc.assert(
      fc.property(fc.nat({ max: 71 }), fc.integer({ min: 0, max: 255 }), (at, byte) => {
        const b = base.slice();
        b[at] = byte;
        try {
          decodeGpasidBindData(b);
        } catch (e) {
          expect(isKernelError(e)).toBe(true);
        }
      }),
    );
  });
});
