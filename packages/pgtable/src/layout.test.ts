import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { defineLayout } from "./layout.js";
import { SparseMemory } from "./mem/sparse-memory.js";

// A 128-bit layout shaped like a scalable-mode root entry, with a field that
// straddles two dwords and one that spans into the upper qword.
const Entry = defineLayout("test entry", 128, {
  LP: [0, 0],
  LCTP: [63, 12],
  UP: [64, 64],
  UCTP: [127, 76],
});

describe("defineLayout", () => {
  it("round-trips every field independently", () => {
    fc.assert(
      fc.property(fc.nat({ max: 1 }), fc.nat({ max: 2 ** 52 - 1 }), fc.nat({ max: 1 }), fc.nat({ max: 2 ** 52 - 1 }), (lp, lctp, up, uctp) => {
        const v = Entry.encode({ LP: lp, LCTP: lctp, UP: up, UCTP: uctp });
        expect(Entry.decode(v)).toMatchObject({ LP: lp, LCTP: lctp, UP: up, UCTP: uctp });
      }),
    );
  });

  it("places bits where the declaration says", () => {
    const v = Entry.alloc();
    Entry.setAddr(v, "LCTP", 0x1234_5678_9000);
    expect(v[0]).toBe(0x5678_9000);
    expect(v[1]).toBe(0x1234);
    expect(Entry.getAddr(v, "LCTP")).toBe(0x1234_5678_9000);
  });

  it("takes an address field past bit 63 relative to its own qword", () => {
    const v = Entry.alloc();
    Entry.setAddr(v, "UCTP", 0xabc_def0_1000);
    expect(Entry.get(v, "UCTP")).toBe(0xabc_def0_1);
    expect(Entry.getAddr(v, "UCTP")).toBe(0xabc_def0_1000);
  });

  it("refuses overlapping fields and out-of-range values", () => {
    expect(() => defineLayout("bad", 64, { A: [3, 0], B: [4, 3] })).toThrow(/overlaps/);
    expect(() => Entry.set(Entry.alloc(), "LP", 2)).toThrow(/does not fit/);
    expect(() => Entry.setAddr(Entry.alloc(), "LCTP", 0x1001)).toThrow(/aligned/);
  });

  it("derives the reserved mask from undeclared bits", () => {
    const v = Entry.alloc();
    expect(Entry.hasReservedBits(v)).toBe(false);
    v[0] = 0x2; // bit 1: not declared
    expect(Entry.hasReservedBits(v)).toBe(true);
  });

  it("reads and writes through physical memory, one reference per qword", () => {
    const mem = new SparseMemory({ addrBits: 39, regions: [{ base: 0, size: 0x10000 }] });
    const v = Entry.encode({ LP: 1, LCTP: 0xabcde, UP: 1, UCTP: 0x12345 });
    expect(Entry.write(mem, 0x1000, v)).toBe(true);
    const back = Entry.alloc();
    const before = mem.stats.reads;
    expect(Entry.read(mem, 0x1000, back)).toBe(true);
    expect(mem.stats.reads - before).toBe(2);
    expect(Entry.decode(back)).toEqual(Entry.decode(v));
    expect(Entry.read(mem, 0x20000, back)).toBe(false);
  });
});

it("reads a field that fills a whole dword back unsigned", () => {
  const L = defineLayout("whole", 32, { ALL: [31, 0] });
  const v = L.alloc();
  L.set(v, "ALL", 0x8000_0000);
  expect(L.get(v, "ALL")).toBe(0x8000_0000);
  L.set(v, "ALL", 0xffff_ffff);
  expect(L.get(v, "ALL")).toBe(0xffff_ffff);
});
