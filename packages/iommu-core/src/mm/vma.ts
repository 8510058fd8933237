import { formatProt } from "./prot.js";

/** A virtual memory area: [start, end), page aligned, with one protection (`struct vm_area_struct`, anonymous only). */
export interface Vma {
  readonly start: number;
  readonly end: number;
  readonly prot: number;
}

/**
 * The VMAs of one mm, sorted and non-overlapping. Neighbours with the same
 * protection are merged, as Linux merges compatible anonymous VMAs, so the
 * list is canonical: the same mappings always give the same list (the
 * property test compares it with a model page by page).
 */
export class VmaList {
  #vmas: Vma[] = [];

  get length(): number {
    return this.#vmas.length;
  }

  all(): readonly Vma[] {
    return this.#vmas;
  }

  /** The VMA containing `va` (`find_vma` + the containment check). */
  find(va: number): Vma | undefined {
    let lo = 0;
    let hi = this.#vmas.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const v = this.#vmas[mid];
      if (v === undefined) break;
      if (va < v.start) hi = mid - 1;
      else if (va >= v.end) lo = mid + 1;
      else return v;
    }
    return undefined;
  }

  /** VMAs overlapping [start, end), in order. */
  overlapping(start: number, end: number): Vma[] {
    return this.#vmas.filter((v) => v.start < end && v.end > start);
  }

  /** Whether [start, end) is entirely inside VMAs (no hole). */
  covers(start: number, end: number): boolean {
    let cur = start;
    for (const v of this.overlapping(start, end)) {
      if (v.start > cur) return false;
      cur = v.end;
    }
    return cur >= end;
  }

  /**
   * Whether changing [start, end) would cut a VMA in two places or at one
   * side, i.e. need a new `vm_area_struct` (`split_vma` can fail there).
   */
  needsSplit(start: number, end: number): boolean {
    return this.#vmas.some((v) => (v.start < start && v.end > start) || (v.start < end && v.end > end));
  }

  /** The lowest gap of `len` bytes in [base, limit), or -1. */
  findGap(len: number, base: number, limit: number): number {
    let cur = base;
    for (const v of this.#vmas) {
      if (v.end <= cur) continue;
      if (v.start - cur >= len) break;
      cur = Math.max(cur, v.end);
    }
    return cur + len <= limit ? cur : -1;
  }

  /** Removes [start, end) from every VMA, splitting as needed. */
  remove(start: number, end: number): void {
    const out: Vma[] = [];
    for (const v of this.#vmas) {
      if (v.end <= start || v.start >= end) {
        out.push(v);
        continue;
      }
      if (v.start < start) out.push({ start: v.start, end: start, prot: v.prot });
      if (v.end > end) out.push({ start: end, end: v.end, prot: v.prot });
    }
    this.#vmas = out;
  }

  /** Adds [start, end) with `prot`, which must not overlap any VMA, merging with equal neighbours. */
  insert(start: number, end: number, prot: number): void {
    const out = this.#vmas.filter((v) => v.end <= start || v.start >= end);
    out.push({ start, end, prot });
    out.sort((a, b) => a.start - b.start);
    this.#vmas = merge(out);
  }

  /** Sets the protection of [start, end), which must be covered. */
  setProt(start: number, end: number, prot: number): void {
    this.remove(start, end);
    this.insert(start, end, prot);
  }

  clear(): void {
    this.#vmas = [];
  }

  toString(): string {
    return this.#vmas.map((v) => `[0x${v.start.toString(16)}-0x${v.end.toString(16)} ${formatProt(v.prot)}]`).join(" ");
  }
}

function merge(sorted: Vma[]): Vma[] {
  const out: Vma[] = [];
  for (const v of sorted) {
    const last = out[out.length - 1];
    if (last?.end === v.start && last.prot === v.prot) out[out.length - 1] = { start: last.start, end: v.end, prot: v.prot };
    else out.push(v);
  }
  return out;
}
