import { describe, expect, it } from "vitest";
import { seededRandom } from "./driver-fuzz.js";
import { type FuzzMmio, misbehavingUnit } from "./misbehaving-unit.js";

/** A register window that records what reaches it. */
class Recorder implements FuzzMmio {
  readonly writes: [number, bigint][] = [];
  reads = 0;
  mmioRead32(_offset: number): number {
    this.reads++;
    return 0;
  }
  mmioRead64(_offset: number): bigint {
    this.reads++;
    return 0n;
  }
  mmioWrite32(offset: number, value: number): void {
    this.writes.push([offset, BigInt(value)]);
  }
  mmioWrite64(offset: number, value: bigint): void {
    this.writes.push([offset, value]);
  }
}

function setup() {
  const unit = new Recorder();
  const memWrites: number[] = [];
  const live = [
    { pa: 0x10000, order: 0, tag: "queue" },
    { pa: 0x20000, order: 1, tag: "page-table" },
  ];
  const t = misbehavingUnit({
    unit,
    mem: { write32: (pa: number) => memWrites.push(pa) },
    pages: { live: () => live },
    registers: [0x10, 0x18],
    wide: [0x18],
    wideLow: (w) => w & ~0xfff,
    queueTags: ["queue"],
  });
  return { unit, memWrites, t };
}

describe("misbehavingUnit (the drivers' fuzz targets' register and queue corruption)", () => {
  it("counts the driver's register accesses, not the corruptions'", () => {
    const { unit, t } = setup();
    let n = 0;
    t.watchAccesses(() => n++);
    unit.mmioRead32(0);
    unit.mmioWrite64(0x18, 1n);
    const rand = seededRandom(1);
    for (let i = 0; i < 50; i++) t.corrupt(rand);
    expect(n).toBe(2);
    expect(unit.reads).toBe(1);
    expect(unit.writes.length).toBeGreaterThan(1);
  });

  it("writes only the listed registers (wide ones as 64-bit values, low dword shaped) and only the queues' pages", () => {
    const { unit, memWrites, t } = setup();
    const rand = seededRandom(7);
    for (let i = 0; i < 400; i++) t.corrupt(rand);
    expect(unit.writes.length).toBeGreaterThan(100);
    for (const [off, v] of unit.writes) {
      expect([0x10, 0x18]).toContain(off);
      if (off === 0x18) expect(v & 0xfffn).toBe(0n);
      else expect(v < 1n << 32n).toBe(true);
    }
    expect(unit.writes.some(([off, v]) => off === 0x18 && v >= 1n << 32n)).toBe(true);
    expect(memWrites.length).toBeGreaterThan(100);
    for (const pa of memWrites) expect(pa >= 0x10000 && pa < 0x11000).toBe(true);
  });
});
