import { Errno, asHostPasid, isKernelError } from "@vsva/kernel";
import { errnoOf } from "@vsva/kernel/testing";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { PageResponseLayout, decodePageResponse, encodePageResponse } from "./page-response.js";

/** Little-endian bytes from a hex string written as the struct lies in memory (spaces ignored). */
const hex = (s: string): Uint8Array => Uint8Array.from((s.replace(/\s+/g, "").match(/../g) ?? []).map((b) => parseInt(b, 16)));

describe("struct iommu_page_response (v5.10, 24 bytes)", () => {
  it("has the v5.10 layout: argsz, version, flags, pasid, grpid, code as six u32", () => {
    expect(PageResponseLayout.size).toBe(24);
    expect(["argsz", "version", "flags", "pasid", "grpid", "code"].map((f) => PageResponseLayout.offsetOf(f as never))).toEqual([0, 4, 8, 12, 16, 20]);
  });

  it("decodes the bytes user space writes for IOMMU_PAGE_RESP_FAILURE on PASID 0x12345, group 5", () => {
    // argsz 24, version 1, flags PASID_VALID, pasid 0x12345, grpid 5, code 2.
    const user = hex("18000000 01000000 01000000 45230100 05000000 02000000");
    expect(decodePageResponse(user)).toEqual({ pasid: 0x12345, grpid: 5, code: "failure" });
    expect(encodePageResponse({ pasid: asHostPasid(0x12345), grpid: 5, code: "failure" })).toEqual(user);
  });

  it("a response without PASID: flags 0 and the pasid field 0", () => {
    const user = hex("18000000 01000000 00000000 00000000 1f000000 00000000");
    expect(decodePageResponse(user)).toEqual({ pasid: undefined, grpid: 0x1f, code: "success" });
    expect(encodePageResponse({ pasid: undefined, grpid: 0x1f, code: "success" })).toEqual(user);
  });

  it("ignores bytes past the struct when argsz is larger (min(argsz, sizeof) is copied)", () => {
    const user = hex("20000000 01000000 00000000 00000000 01000000 01000000 ffffffff ffffffff");
    expect(decodePageResponse(user)).toEqual({ pasid: undefined, grpid: 1, code: "invalid" });
  });

  it("refuses with EINVAL what iommu_page_response() refuses, and what the driver could not put on the wire", () => {
    const good = "01000000 01000000 45230100 05000000 02000000";
    expect(errnoOf(() => decodePageResponse(hex(`14000000 ${good} 00000000`)))).toBe(Errno.EINVAL); // argsz 20
    expect(errnoOf(() => decodePageResponse(hex("18000000 02000000 01000000 45230100 05000000 02000000")))).toBe(Errno.EINVAL); // version 2
    expect(errnoOf(() => decodePageResponse(hex("18000000 01000000 03000000 45230100 05000000 02000000")))).toBe(Errno.EINVAL); // unknown flag
    expect(errnoOf(() => decodePageResponse(hex("18000000 01000000 01000000 45230100 05000000 03000000")))).toBe(Errno.EINVAL); // code 3
    expect(errnoOf(() => decodePageResponse(hex("18000000 01000000 01000000 00001000 05000000 00000000")))).toBe(Errno.EINVAL); // PASID 1 << 20
    expect(errnoOf(() => decodePageResponse(hex("18000000 01000000 00000000 45230100 05000000 00000000")))).toBe(Errno.EINVAL); // PASID without flag
  });

  it("faults (EFAULT) when the bytes are shorter than the struct argsz names", () => {
    expect(errnoOf(() => decodePageResponse(hex("18000000 01000000 00000000")))).toBe(Errno.EFAULT);
    expect(errnoOf(() => decodePageResponse(new Uint8Array(2)))).toBe(Errno.EFAULT);
  });

  it("never throws anything but a KernelError on random bytes, and round-trips what it accepts", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 40 }), (bytes) => {
        try {
          const r = decodePageResponse(bytes);
          expect(decodePageResponse(encodePageResponse(r))).toEqual(r);
        } catch (e) {
          expect(isKernelError(e)).toBe(true);
        }
      }),
      { numRuns: 2000 },
    );
  });
});
