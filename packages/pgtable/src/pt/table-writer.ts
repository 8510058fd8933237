import { Errno, KernelBug, KernelError } from "@vsva/kernel";
import type { PhysMem } from "../mem/phys-mem.js";
import type { LeafProt, PageTableFormat, PteProt } from "./formats.js";
import { ENTRY_SIZE, TABLE_SIZE, addrHi, addrLo, levelIndex, levelPrefix, levelSize } from "./geometry.js";

/** Returns a zeroed, 4 KiB-aligned physical page for a table, or null when memory is exhausted. */
export type PageAllocator = () => number | null;

/** One leaf: `size` bytes at input address `va` map to `pa`. */
export interface Mapping {
  readonly va: number;
  readonly pa: number;
  readonly size: number;
  readonly prot: LeafProt;
}

export interface TableWriterOptions {
  /** Where table pages come from. */
  readonly alloc: PageAllocator;
  /** Where table pages go when the writer drops one (a table replaced by a large leaf). Optional: without it they are abandoned. */
  readonly free?: (pa: number) => void;
  /** An existing root table; otherwise one is allocated. */
  readonly root?: number;
  /** Width of the output addresses the leaves may hold (default 52). */
  readonly outBits?: number;
}

const PAGE = 4096;

/**
 * Builds and edits page tables in memory, in either format, for tests, the
 * process model (iommu-core's `Mm`) and drivers.
 *
 * Every operation checks its whole range first and then applies it, so a
 * failure leaves the tables exactly as they were:
 * - `EINVAL`: misaligned or out-of-range input, a page size the format does
 *   not allow, or a range that cuts through a large page;
 * - `EEXIST`: `map` over an existing mapping;
 * - `ENOENT`: `protect` over a hole;
 * - `ENOMEM`: the allocator ran out (pages taken for this call are handed to
 *   `free`);
 * - `EFAULT`: a table sits in memory that does not exist (a corrupted table
 *   or a bad allocator).
 *
 * Tables are not freed when they become empty (Linux keeps them too); a
 * later large mapping over an empty table replaces it and frees its pages.
 */
export class TableWriter {
  readonly root: number;
  readonly #mem: PhysMem;
  readonly #fmt: PageTableFormat;
  readonly #alloc: PageAllocator;
  readonly #free: ((pa: number) => void) | undefined;
  readonly #outEnd: number;
  readonly #e = { lo: 0, hi: 0 };

  constructor(mem: PhysMem, format: PageTableFormat, opts: TableWriterOptions) {
    this.#mem = mem;
    this.#fmt = format;
    this.#alloc = opts.alloc;
    this.#free = opts.free;
    const outBits = opts.outBits ?? 52;
    if (!Number.isInteger(outBits) || outBits < 12 || outBits > 52) throw new KernelError(Errno.EINVAL, `output width ${outBits} is outside 12..52 bits`);
    this.#outEnd = 2 ** outBits;
    if (opts.root !== undefined) {
      this.#checkTablePage(opts.root, "root table");
      this.root = opts.root;
    } else {
      const r = this.#alloc();
      if (r === null) throw new KernelError(Errno.ENOMEM, `${format.name}: no page for the root table`);
      this.#checkTablePage(r, "allocator returned a page that");
      this.root = r;
    }
  }

  get format(): PageTableFormat {
    return this.#fmt;
  }

  /**
   * Maps [va, va + size) to [pa, pa + size). With `pageSize` (4 KiB, 2 MiB or
   * 1 GiB) every leaf has that size; without it each step uses the largest
   * leaf the format allows that fits the alignment of both addresses.
   * Errors: EINVAL, EEXIST, ENOMEM, EFAULT (see the class).
   */
  map(va: number, pa: number, size: number, prot: PteProt, pageSize?: number): void {
    this.#checkRange(va, size);
    if (!Number.isInteger(pa) || pa < 0 || pa % PAGE !== 0 || pa + size > this.#outEnd) {
      throw new KernelError(Errno.EINVAL, `output range [${hex(pa)}, +${hex(size)}) is misaligned or beyond the output width`);
    }
    let fixed = 0;
    if (pageSize !== undefined) {
      fixed = [0, PAGE, 2 ** 21, 2 ** 30].indexOf(pageSize);
      if (fixed < 1 || !this.#fmt.leafAllowed(fixed)) throw new KernelError(Errno.EINVAL, `${this.#fmt.name}: page size ${hex(pageSize)} is not supported`);
      if (va % pageSize !== 0 || pa % pageSize !== 0 || size % pageSize !== 0) {
        throw new KernelError(Errno.EINVAL, `[${hex(va)}, +${hex(size)}) -> ${hex(pa)} is not aligned to the ${hex(pageSize)} page size`);
      }
    }
    // Leaf prot is validated once, before anything is touched.
    this.#fmt.leafEntry(pa, 1, prot);

    const chunks: { va: number; pa: number; level: number }[] = [];
    for (let off = 0; off < size; ) {
      const cv = va + off;
      const cp = pa + off;
      let level = fixed;
      if (level === 0) {
        level = 1;
        for (const l of [3, 2]) {
          const s = levelSize(l);
          if (this.#fmt.leafAllowed(l) && cv % s === 0 && cp % s === 0 && size - off >= s) {
            level = l;
            break;
          }
        }
      }
      chunks.push({ va: cv, pa: cp, level });
      off += levelSize(level);
    }

    // Plan: find the slots, count the tables to create, refuse overlaps.
    const newTables = new Set<number>();
    const replaced: { table: number; level: number }[] = [];
    for (const c of chunks) {
      let table = this.root;
      let fresh = false;
      for (let level = this.#fmt.levels; level > c.level; level--) {
        if (fresh) {
          newTables.add(levelPrefix(c.va, level) * 8 + level);
          continue;
        }
        const v = this.#readEntry(table, c.va, level);
        if (!this.#fmt.present(v[0] ?? 0)) {
          fresh = true;
          newTables.add(levelPrefix(c.va, level) * 8 + level);
          continue;
        }
        if (this.#fmt.isLeaf(v[0] ?? 0, level)) throw this.#overlap(c.va, level);
        table = this.#fmt.target(v, level);
      }
      if (fresh) continue;
      const v = this.#readEntry(table, c.va, c.level);
      if (!this.#fmt.present(v[0] ?? 0)) continue;
      if (this.#fmt.isLeaf(v[0] ?? 0, c.level)) throw this.#overlap(c.va, c.level);
      // A table under the slot of a large leaf: acceptable only if nothing is mapped below it.
      const sub = this.#fmt.target(v, c.level);
      if (!this.#subtreeEmpty(sub, c.level - 1)) throw this.#overlap(c.va, c.level);
      replaced.push({ table: sub, level: c.level - 1 });
    }

    const pages = this.#allocate(newTables.size);

    // Apply.
    for (const c of chunks) {
      let table = this.root;
      for (let level = this.#fmt.levels; level > c.level; level--) {
        const v = this.#readEntry(table, c.va, level);
        if (this.#fmt.present(v[0] ?? 0)) {
          table = this.#fmt.target(v, level);
          continue;
        }
        const page = pages.pop();
        if (page === undefined) throw new KernelBug(`${this.#fmt.name}: table plan short of pages`);
        this.#writeEntry(table, c.va, level, this.#fmt.tableEntry(page));
        table = page;
      }
      this.#writeEntry(table, c.va, c.level, this.#fmt.leafEntry(c.pa, c.level, prot));
    }
    if (pages.length !== 0) throw new KernelBug(`${this.#fmt.name}: table plan allocated ${pages.length} pages too many`);
    for (const t of replaced) for (const p of this.#tablesUnder(t.table, t.level)) this.#free?.(p);
  }

  /**
   * Unmaps every leaf in [va, va + size); holes are skipped. Returns the
   * bytes unmapped. EINVAL when the range cuts through a large page.
   */
  unmap(va: number, size: number): number {
    this.#checkRange(va, size);
    const leaves = this.#leavesIn(va, size);
    let n = 0;
    for (const l of leaves) {
      if (!this.#mem.write64(l.slot, 0, 0)) throw this.#efault(l.slot);
      n += l.size;
    }
    return n;
  }

  /**
   * Changes the permissions of every leaf in [va, va + size), keeping their
   * accessed/dirty bits. ENOENT if part of the range is not mapped; EINVAL if
   * it cuts through a large page.
   */
  protect(va: number, size: number, prot: PteProt): void {
    this.#checkRange(va, size);
    this.#fmt.leafEntry(0, 1, prot);
    const leaves = this.#leavesIn(va, size);
    let covered = 0;
    for (const l of leaves) covered += l.size;
    if (covered !== size) throw new KernelError(Errno.ENOENT, `[${hex(va)}, +${hex(size)}) is not entirely mapped`);
    for (const l of leaves) {
      const v = this.#fmt.leafEntry(l.pa, l.level, prot);
      v[0] = ((v[0] ?? 0) | this.#fmt.adBits(l.lo)) >>> 0;
      if (!this.#mem.write64(l.slot, v[0], v[1] ?? 0)) throw this.#efault(l.slot);
    }
  }

  /** The leaf mapping `va`, or null. Reads memory, changes nothing (no A/D). */
  lookup(va: number): Mapping | null {
    if (!Number.isInteger(va) || va < this.#fmt.vaMin || va >= this.#fmt.vaEnd) return null;
    let table = this.root;
    for (let level = this.#fmt.levels; level >= 1; level--) {
      const v = this.#readEntry(table, va, level);
      const lo = v[0] ?? 0;
      if (!this.#fmt.present(lo)) return null;
      if (this.#fmt.isLeaf(lo, level)) {
        const s = levelSize(level);
        return { va: Math.floor(va / s) * s, pa: this.#fmt.target(v, level), size: s, prot: this.#fmt.prot(v, level) };
      }
      table = this.#fmt.target(v, level);
    }
    return null;
  }

  /** Every leaf, in ascending input-address order. */
  mappings(): Mapping[] {
    const out: Mapping[] = [];
    for (const l of this.#leavesIn(this.#fmt.vaMin, this.#fmt.vaEnd - this.#fmt.vaMin, true)) {
      const v = new Uint32Array([l.lo, l.hi]);
      out.push({ va: l.va, pa: l.pa, size: l.size, prot: this.#fmt.prot(v, l.level) });
    }
    return out;
  }

  /** Every table page, root first (for the owner to free them at teardown). */
  tablePages(): number[] {
    return this.#tablesUnder(this.root, this.#fmt.levels);
  }

  // --- internals --------------------------------------------------------

  #checkRange(va: number, size: number): void {
    if (!Number.isInteger(va) || !Number.isInteger(size) || size <= 0 || va % PAGE !== 0 || size % PAGE !== 0) {
      throw new KernelError(Errno.EINVAL, `range [${hex(va)}, +${hex(size)}) must be non-empty and 4 KiB aligned`);
    }
    if (va < this.#fmt.vaMin || va + size > this.#fmt.vaEnd) {
      throw new KernelError(Errno.EINVAL, `range [${hex(va)}, +${hex(size)}) is outside what ${this.#fmt.name} tables translate`);
    }
  }

  #checkTablePage(pa: number, what: string): void {
    if (!Number.isInteger(pa) || pa < 0 || pa % TABLE_SIZE !== 0 || !this.#mem.isPopulated(pa)) {
      throw new KernelError(Errno.EINVAL, `${what} at ${hex(pa)} is not a 4 KiB-aligned page of existing memory`);
    }
  }

  #allocate(n: number): number[] {
    const pages: number[] = [];
    for (let i = 0; i < n; i++) {
      const p = this.#alloc();
      if (p === null || !Number.isInteger(p) || p % TABLE_SIZE !== 0 || !this.#mem.isPopulated(p)) {
        for (const q of pages) this.#free?.(q);
        if (p === null) throw new KernelError(Errno.ENOMEM, `${this.#fmt.name}: out of table pages (${i} of ${n} allocated)`);
        this.#free?.(p);
        throw new KernelError(Errno.EINVAL, `allocator returned ${hex(p)}, not a 4 KiB-aligned page of existing memory`);
      }
      pages.push(p);
    }
    // Popped from the end: reverse so tables are used in allocation order (deterministic layouts read better).
    return pages.reverse();
  }

  #slot(table: number, va: number, level: number): number {
    return table + levelIndex(addrLo(va), addrHi(va), level) * ENTRY_SIZE;
  }

  #readEntry(table: number, va: number, level: number): Uint32Array {
    const slot = this.#slot(table, va, level);
    if (!this.#mem.read64(slot, this.#e)) throw this.#efault(slot);
    return new Uint32Array([this.#e.lo, this.#e.hi]);
  }

  #writeEntry(table: number, va: number, level: number, v: Uint32Array): void {
    const slot = this.#slot(table, va, level);
    if (!this.#mem.write64(slot, v[0] ?? 0, v[1] ?? 0)) throw this.#efault(slot);
  }

  #efault(pa: number): KernelError {
    return new KernelError(Errno.EFAULT, `${this.#fmt.name}: page-table memory at ${hex(pa)} does not exist`);
  }

  #overlap(va: number, level: number): KernelError {
    return new KernelError(Errno.EEXIST, `${hex(va)} is already mapped (level ${level})`);
  }

  /** Whether no leaf exists in the table whose entries are at `level`, or below it. */
  #subtreeEmpty(table: number, level: number): boolean {
    for (let i = 0; i < 512; i++) {
      const slot = table + i * ENTRY_SIZE;
      if (!this.#mem.read64(slot, this.#e)) throw this.#efault(slot);
      const lo = this.#e.lo;
      if (!this.#fmt.present(lo)) continue;
      if (this.#fmt.isLeaf(lo, level)) return false;
      const v = new Uint32Array([lo, this.#e.hi]);
      if (!this.#subtreeEmpty(this.#fmt.target(v, level), level - 1)) return false;
    }
    return true;
  }

  /** Table pages reachable from the table whose entries are at `level`, that table first. */
  #tablesUnder(table: number, level: number): number[] {
    const out = [table];
    if (level === 1) return out;
    for (let i = 0; i < 512; i++) {
      const slot = table + i * ENTRY_SIZE;
      if (!this.#mem.read64(slot, this.#e)) throw this.#efault(slot);
      const lo = this.#e.lo;
      if (!this.#fmt.present(lo) || this.#fmt.isLeaf(lo, level)) continue;
      const v = new Uint32Array([lo, this.#e.hi]);
      out.push(...this.#tablesUnder(this.#fmt.target(v, level), level - 1));
    }
    return out;
  }

  /**
   * The leaves overlapping [va, va + size), in address order. Unless
   * `partialOk`, a large leaf sticking out of the range is EINVAL.
   */
  #leavesIn(va: number, size: number, partialOk = false): Leaf[] {
    const out: Leaf[] = [];
    this.#collect(this.root, this.#fmt.levels, va, va + size, partialOk, out);
    return out;
  }

  #collect(table: number, level: number, start: number, end: number, partialOk: boolean, out: Leaf[]): void {
    const s = levelSize(level);
    // Upper-half addresses (negative) come first in address order but sit in the upper half of the top table.
    for (let cur = start; cur < end; ) {
      const base = Math.floor(cur / s) * s;
      const next = base + s;
      const slot = this.#slot(table, cur, level);
      if (!this.#mem.read64(slot, this.#e)) throw this.#efault(slot);
      const lo = this.#e.lo;
      const hi = this.#e.hi;
      if (this.#fmt.present(lo)) {
        const v = new Uint32Array([lo, hi]);
        if (this.#fmt.isLeaf(lo, level)) {
          if (!partialOk && (base < start || next > end)) {
            throw new KernelError(Errno.EINVAL, `[${hex(start)}, ${hex(end)}) cuts through the ${hex(s)} page at ${hex(base)}`);
          }
          out.push({ slot, va: base, pa: this.#fmt.target(v, level), size: s, level, lo, hi });
        } else {
          this.#collect(this.#fmt.target(v, level), level - 1, Math.max(cur, base), Math.min(end, next), partialOk, out);
        }
      }
      cur = next;
    }
  }
}

interface Leaf {
  readonly slot: number;
  readonly va: number;
  readonly pa: number;
  readonly size: number;
  readonly level: number;
  readonly lo: number;
  readonly hi: number;
}

function hex(n: number): string {
  return n < 0 ? "-0x" + (-n).toString(16) : "0x" + n.toString(16);
}
