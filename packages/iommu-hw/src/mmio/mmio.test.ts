import { Errno } from "@vsva/kernel";
import { errnoOf } from "@vsva/kernel/testing";
import { SparseMemory } from "@vsva/pgtable";
import { describe, expect, it } from "vitest";
import { SmmuUnit } from "../smmu/smmu-unit.js";
import { SmmuReg } from "../smmu/regs.js";
import { VtdUnit } from "../vtd/vtd-unit.js";
import { RegOffset } from "../vtd/regs.js";
import type { Mmio } from "./mmio.js";

const mem = (): SparseMemory => new SparseMemory({ addrBits: 48, regions: [{ base: 0, size: 1 << 20 }] });

// A 64-bit RW register on each unit whose high bits are writable: VT-d IQA (IQA 63:12), SMMU STRTAB_BASE (RA 62, ADDR 51:6).
const units: readonly { name: string; make: () => Mmio; reg64: number; top: bigint; reg32: number }[] = [
  { name: "VT-d", make: () => new VtdUnit({ mem: mem() }), reg64: RegOffset.IQA, top: 0xffff_f000_0000_0000n, reg32: RegOffset.FEUADDR },
  { name: "SMMUv3", make: () => new SmmuUnit({ mem: mem() }), reg64: SmmuReg.STRTAB_BASE, top: 0x4008_0000_0000_0040n, reg32: SmmuReg.GERROR_IRQ_CFG1 },
];

describe.each(units)("the $name unit's MMIO boundary", ({ make, reg64, top, reg32 }) => {
  it("keeps every bit of a 64-bit value above 2^53", () => {
    const u = make();
    u.mmioWrite64(reg64, top);
    expect(u.mmioRead64(reg64)).toBe(top);
  });

  it("refuses a negative, oversized or non-bigint 64-bit value with EINVAL and writes nothing", () => {
    const u = make();
    u.mmioWrite64(reg64, 0x1000n);
    for (const bad of [-1n, 1n << 64n]) expect(errnoOf(() => u.mmioWrite64(reg64, bad))).toBe(Errno.EINVAL);
    // A caller outside TypeScript can pass a number; it is refused rather than rounded.
    const loose = u as unknown as { mmioWrite64(o: number, v: unknown): void };
    for (const bad of [2 ** 60, -1, Number.NaN, 0.5]) expect(errnoOf(() => loose.mmioWrite64(reg64, bad))).toBe(Errno.EINVAL);
    expect(u.mmioRead64(reg64)).toBe(0x1000n);
  });

  it("takes a 32-bit value signed or unsigned and refuses anything wider or fractional with EINVAL", () => {
    const u = make();
    u.mmioWrite32(reg32, -1);
    expect(u.mmioRead32(reg32)).toBe(0xffff_ffff);
    u.mmioWrite32(reg32, 0x8000_0001);
    expect(u.mmioRead32(reg32)).toBe(0x8000_0001);
    for (const bad of [2 ** 32, -(2 ** 31) - 1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) expect(errnoOf(() => u.mmioWrite32(reg32, bad))).toBe(Errno.EINVAL);
    expect(u.mmioRead32(reg32)).toBe(0x8000_0001);
  });
});
