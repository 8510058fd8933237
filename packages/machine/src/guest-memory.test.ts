import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { Errno } from "@vsva/kernel";
import { errnoOf } from "@vsva/kernel/testing";
import { MEM_ABORT, SparseMemory, u64 } from "@vsva/pgtable";
import { GuestMemoryView, MAX_PIN_COUNT } from "./guest-memory.js";

const KiB4 = 4096;
const host = () => new SparseMemory({ addrBits: 46, regions: [{ base: 0, size: 1 << 24 }] });

describe("GuestMemoryView", () => {
  it("has the address width it was given, not one derived from its size", () => {
    const g = new GuestMemoryView({ host: host(), addrBits: 39 });
    g.map(0, 0x40_0000, 4 << 20);
    expect(g.addrBits).toBe(39);
    expect(errnoOf(() => new GuestMemoryView({ host: host(), addrBits: 60 }))).toBe(Errno.EINVAL);
  });

  it("lands guest writes in the scattered host pages behind them", () => {
    const h = host();
    const g = new GuestMemoryView({ host: h, addrBits: 39 });
    g.map(0x0000, 0x9000, KiB4);
    g.map(0x1000, 0x3000, KiB4);
    // An 8-byte write across the guest page boundary splits over two unrelated host pages.
    expect(g.write64(0xffc, 0x4433_2211, 0x8877_6655)).toBe(true);
    expect(h.read32(0x9ffc)).toBe(0x4433_2211);
    expect(h.read32(0x3000)).toBe(0x8877_6655);
    const out = u64();
    expect(g.read64(0xffc, out)).toBe(true);
    expect(out).toEqual({ lo: 0x4433_2211, hi: 0x8877_6655 });
    expect(g.gpaToHpa(0x1004)).toBe(0x3004);
  });

  it("aborts in holes and changes nothing when a range runs into one", () => {
    const h = host();
    const g = new GuestMemoryView({ host: h, addrBits: 39 });
    g.map(0, 0x5000, KiB4);
    expect(g.read32(0x1000)).toBe(MEM_ABORT);
    expect(g.write32(0xffe, 0xffff_ffff)).toBe(false);
    expect(g.writeBytes(0xff0, new Uint8Array(32).fill(7))).toBe(false);
    expect(h.read32(0x5ffc)).toBe(0); // the half inside backed memory was not written
    expect(g.read64(2 ** 39, u64())).toBe(false);
    expect(g.stats.aborts).toBe(4);
    expect(g.isPopulated(0x1000)).toBe(false);
  });

  it("refuses to back a page twice, with a host hole, or misaligned, atomically", () => {
    const g = new GuestMemoryView({ host: host(), addrBits: 39 });
    g.map(0x2000, 0, KiB4);
    expect(errnoOf(() => g.map(0x1000, 0x10000, 2 * KiB4))).toBe(Errno.EEXIST);
    expect(g.gpaToHpa(0x1000)).toBeNull(); // the first page of the refused range stayed a hole
    expect(errnoOf(() => g.map(0x4000, (1 << 24) - KiB4, 2 * KiB4))).toBe(Errno.EFAULT);
    expect(errnoOf(() => g.map(0x4001, 0, KiB4))).toBe(Errno.EINVAL);
    expect(errnoOf(() => g.map(2 ** 39 - KiB4, 0, 2 * KiB4))).toBe(Errno.EINVAL);
    expect(g.mappedPages).toBe(1);
  });

  it("pins by guest page range, returns the host pages, and counts", () => {
    const g = new GuestMemoryView({ host: host(), addrBits: 39 });
    g.map(0, 0x8000, KiB4);
    g.map(0x1000, 0x2000, KiB4);
    expect(g.pin(0, 2 * KiB4)).toEqual([0x8000, 0x2000]);
    expect(g.pin(0x1000, KiB4)).toEqual([0x2000]);
    expect([g.pinCount(0), g.pinCount(0x1000)]).toEqual([1, 2]);
    expect(g.pinStats).toEqual({ pinnedPages: 2, pins: 2, unpins: 0 });
    g.unpin(0, 2 * KiB4);
    expect([g.pinCount(0), g.pinCount(0x1000)]).toEqual([0, 1]);
    expect(g.pinStats).toEqual({ pinnedPages: 1, pins: 2, unpins: 1 });
  });

  it("refuses pins over holes, unbalanced unpins and unmapping pinned pages, changing nothing", () => {
    const g = new GuestMemoryView({ host: host(), addrBits: 39 });
    g.map(0, 0, 2 * KiB4);
    expect(errnoOf(() => g.pin(0, 3 * KiB4))).toBe(Errno.EFAULT);
    expect(g.pinCount(0)).toBe(0);
    expect(errnoOf(() => g.pin(0x800, KiB4))).toBe(Errno.EINVAL);
    g.pin(0, KiB4);
    expect(errnoOf(() => g.unpin(0, 2 * KiB4))).toBe(Errno.EINVAL);
    expect(g.pinCount(0)).toBe(1);
    expect(errnoOf(() => g.unmap(0, 2 * KiB4))).toBe(Errno.EBUSY);
    expect(g.gpaToHpa(0x1000)).toBe(0x1000);
    g.unmap(0x1000, KiB4);
    expect(errnoOf(() => g.unmap(0x1000, KiB4))).toBe(Errno.ENOENT);
  });

  it("refuses a pin that would overflow a page's pin count, before pinning any page of the range", () => {
    expect(MAX_PIN_COUNT).toBe(0x7fff_ffff); // the default ceiling
    const g = new GuestMemoryView({ host: host(), addrBits: 39, maxPinCount: 2 });
    g.map(0, 0, 2 * KiB4);
    g.pin(0x1000, KiB4);
    g.pin(0x1000, KiB4);
    expect(errnoOf(() => g.pin(0, 2 * KiB4))).toBe(Errno.EOVERFLOW);
    expect([g.pinCount(0), g.pinCount(0x1000)]).toEqual([0, 2]);
    expect(g.pinStats.pins).toBe(2);
  });
});

/** A random guest layout: which guest pages are backed, and by which host page (a permutation). */
const layout = fc
  .tuple(fc.array(fc.boolean(), { minLength: 8, maxLength: 8 }), fc.shuffledSubarray([...Array(16).keys()], { minLength: 8, maxLength: 8 }))
  .map(([backed, hostPages]) => backed.map((b, i) => (b ? (hostPages[i] ?? 0) : -1)));

type Op =
  | { kind: "w"; width: 1 | 2 | 4 | 8; gpa: number; v: number; v2: number }
  | { kind: "wb"; gpa: number; bytes: Uint8Array }
  | { kind: "r"; width: 1 | 2 | 4 | 8; gpa: number }
  | { kind: "rb"; gpa: number; len: number };

const SPAN = 8 * KiB4 + 16; // a little past the last guest page, so the end is a hole too
const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant("w" as const), width: fc.constantFrom(1 as const, 2 as const, 4 as const, 8 as const), gpa: fc.nat({ max: SPAN }), v: fc.nat({ max: 0xffff_ffff }), v2: fc.nat({ max: 0xffff_ffff }) }),
  fc.record({ kind: fc.constant("wb" as const), gpa: fc.nat({ max: SPAN }), bytes: fc.uint8Array({ maxLength: KiB4 + 64 }) }),
  fc.record({ kind: fc.constant("r" as const), width: fc.constantFrom(1 as const, 2 as const, 4 as const, 8 as const), gpa: fc.nat({ max: SPAN }) }),
  fc.record({ kind: fc.constant("rb" as const), gpa: fc.nat({ max: SPAN }), len: fc.nat({ max: KiB4 + 64 }) }),
);

describe("GuestMemoryView against a flat model", () => {
  it("reads back what was written, aborts exactly where a byte is in a hole, and keeps its counters", () => {
    fc.assert(
      fc.property(layout, fc.array(op, { maxLength: 40 }), (pages, ops) => {
        const h = new SparseMemory({ addrBits: 46, regions: [{ base: 0, size: 16 * KiB4 }] });
        const g = new GuestMemoryView({ host: h, addrBits: 20 });
        pages.forEach((hp, gp) => {
          if (hp >= 0) g.map(gp * KiB4, hp * KiB4, KiB4);
        });
        // The model: one flat byte array of guest-physical memory plus the set of backed pages.
        const flat = new Uint8Array(9 * KiB4);
        const backed = (gpa: number, len: number) => {
          if (len === 0) return true;
          for (let a = gpa; a < gpa + len; a++) if ((pages[Math.floor(a / KiB4)] ?? -1) < 0) return false;
          return true;
        };
        let aborts = 0;
        let reads = 0;
        let writes = 0;
        for (const o of ops) {
          if (o.kind === "w") {
            writes++;
            const ok = backed(o.gpa, o.width);
            if (!ok) aborts++;
            const bytes = new Uint8Array(8);
            new DataView(bytes.buffer).setUint32(0, o.v, true);
            new DataView(bytes.buffer).setUint32(4, o.v2, true);
            const res = o.width === 1 ? g.write8(o.gpa, o.v) : o.width === 2 ? g.write16(o.gpa, o.v) : o.width === 4 ? g.write32(o.gpa, o.v) : g.write64(o.gpa, o.v, o.v2);
            expect(res).toBe(ok);
            if (ok) flat.set(bytes.subarray(0, o.width), o.gpa);
          } else if (o.kind === "wb") {
            writes++;
            const ok = backed(o.gpa, o.bytes.length);
            if (!ok) aborts++;
            expect(g.writeBytes(o.gpa, o.bytes)).toBe(ok);
            if (ok) flat.set(o.bytes, o.gpa);
          } else if (o.kind === "r") {
            reads++;
            const ok = backed(o.gpa, o.width);
            if (!ok) aborts++;
            const want = ok ? flat.subarray(o.gpa, o.gpa + o.width) : null;
            if (o.width === 8) {
              const out = u64();
              expect(g.read64(o.gpa, out)).toBe(ok);
              if (want) expect([out.lo, out.hi]).toEqual([new DataView(want.buffer, want.byteOffset).getUint32(0, true), new DataView(want.buffer, want.byteOffset).getUint32(4, true)]);
            } else {
              const v = o.width === 1 ? g.read8(o.gpa) : o.width === 2 ? g.read16(o.gpa) : g.read32(o.gpa);
              expect(v).toBe(want ? want.reduce((acc, b, k) => acc + b * 2 ** (8 * k), 0) : MEM_ABORT);
            }
          } else {
            reads++;
            const ok = backed(o.gpa, o.len);
            if (!ok) aborts++;
            const dst = new Uint8Array(o.len);
            expect(g.readBytes(o.gpa, dst)).toBe(ok);
            if (ok) expect(same(dst, flat.subarray(o.gpa, o.gpa + o.len))).toBe(true);
          }
        }
        expect(g.stats).toMatchObject({ reads, writes, aborts });
        // Every backed guest page's bytes sit in its own host page.
        pages.forEach((hp, gp) => {
          if (hp < 0) return;
          const got = new Uint8Array(KiB4);
          h.readBytes(hp * KiB4, got);
          expect(same(got, flat.subarray(gp * KiB4, (gp + 1) * KiB4))).toBe(true);
        });
      }),
      { numRuns: 100 },
    );
  });
});

function same(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.compare(a, b) === 0;
}
