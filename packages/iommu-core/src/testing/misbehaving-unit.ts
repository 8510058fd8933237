import type { DriverFuzzTarget } from "./driver-fuzz.js";

/** The register window of an emulated unit (the shape of iommu-hw's `Mmio`; 64-bit values are bigints). */
export interface FuzzMmio {
  mmioRead32(offset: number): number;
  mmioRead64(offset: number): bigint;
  mmioWrite32(offset: number, value: number): void;
  mmioWrite64(offset: number, value: bigint): void;
}

export interface MisbehavingUnitOptions {
  readonly unit: FuzzMmio;
  /** Memory the queues live in. */
  readonly mem: { write32(pa: number, value: number): unknown };
  /** The driver's page allocator: its live pages, with the tag each was allocated for. */
  readonly pages: { live(): readonly { readonly pa: number; readonly order: number; readonly tag: string }[] };
  /** Register offsets a corruption may write. */
  readonly registers: readonly number[];
  /** Of those, the ones written as 64-bit values: a random low dword (shaped by `wideLow`) and 4 random bits above it. */
  readonly wide: readonly number[];
  readonly wideLow?: (word: number) => number;
  /** Tags of the pages the unit writes and the driver reads (its queues). */
  readonly queueTags: readonly string[];
}

/**
 * The `corrupt` and `watchAccesses` halves of a {@link DriverFuzzTarget} for a
 * driver over an emulated unit: the unit's MMIO methods are wrapped so that
 * the driver's accesses are counted, and a corruption writes (through the
 * unwrapped methods, so it is not counted) a random value to a random
 * register, or a random word to a random page of the driver's queues.
 */
export function misbehavingUnit(o: MisbehavingUnitOptions): Pick<DriverFuzzTarget, "corrupt" | "watchAccesses"> {
  const unit = o.unit;
  let onAccess = (): void => undefined;
  const read32 = unit.mmioRead32.bind(unit);
  const read64 = unit.mmioRead64.bind(unit);
  const write32 = unit.mmioWrite32.bind(unit);
  const write64 = unit.mmioWrite64.bind(unit);
  unit.mmioRead32 = (off) => {
    onAccess();
    return read32(off);
  };
  unit.mmioRead64 = (off) => {
    onAccess();
    return read64(off);
  };
  unit.mmioWrite32 = (off, v) => {
    onAccess();
    write32(off, v);
  };
  unit.mmioWrite64 = (off, v) => {
    onAccess();
    write64(off, v);
  };
  const low = o.wideLow ?? ((w: number) => w);
  return {
    corrupt: (rand) => {
      const word = Math.floor(rand() * 2 ** 32);
      if (rand() < 0.5) {
        const reg = o.registers[Math.floor(rand() * o.registers.length)];
        if (reg === undefined) return;
        if (o.wide.includes(reg)) write64(reg, (BigInt(Math.floor(rand() * 0x10)) << 32n) | BigInt(low(word) >>> 0));
        else write32(reg, word);
        return;
      }
      const pages = o.pages.live().filter((p) => o.queueTags.includes(p.tag));
      const page = pages[Math.floor(rand() * pages.length)];
      if (page !== undefined) o.mem.write32(page.pa + 4 * Math.floor(rand() * 1024 * 2 ** page.order), word);
    },
    watchAccesses: (f) => {
      onAccess = f;
    },
  };
}
