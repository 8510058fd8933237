import { Errno } from "@vsva/kernel";
import { errnoOf } from "@vsva/kernel/testing";
import { describe, expect, it } from "vitest";
import { checkMapArgs, checkMapInRanges, checkUnmapArgs, clampRange, minPageMask } from "./dma-args.js";

const PGSIZES = 0x4020_1000n; // 4 KiB, 2 MiB, 1 GiB
const ok = { vaddr: 0x10_0000n, iova: 0x20_0000n, size: 0x2000n, read: true, write: false };
const ranges = [{ start: 0, end: 0xfedf_ffff }, { start: 0xfef0_0000, end: 2 ** 48 - 1 }];

describe("MAP_DMA argument checks (vfio_dma_do_map order)", () => {
  it("takes an aligned, permitted, non-wrapping range", () => {
    expect(errnoOf(() => checkMapArgs(ok, PGSIZES))).toBe(0);
    expect(checkMapInRanges(ok, ranges)).toEqual({ iova: 0x20_0000, size: 0x2000, vaddr: 0x10_0000 });
  });

  it.each([
    ["no permission", { ...ok, read: false }],
    ["size 0", { ...ok, size: 0n }],
    ["unaligned iova", { ...ok, iova: 0x20_0800n }],
    ["unaligned vaddr", { ...ok, vaddr: 0x10_0010n }],
    ["unaligned size", { ...ok, size: 0x1800n }],
    ["wrapping iova", { ...ok, iova: 0xffff_ffff_ffff_f000n }],
    ["wrapping vaddr", { ...ok, vaddr: 0xffff_ffff_ffff_f000n }],
  ])("%s is EINVAL", (_, a) => {
    expect(errnoOf(() => checkMapArgs(a, PGSIZES))).toBe(Errno.EINVAL);
  });

  it("a range over the MSI window or past the aperture is EINVAL", () => {
    expect(errnoOf(() => checkMapInRanges({ ...ok, iova: 0xfee0_0000n, size: 0x1000n }, ranges))).toBe(Errno.EINVAL);
    expect(errnoOf(() => checkMapInRanges({ ...ok, iova: 2n ** 48n, size: 0x1000n }, ranges))).toBe(Errno.EINVAL);
    expect(errnoOf(() => checkMapInRanges({ ...ok, iova: 0xfed0_0000n, size: 0x20_0000n }, ranges))).toBe(Errno.EINVAL);
  });

  it("the smallest page of the bitmap sets the alignment", () => {
    expect(minPageMask(PGSIZES)).toBe(0xfffn);
    expect(minPageMask(0x20_0000n)).toBe(0x1f_ffffn);
  });

  it("clamping to 2^53 keeps overlap answers exact", () => {
    expect(clampRange(0x1000n, 0x1000n)).toEqual({ iova: 0x1000, size: 0x1000 });
    expect(clampRange(2n ** 60n, 0x1000n).size).toBe(0);
  });
});

describe("UNMAP_DMA argument checks", () => {
  it("ALL needs iova and size 0", () => {
    expect(errnoOf(() => checkUnmapArgs({ iova: 0n, size: 0n, all: true }, PGSIZES))).toBe(0);
    expect(errnoOf(() => checkUnmapArgs({ iova: 0x1000n, size: 0n, all: true }, PGSIZES))).toBe(Errno.EINVAL);
    expect(errnoOf(() => checkUnmapArgs({ iova: 0n, size: 0x1000n, all: true }, PGSIZES))).toBe(Errno.EINVAL);
  });

  it.each([
    ["unaligned iova", 0x800n, 0x1000n],
    ["size 0", 0x1000n, 0n],
    ["unaligned size", 0x1000n, 0x800n],
    ["wrap", 0xffff_ffff_ffff_f000n, 0x2000n],
  ])("%s is EINVAL", (_, iova, size) => {
    expect(errnoOf(() => checkUnmapArgs({ iova, size, all: false }, PGSIZES))).toBe(Errno.EINVAL);
  });
});
