import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { addrOfPageField, pageField, signedPageNumber } from "./page-field.js";

describe("52-bit page-number address fields (bits 63:12)", () => {
  it("round-trips every page address of the 64-bit space, lower and upper half", () => {
    fc.assert(
      fc.property(fc.integer({ min: -(2 ** 51), max: 2 ** 51 - 1 }), (pfn) => {
        const field = pageField(pfn * 4096);
        expect(field).toBeGreaterThanOrEqual(0);
        expect(field).toBeLessThan(2 ** 52);
        expect(signedPageNumber(field)).toBe(pfn);
        expect(addrOfPageField(field)).toBe(pfn * 4096);
      }),
    );
  });

  it("keeps the two's-complement bits of an upper-half address", () => {
    expect(pageField(-4096)).toBe(2 ** 52 - 1);
    expect(addrOfPageField(2 ** 52 - 1)).toBe(-4096);
    expect(pageField(0x7fff_ffff_f000)).toBe(0x7_ffff_ffff);
  });

  it("drops the offset in the page, and turns a non-number into 0 instead of throwing", () => {
    expect(pageField(0x1fff)).toBe(1);
    expect(pageField(Number.NaN)).toBe(0);
    expect(pageField(Number.POSITIVE_INFINITY)).toBe(0);
  });
});
