import type { Layout } from "../layout.js";

/**
 * Storage for a register window with guest-visible access rules derived from
 * the register layouts: RW and RW1S bits are writable, RW1C bits clear on a
 * written 1, RO bits only read, WO bits only write, holes read zero.
 * The hardware model bypasses the rules through `define()`'s live views.
 * (The same idea as the VT-d unit's register file, for a window of any size.)
 */
export class SmmuRegisterFile {
  readonly #dw: Uint32Array;
  readonly #writable: Uint32Array;
  readonly #w1c: Uint32Array;
  readonly #readable: Uint32Array;
  /** Per dword: offset of the register it belongs to, or -1 for a hole. */
  readonly #owner: Int32Array;

  constructor(readonly windowBytes: number) {
    const n = windowBytes / 4;
    this.#dw = new Uint32Array(n);
    this.#writable = new Uint32Array(n);
    this.#w1c = new Uint32Array(n);
    this.#readable = new Uint32Array(n);
    this.#owner = new Int32Array(n).fill(-1);
  }

  define(offset: number, layout: Layout<string>): Uint32Array {
    const first = offset >>> 2;
    if (offset % 4 !== 0 || first + layout.dwords > this.#dw.length) {
      throw new RangeError(`${layout.name} at 0x${offset.toString(16)} does not fit the register window`);
    }
    for (let i = 0; i < layout.dwords; i++) {
      if (this.#owner[first + i] !== -1) throw new RangeError(`${layout.name} at 0x${offset.toString(16)} overlaps another register`);
      this.#owner[first + i] = offset;
    }
    const or = (a: Uint32Array, w: number, m: number): void => {
      a[w] = ((a[w] ?? 0) | m) >>> 0;
    };
    for (const f of layout.fieldNames) {
      const s = layout.spec(f);
      for (let b = s.lsb; b <= s.msb; b++) {
        const w = first + (b >>> 5);
        const m = (1 << (b & 31)) >>> 0;
        if (s.access === "RW" || s.access === "RW1S") {
          or(this.#writable, w, m);
          or(this.#readable, w, m);
        } else if (s.access === "RO") or(this.#readable, w, m);
        else if (s.access === "RW1C" || s.access === "RW1CS") {
          or(this.#w1c, w, m);
          or(this.#readable, w, m);
        } else if (s.access === "WO") or(this.#writable, w, m);
      }
    }
    return this.#dw.subarray(first, first + layout.dwords);
  }

  #valid(offset: number): boolean {
    return Number.isInteger(offset) && offset >= 0 && offset < this.windowBytes && (offset & 3) === 0;
  }

  ownerOf(offset: number): number {
    return this.#valid(offset) ? (this.#owner[offset >>> 2] ?? -1) : -1;
  }

  read32(offset: number): number {
    if (!this.#valid(offset)) return 0;
    const w = offset >>> 2;
    return ((this.#dw[w] ?? 0) & (this.#readable[w] ?? 0)) >>> 0;
  }

  /** Software write of one dword; returns the owning register's offset, or -1 for a hole. */
  write32(offset: number, value: number): number {
    if (!this.#valid(offset)) return -1;
    const w = offset >>> 2;
    const owner = this.#owner[w] ?? -1;
    if (owner === -1) return -1;
    const old = this.#dw[w] ?? 0;
    const wm = this.#writable[w] ?? 0;
    const cm = this.#w1c[w] ?? 0;
    const v = value >>> 0;
    this.#dw[w] = (((old & ~wm) | (v & wm)) & ~(v & cm)) >>> 0;
    return owner;
  }

  /** The raw stored dword (hardware view). */
  raw32(offset: number): number {
    return this.#valid(offset) ? (this.#dw[offset >>> 2] ?? 0) : 0;
  }

  /** Restores a raw dword (for writes the unit refuses, like a producer's pointer written while its queue runs). */
  setRaw32(offset: number, value: number): void {
    if (this.#valid(offset)) this.#dw[offset >>> 2] = value >>> 0;
  }
}
