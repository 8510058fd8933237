import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { MEM_ABORT, bigIntToU64, u64, u64ToBigInt } from "./phys-mem.js";
import { SparseMemory } from "./sparse-memory.js";

const mem = () => new SparseMemory({ addrBits: 48, regions: [{ base: 0x10_0000, size: 0x4000 }, { base: 2 ** 47, size: 0x1000 }] });

describe("SparseMemory", () => {
  it("reads zero from populated memory never written, without materialising frames", () => {
    const m = mem();
    expect(m.read32(0x10_0000)).toBe(0);
    expect(m.residentFrames).toBe(0);
  });

  it("is little-endian at every width", () => {
    const m = mem();
    m.write64(0x10_0008, 0x4433_2211, 0x8877_6655);
    expect(m.read8(0x10_0008)).toBe(0x11);
    expect(m.read16(0x10_0009)).toBe(0x3322);
    expect(m.read32(0x10_000c)).toBe(0x8877_6655);
    const out = u64();
    expect(m.read64(0x10_0008, out)).toBe(true);
    expect(u64ToBigInt(out)).toBe(0x8877_6655_4433_2211n);
  });

  it("turns accesses outside populated memory into an abort value, never an exception", () => {
    const m = mem();
    expect(m.read32(0x0)).toBe(MEM_ABORT);
    expect(m.write32(0x20_0000, 1)).toBe(false);
    expect(m.read64(2 ** 52, u64())).toBe(false);
    expect(m.readBytes(0x10_3ff0, new Uint8Array(32))).toBe(false); // runs off the end of the region
    expect(m.stats.aborts).toBe(4);
  });

  it("handles accesses that straddle frames, and high addresses exactly", () => {
    const m = mem();
    expect(m.write64(0x10_0ffc, 0xaabb_ccdd, 0x1122_3344)).toBe(true);
    const out = u64();
    m.read64(0x10_0ffc, out);
    expect(out).toEqual({ lo: 0xaabb_ccdd, hi: 0x1122_3344 });
    expect(m.write32(2 ** 47 + 4, 0xdead_beef)).toBe(true);
    expect(m.read32(2 ** 47 + 4)).toBe(0xdead_beef);
  });

  it("copies byte ranges across frames, all or nothing", () => {
    fc.assert(
      fc.property(fc.nat({ max: 0x3000 }), fc.uint8Array({ minLength: 0, maxLength: 0x1000 }), (off, bytes) => {
        const m = mem();
        expect(m.writeBytes(0x10_0000 + off, bytes)).toBe(true);
        const back = new Uint8Array(bytes.length);
        expect(m.readBytes(0x10_0000 + off, back)).toBe(true);
        expect(back).toEqual(bytes);
      }),
    );
  });

  it("counts references so walks can be measured", () => {
    const m = mem();
    m.read64(0x10_0000, u64());
    m.read32(0x10_0000);
    m.write64(0x10_0000, 1, 2);
    expect(m.stats).toMatchObject({ reads: 2, writes: 1, bytesRead: 12, bytesWritten: 8 });
  });

  it("converts 64-bit values for tests without losing bits", () => {
    expect(bigIntToU64(0xffff_ffff_0000_0001n)).toEqual({ lo: 1, hi: 0xffff_ffff });
  });

  it("refuses bad configuration with EINVAL", () => {
    expect(() => new SparseMemory({ addrBits: 64 })).toThrow(/-EINVAL/);
    expect(() => mem().populate(0x123, 0x1000)).toThrow(/-EINVAL/);
  });
});

describe("SparseMemory block writes inside one written frame (the DMA fast path)", () => {
  it("count, copy and abort exactly as the general path: same stats for in-frame, fresh-frame, crossing and outside writes", () => {
    const m = mem();
    const data = new Uint8Array(64).map((_, i) => i + 1);
    expect(m.writeBytes(0x10_0000, data)).toBe(true); // materialises the frame (general path)
    expect(m.writeBytes(0x10_0040, data)).toBe(true); // inside a written frame (fast path)
    expect(m.writeBytes(0x10_1fe0, data)).toBe(true); // crosses into a fresh frame
    expect(m.writeBytes(0x10_3fe0, data)).toBe(false); // crosses out of the region: nothing written
    expect(m.writeBytes(-0x1000, data)).toBe(false);
    expect(m.stats).toMatchObject({ writes: 5, bytesWritten: 5 * 64, aborts: 2 });
    const back = new Uint8Array(64);
    expect(m.readBytes(0x10_0040, back)).toBe(true);
    expect([...back]).toEqual([...data]);
    expect(m.read8(0x10_3fff)).toBe(0); // the aborted write left nothing behind
    expect(m.read8(0x10_2000 + 31)).toBe(64);
  });

  it("agrees with byte-wise writes for any in-frame offset and length (property)", () => {
    fc.assert(
      fc.property(fc.nat({ max: 4095 }), fc.uint8Array({ minLength: 1, maxLength: 300 }), (off, bytes) => {
        const a = mem();
        const b = mem();
        a.write8(0x10_0000, 0xee); // frame written: block writes take the fast path
        b.write8(0x10_0000, 0xee);
        const okA = a.writeBytes(0x10_0000 + off, bytes);
        let okB = true;
        for (let i = 0; i < bytes.length; i++) okB = b.write8(0x10_0000 + off + i, bytes[i] ?? 0) && okB;
        expect(okA).toBe(true);
        expect(okB).toBe(true);
        const ra = new Uint8Array(0x2000);
        const rb = new Uint8Array(0x2000);
        a.readBytes(0x10_0000, ra);
        b.readBytes(0x10_0000, rb);
        expect(Buffer.compare(ra, rb)).toBe(0);
      }),
    );
  });

  it("lands every block write in its own frame when frames 256 apart take turns (they share a view-memo slot)", () => {
    const base = 0x10_0000;
    const frames = [0, 1, 0x100, 0x200, 0x201];
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.constantFrom(...frames), fc.nat({ max: 0xf00 }), fc.uint8Array({ minLength: 1, maxLength: 0x100 })), { minLength: 1, maxLength: 40 }),
        (writes) => {
          const m = new SparseMemory({ addrBits: 40, regions: [{ base, size: 0x20_2000 }] });
          const want = new Map(frames.map((f) => [f, new Uint8Array(0x1000)]));
          for (const [f, off, bytes] of writes) {
            expect(m.writeBytes(base + f * 0x1000 + off, bytes)).toBe(true);
            want.get(f)?.set(bytes, off);
          }
          for (const f of frames) {
            const got = new Uint8Array(0x1000);
            expect(m.readBytes(base + f * 0x1000, got)).toBe(true);
            expect(Buffer.compare(got, want.get(f) ?? new Uint8Array(0))).toBe(0);
          }
        },
      ),
    );
  });
});

describe("SparseMemory dword writes (writeWords, a device's completion record)", () => {
  it("writes, counts and aborts exactly as writeBytes of the same little-endian bytes, at any address (property)", () => {
    const addr = fc.oneof(
      fc.integer({ min: 0x10_0000 - 64, max: 0x10_4000 + 64 }),
      fc.constantFrom(-4, 2 ** 47 + 0xff8, 2 ** 52, 0x10_0002 + 0.5, Number.NaN),
    );
    fc.assert(
      fc.property(addr, fc.array(fc.nat({ max: 0xffff_ffff }), { minLength: 0, maxLength: 40 }), fc.boolean(), (pa, values, written) => {
        const a = mem();
        const b = mem();
        if (written) {
          a.write8(0x10_1000, 1);
          b.write8(0x10_1000, 1);
        }
        const words = Uint32Array.from(values);
        const okA = a.writeWords(pa, words);
        const okB = b.writeBytes(pa, new Uint8Array(words.buffer));
        expect(okA).toBe(okB);
        expect(a.stats).toEqual(b.stats);
        expect(a.residentFrames).toBe(b.residentFrames);
        const [ra, rb] = [new Uint8Array(0x4000), new Uint8Array(0x4000)];
        expect(a.readBytes(0x10_0000, ra)).toBe(true);
        expect(b.readBytes(0x10_0000, rb)).toBe(true);
        expect(ra).toEqual(rb);
      }),
    );
  });
});

describe("SparseMemory block copies (copyBytes, a DMA engine's move)", () => {
  it("agrees with readBytes then writeBytes for any ranges, overlapping or not, written frames or never-written ones (property)", () => {
    fc.assert(
      fc.property(fc.nat({ max: 0x3fff }), fc.nat({ max: 0x3fff }), fc.nat({ max: 0x2000 }), fc.uint8Array({ minLength: 0x10, maxLength: 0x10 }), (s, d, len, seed) => {
        const a = mem();
        const b = mem();
        // Frames 0 and 2 written, 1 and 3 never: copies meet both kinds.
        for (const m of [a, b]) for (const f of [0, 2]) m.writeBytes(0x10_0000 + f * 0x1000, Uint8Array.from({ length: 0x1000 }, (_, i) => (seed[i & 0xf] ?? 0) ^ i ^ f));
        const okA = a.copyBytes(0x10_0000 + d, 0x10_0000 + s, len);
        const tmp = new Uint8Array(len);
        const okB = b.readBytes(0x10_0000 + s, tmp) && b.writeBytes(0x10_0000 + d, tmp);
        expect(okA).toBe(okB);
        const ra = new Uint8Array(0x4000);
        const rb = new Uint8Array(0x4000);
        a.readBytes(0x10_0000, ra);
        b.readBytes(0x10_0000, rb);
        expect(Buffer.compare(ra, rb)).toBe(0);
      }),
    );
  });

  it("writes nothing when either range leaves populated memory, and counts one abort", () => {
    const m = mem();
    m.writeBytes(0x10_0000, new Uint8Array(16).fill(7));
    expect(m.copyBytes(0x10_3ff8, 0x10_0000, 16)).toBe(false);
    expect(m.copyBytes(0x10_0000, 0x10_3ff8, 16)).toBe(false);
    expect(m.read8(0x10_3ff8)).toBe(0);
    expect(m.stats.aborts).toBe(2);
    expect(m.copyBytes(0x10_2000, 0x10_0000, 16)).toBe(true);
    expect(m.read8(0x10_200f)).toBe(7);
  });
});

describe("SparseMemory frames backed by shared 64 KiB chunks (a block copy over several written frames is one copy)", () => {
  // A region that starts and ends inside chunks: some frames of its first and last chunk are outside it.
  const BASE = 0x10_3000;
  const SIZE = 0x2_2000;
  const SPAN = SIZE + 0x2000;

  it("agrees with a plain byte array for any sequence of block writes, reads, copies and byte writes (property)", () => {
    const op = fc.oneof(
      fc.record({ k: fc.constant("write" as const), at: fc.nat({ max: SPAN }), bytes: fc.uint8Array({ minLength: 0, maxLength: 0x5000 }) }),
      fc.record({ k: fc.constant("read" as const), at: fc.nat({ max: SPAN }), len: fc.nat({ max: 0x5000 }) }),
      fc.record({ k: fc.constant("copy" as const), at: fc.nat({ max: SPAN }), from: fc.nat({ max: SPAN }), len: fc.nat({ max: 0x5000 }) }),
      fc.record({ k: fc.constant("byte" as const), at: fc.nat({ max: SPAN }), v: fc.nat({ max: 255 }) }),
    );
    fc.assert(
      fc.property(fc.array(op, { minLength: 1, maxLength: 30 }), (ops) => {
        const m = new SparseMemory({ addrBits: 40, regions: [{ base: BASE, size: SIZE }] });
        // The model: populated bytes, and what they hold. Addresses are relative to BASE - 0x1000.
        const lo = BASE - 0x1000;
        const model = new Uint8Array(SPAN + 0x6000);
        const inside = (a: number, n: number): boolean => a >= BASE && a + n <= BASE + SIZE;
        for (const o of ops) {
          const a = lo + o.at;
          if (o.k === "write") {
            const ok = inside(a, o.bytes.length) || (o.bytes.length === 0 && a >= 0);
            expect(m.writeBytes(a, o.bytes)).toBe(ok || (o.bytes.length === 0 && m.isPopulated(a)));
            if (ok) model.set(o.bytes, a - lo);
          } else if (o.k === "read") {
            const got = new Uint8Array(o.len);
            const ok = m.readBytes(a, got);
            if (o.len > 0) expect(ok).toBe(inside(a, o.len));
            if (ok && o.len > 0) expect(Buffer.compare(got, model.subarray(a - lo, a - lo + o.len))).toBe(0);
          } else if (o.k === "copy") {
            const s = lo + o.from;
            const ok = inside(a, o.len) && inside(s, o.len);
            const did = m.copyBytes(a, s, o.len);
            if (o.len > 0) expect(did).toBe(ok);
            if (ok && o.len > 0) model.copyWithin(a - lo, s - lo, s - lo + o.len);
          } else {
            expect(m.write8(a, o.v)).toBe(inside(a, 1));
            if (inside(a, 1)) model[a - lo] = o.v;
          }
        }
        const all = new Uint8Array(SIZE);
        expect(m.readBytes(BASE, all)).toBe(true);
        expect(Buffer.compare(all, model.subarray(BASE - lo, BASE - lo + SIZE))).toBe(0);
      }),
    );
  });

  it("moves blocks across chunk boundaries over written frames as a plain byte array would, one access each, nothing materialised (property)", () => {
    // Every frame of the region written first, except some: a block over an unwritten frame must
    // materialise it as before (the general path), and one over written frames only copies.
    const op = fc.record({ write: fc.boolean(), at: fc.nat({ max: SIZE - 1 }), len: fc.integer({ min: 1, max: 0x2_2000 }), seed: fc.nat({ max: 255 }) });
    fc.assert(
      fc.property(fc.array(op, { minLength: 1, maxLength: 12 }), fc.uniqueArray(fc.nat({ max: SIZE / 0x1000 - 1 }), { maxLength: 4 }), (ops, unwritten) => {
        const m = new SparseMemory({ addrBits: 40, regions: [{ base: BASE, size: SIZE }] });
        const model = new Uint8Array(SIZE);
        for (let f = 0; f < SIZE / 0x1000; f++) {
          if (unwritten.includes(f)) continue;
          m.write8(BASE + f * 0x1000, f & 0xff);
          model[f * 0x1000] = f & 0xff;
        }
        for (const o of ops) {
          const a = BASE + o.at;
          const fits = o.at + o.len <= SIZE;
          const before = { ...m.stats };
          if (o.write) {
            const data = new Uint8Array(o.len);
            for (let i = 0; i < o.len; i++) data[i] = (i * 13 + o.seed) & 0xff;
            expect(m.writeBytes(a, data)).toBe(fits);
            if (fits) model.set(data, o.at);
            expect(m.stats).toMatchObject({ writes: before.writes + 1, bytesWritten: before.bytesWritten + o.len, aborts: before.aborts + (fits ? 0 : 1) });
          } else {
            const got = new Uint8Array(o.len);
            expect(m.readBytes(a, got)).toBe(fits);
            if (fits) expect(Buffer.compare(got, model.subarray(o.at, o.at + o.len))).toBe(0);
            expect(m.stats).toMatchObject({ reads: before.reads + 1, bytesRead: before.bytesRead + o.len, aborts: before.aborts + (fits ? 0 : 1) });
          }
        }
        const all = new Uint8Array(SIZE);
        expect(m.readBytes(BASE, all)).toBe(true);
        expect(Buffer.compare(all, model)).toBe(0);
        // A frame materialises only when written (a read of an unwritten one gives zeros and allocates nothing).
        const written = new Set<number>();
        for (let f = 0; f < SIZE / 0x1000; f++) if (!unwritten.includes(f)) written.add(f);
        for (const o of ops) {
          if (!o.write || o.at + o.len > SIZE) continue;
          for (let f = Math.floor(o.at / 0x1000); f <= Math.floor((o.at + o.len - 1) / 0x1000); f++) written.add(f);
        }
        expect(m.residentFrames).toBe(written.size);
      }),
      { numRuns: 100 },
    );
  });

  it("copies a block over several written frames of one chunk in one go, and still counts frames one by one", () => {
    const m = new SparseMemory({ addrBits: 40, regions: [{ base: 0x10_0000, size: 0x2_0000 }] });
    for (let f = 0; f < 16; f++) m.write8(0x10_0000 + f * 0x1000, 1);
    expect(m.residentFrames).toBe(16);
    const data = Uint8Array.from({ length: 0x1_0000 }, (_, i) => (i * 7) & 0xff);
    expect(m.writeBytes(0x10_0000, data)).toBe(true);
    expect(m.residentFrames).toBe(16);
    expect(m.read8(0x10_0000 + 0xabcd)).toBe((0xabcd * 7) & 0xff);
    expect(m.read8(0x11_0000)).toBe(0); // the next chunk's first frame is untouched
    const back = new Uint8Array(0x1_0000);
    expect(m.readBytes(0x10_0000, back)).toBe(true);
    expect(Buffer.compare(back, data)).toBe(0);
    expect(m.stats).toMatchObject({ writes: 17, reads: 3, aborts: 0 }); // two read8, one readBytes
  });
});
