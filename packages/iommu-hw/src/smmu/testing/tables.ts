import { TABLE, type SmmuRig } from "./rig.js";

/** Index of the level-`level` descriptor for `va` (4 KiB granule, the Arm ARM's VMSAv8-64 descriptors). */
export const armIdx = (va: number, level: number): number => Number((BigInt(va) >> BigInt(12 + 9 * (3 - level))) & 511n);

/**
 * Hand-encodes a 4-level (level 0 start) table path from `root` to a leaf
 * for `va`, allocating missing tables from the rig, and writes `leaf` (an
 * output address ORed with descriptor bits). `hpa` maps a table's address
 * to where it lives in memory (for stage-1 tables of a nested stream that
 * sit at IPA g but in memory at g + shift).
 */
export function mapPath(rig: SmmuRig, root: number, va: number, leaf: bigint, o: { levels?: number; hpa?: (a: number) => number; tableBits?: bigint } = {}): void {
  const hpa = o.hpa ?? ((a: number) => a);
  let table = root;
  const start = 4 - (o.levels ?? 4);
  for (let l = start; l < 3; l++) {
    const slot = hpa(table) + 8 * armIdx(va, l);
    let next = Number(rig.r64(slot) & 0xffff_ffff_f000n);
    if (next === 0) {
      next = rig.alloc();
      rig.w64(slot, BigInt(next) | TABLE | (o.tableBits ?? 0n));
    }
    table = next;
  }
  rig.w64(hpa(table) + 8 * armIdx(va, 3), leaf);
}
