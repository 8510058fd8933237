import { Errno, KernelError } from "@vsva/kernel";
import type { PageTableFormat } from "../pt/formats.js";
import { ARM, ArmS1Block1G, descAddr, ArmS1Block2M, ArmS1Page, ArmS2Block1G, ArmS2Block2M, ArmS2Page, ArmTableDesc } from "./descriptors.js";
import { armLevelShift, s1StartLevel } from "./geometry.js";

/**
 * The two AArch64 formats (4 KiB granule) as the generic table writer of
 * `pt/table-writer.ts` needs them. The writer counts levels from the leaf
 * (1 = a 4 KiB page table, i.e. Arm level 3), so writer level `l` is Arm
 * level 4 − l, and a format has 4 − startLevel levels.
 *
 * Leaves are written the way Linux io-pgtable-arm writes them for the SMMU:
 * AF preset (a walk with AFFD = 0 and no HA would otherwise fault), inner
 * shareable, and at stage 1 nG set unless the mapping is global and AP[1]
 * set unless it is privileged-only. `PteProt.accessed: false` leaves AF
 * clear (to exercise F_ACCESS and HA).
 */

export interface ArmS1FormatOptions {
  /** IS = 64 − T0SZ, 25..48. */
  readonly inputBits: number;
  /** MAIR index for leaves (default 0). */
  readonly attrIndx?: number;
}

export interface ArmS2FormatOptions {
  /** The part of the input space one start-level table covers (the writer handles concatenation). */
  readonly inputBits: number;
  readonly startLevel: number;
  /** Stage-2 MemAttr for leaves (default 0xF, normal write-back). */
  readonly memAttr?: number;
}

function checkInput(inputBits: number): void {
  if (!Number.isInteger(inputBits) || inputBits < 25 || inputBits > 48) {
    throw new KernelError(Errno.EINVAL, `AArch64 4 KiB tables take 25..48 input bits, not ${inputBits}`);
  }
}

const s1Leaf = (level: number): typeof ArmS1Page | typeof ArmS1Block2M => (level === 3 ? ArmS1Block1G : level === 2 ? ArmS1Block2M : ArmS1Page);
const s2Leaf = (level: number): typeof ArmS2Page | typeof ArmS2Block2M => (level === 3 ? ArmS2Block1G : level === 2 ? ArmS2Block2M : ArmS2Page);

function common(name: string, levels: number, inputBits: number): Pick<PageTableFormat, "name" | "levels" | "vaMin" | "vaEnd" | "leafAllowed" | "tableEntry" | "present" | "isLeaf" | "target" | "adBits"> {
  return {
    name,
    levels,
    vaMin: 0,
    vaEnd: 2 ** inputBits,
    // No blocks at Arm level 0 with the 4 KiB granule.
    leafAllowed: (level) => level >= 1 && level <= 3 && level < 4,
    tableEntry: (table) => ArmTableDesc.encode({ VALID: 1, TYPE: 1, ADDR: table / 4096 }),
    present: (lo) => (lo & ARM.VALID) !== 0,
    isLeaf: (lo, level) => level === 1 || (lo & ARM.TYPE) === 0,
    target(v, level) {
      const a = descAddr(v[0] ?? 0, v[1] ?? 0);
      if (level === 1 || ((v[0] ?? 0) & ARM.TYPE) !== 0) return a;
      const s = 2 ** armLevelShift(4 - level);
      return Math.floor(a / s) * s;
    },
    adBits: (lo) => lo & ARM.AF,
  };
}

/** Stage-1 (TTB0) tables for a CD with T0SZ = 64 − inputBits. */
export function armS1Format(opts: ArmS1FormatOptions): PageTableFormat {
  checkInput(opts.inputBits);
  const attrIndx = opts.attrIndx ?? 0;
  const levels = 4 - s1StartLevel(opts.inputBits);
  return {
    ...common(`arm-s1-${opts.inputBits}bit`, levels, opts.inputBits),
    leafEntry(pa, level, prot) {
      if (prot.read === false) throw new KernelError(Errno.EINVAL, "an AArch64 stage-1 page cannot be mapped without read permission");
      const layout = s1Leaf(level);
      const xn = prot.exec === true ? 0 : 1;
      return layout.encode({
        VALID: 1,
        TYPE: level === 1 ? 1 : 0,
        ATTRINDX: attrIndx,
        AP1: prot.user === false ? 0 : 1,
        AP2: prot.write ? 0 : 1,
        SH: 3,
        AF: prot.accessed === false ? 0 : 1,
        NG: prot.global === true ? 0 : 1,
        UXN: xn,
        PXN: xn,
        ADDR: pa / 2 ** layout.spec("ADDR").lsb,
      });
    },
    prot(v) {
      const f = ArmS1Page.decode(v);
      return {
        read: true, write: f.AP2 === 0, exec: f.UXN === 0, user: f.AP1 === 1, global: f.NG === 0,
        accessed: f.AF === 1, dirty: f.AP2 === 0, snoop: false,
      };
    },
  };
}

/** Stage-2 tables: one start-level table (see {@link ArmTableWriter} for concatenation). */
export function armS2Format(opts: ArmS2FormatOptions): PageTableFormat {
  const { startLevel } = opts;
  if (!Number.isInteger(startLevel) || startLevel < 0 || startLevel > 2) throw new KernelError(Errno.EINVAL, `stage-2 start level ${startLevel} is not 0, 1 or 2`);
  const bits = Math.min(opts.inputBits, armLevelShift(startLevel) + 9);
  const memAttr = opts.memAttr ?? 0xf;
  return {
    ...common(`arm-s2-l${startLevel}`, 4 - startLevel, bits),
    leafEntry(pa, level, prot) {
      const read = prot.read ?? true;
      if (!read && !prot.write) throw new KernelError(Errno.EINVAL, "a stage-2 page with neither read nor write would be an invalid-looking valid entry; unmap it instead");
      const layout = s2Leaf(level);
      return layout.encode({
        VALID: 1,
        TYPE: level === 1 ? 1 : 0,
        MEMATTR: memAttr,
        S2AP_R: read ? 1 : 0,
        S2AP_W: prot.write ? 1 : 0,
        SH: 3,
        AF: prot.accessed === false ? 0 : 1,
        XN: prot.exec === true ? 0 : 2,
        ADDR: pa / 2 ** layout.spec("ADDR").lsb,
      });
    },
    prot(v) {
      const f = ArmS2Page.decode(v);
      return {
        read: f.S2AP_R === 1, write: f.S2AP_W === 1, exec: (f.XN & 2) === 0, user: true, global: false,
        accessed: f.AF === 1, dirty: f.S2AP_W === 1, snoop: false,
      };
    },
  };
}
