import { Errno, KernelError } from "@vsva/kernel";
import type { PhysMem } from "../mem/phys-mem.js";
import type { PteProt } from "../pt/formats.js";
import { type Mapping, TableWriter, type TableWriterOptions } from "../pt/table-writer.js";
import { armS1Format, armS2Format } from "./formats.js";
import { armLevelShift, s1StartLevel, s2Geometry } from "./geometry.js";

export interface ArmS1WriterOptions extends TableWriterOptions {
  /** IS = 64 − T0SZ (default 48). */
  readonly inputBits?: number;
  readonly attrIndx?: number;
}

export interface ArmS2WriterOptions extends TableWriterOptions {
  /** S2T0SZ (default 16: a 48-bit IPA space). */
  readonly t0sz?: number;
  /** S2SL0 (default 2: start at level 0). */
  readonly sl0?: number;
  readonly memAttr?: number;
}

/**
 * Builds AArch64 tables in memory (map/unmap/protect in 4 KiB, 2 MiB and
 * 1 GiB leaves, plan then apply: EINVAL/EEXIST/ENOMEM/ENOENT leave the
 * tables untouched), on the generic {@link TableWriter}.
 *
 * Stage 2 may start with up to 16 concatenated tables (Arm ARM VMSAv8-64 stage 2 concatenation; Linux io-pgtable-arm.c):
 * the writer then drives one generic writer per 4 KiB start table, and a
 * single call may not cross from one to the next (EINVAL), which keeps
 * every call atomic. Concatenated tables need a caller-given `root` (the
 * allocator hands out single pages), aligned to the whole table.
 */
export class ArmTableWriter {
  readonly root: number;
  /** The TTB0 / S2TTB value and walk parameters that go with these tables. */
  readonly inputBits: number;
  readonly startLevel: number;
  readonly #parts: TableWriter[];
  readonly #span: number;

  private constructor(root: number, inputBits: number, startLevel: number, parts: TableWriter[], span: number) {
    this.root = root;
    this.inputBits = inputBits;
    this.startLevel = startLevel;
    this.#parts = parts;
    this.#span = span;
  }

  /** Stage-1 tables. EINVAL for an input size outside 25..48 bits. */
  static stage1(mem: PhysMem, opts: ArmS1WriterOptions): ArmTableWriter {
    const inputBits = opts.inputBits ?? 48;
    const fmt = armS1Format({ inputBits, ...(opts.attrIndx === undefined ? {} : { attrIndx: opts.attrIndx }) });
    const w = new TableWriter(mem, fmt, opts);
    return new ArmTableWriter(w.root, inputBits, s1StartLevel(inputBits), [w], 2 ** inputBits);
  }

  /** Stage-2 tables for (S2T0SZ, S2SL0). EINVAL for an illegal combination. */
  static stage2(mem: PhysMem, opts: ArmS2WriterOptions): ArmTableWriter {
    const g = s2Geometry(opts.t0sz ?? 16, opts.sl0 ?? 2, 48);
    if (typeof g === "string") throw new KernelError(Errno.EINVAL, g);
    const span = 2 ** Math.min(g.inputBits, armLevelShift(g.startLevel) + 9);
    const fmt = armS2Format({ inputBits: g.inputBits, startLevel: g.startLevel, ...(opts.memAttr === undefined ? {} : { memAttr: opts.memAttr }) });
    if (g.tables === 1) {
      const w = new TableWriter(mem, fmt, opts);
      return new ArmTableWriter(w.root, g.inputBits, g.startLevel, [w], span);
    }
    const root = opts.root;
    if (root === undefined || root % (g.tables * 4096) !== 0) {
      throw new KernelError(Errno.EINVAL, `${g.tables} concatenated stage-2 tables need a root aligned to ${g.tables * 4096} bytes`);
    }
    const parts: TableWriter[] = [];
    for (let i = 0; i < g.tables; i++) parts.push(new TableWriter(mem, fmt, { ...opts, root: root + i * 4096 }));
    return new ArmTableWriter(root, g.inputBits, g.startLevel, parts, span);
  }

  #part(va: number, size: number): { w: TableWriter; base: number } {
    const i = Math.floor(va / this.#span);
    const w = this.#parts[i];
    if (!Number.isInteger(va) || va < 0 || w === undefined || Math.floor((va + Math.max(size, 1) - 1) / this.#span) !== i) {
      throw new KernelError(Errno.EINVAL, `[0x${va.toString(16)}, +0x${size.toString(16)}) is outside the input range or crosses a concatenated table`);
    }
    return { w, base: i * this.#span };
  }

  /** See TableWriter.map: EINVAL, EEXIST, ENOMEM, EFAULT. */
  map(va: number, pa: number, size: number, prot: PteProt, pageSize?: number): void {
    const { w, base } = this.#part(va, size);
    w.map(va - base, pa, size, prot, pageSize);
  }

  unmap(va: number, size: number): number {
    const { w, base } = this.#part(va, size);
    return w.unmap(va - base, size);
  }

  protect(va: number, size: number, prot: PteProt): void {
    const { w, base } = this.#part(va, size);
    w.protect(va - base, size, prot);
  }

  lookup(va: number): Mapping | null {
    const i = Math.floor(va / this.#span);
    const w = this.#parts[i];
    if (w === undefined) return null;
    const m = w.lookup(va - i * this.#span);
    return m === null ? null : { ...m, va: m.va + i * this.#span };
  }

  mappings(): Mapping[] {
    return this.#parts.flatMap((w, i) => w.mappings().map((m) => ({ ...m, va: m.va + i * this.#span })));
  }

  tablePages(): number[] {
    return this.#parts.flatMap((w) => w.tablePages());
  }
}
