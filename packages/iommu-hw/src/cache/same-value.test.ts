import { describe, expect, it } from "vitest";
import { sameValue } from "./same-value.js";

describe("sameValue: a cached decoded entry against a fresh decode", () => {
  it("is equal field by field, in any key order, through nested configs", () => {
    expect(sameValue({ did: 3, s1: { ttb: 0x1000, asid: 7 }, bypass: false }, { bypass: false, s1: { asid: 7, ttb: 0x1000 }, did: 3 })).toBe(true);
    expect(sameValue(null, null)).toBe(true);
  });

  it("differs on any changed field, a missing or extra field, or null against an object", () => {
    expect(sameValue({ did: 3, s1: { ttb: 0x1000 } }, { did: 3, s1: { ttb: 0x2000 } })).toBe(false);
    expect(sameValue({ did: 3 }, { did: 3, pgtt: 1 })).toBe(false);
    expect(sameValue({ s1: null }, { s1: { ttb: 0 } })).toBe(false);
    expect(sameValue(0, false)).toBe(false);
  });
});
