import type { Layout } from "../layout.js";
import { REG_WINDOW } from "./regs.js";

/**
 * Storage for a register window with guest-visible access rules derived from
 * the register layouts (QEMU's "reset value, writable mask, W1C mask" idea,
 * but computed from the one declaration in regs.ts rather than written twice).
 *
 * Software-side accesses (`read32`/`write32`) apply the rules; the hardware
 * model reads and writes registers through `view()` and the layout helpers,
 * bypassing them, as the silicon does.
 */
export class RegisterFile {
  readonly #dw = new Uint32Array(REG_WINDOW / 4);
  readonly #writable = new Uint32Array(REG_WINDOW / 4);
  readonly #w1c = new Uint32Array(REG_WINDOW / 4);
  readonly #readable = new Uint32Array(REG_WINDOW / 4);
  /** Per dword: offset of the register it belongs to, or -1 for a hole. */
  readonly #owner = new Int32Array(REG_WINDOW / 4).fill(-1);
  readonly #names = new Map<number, string>();

  /** Declares a register at `offset` (4-byte aligned; 8-byte aligned for 64-bit and wider). */
  define(offset: number, layout: Layout<string>): Uint32Array {
    const first = offset >>> 2;
    if (offset % 4 !== 0 || first + layout.dwords > this.#dw.length) {
      throw new RangeError(`${layout.name} at 0x${offset.toString(16)} does not fit the register window`);
    }
    for (let i = 0; i < layout.dwords; i++) {
      if (this.#owner[first + i] !== -1) throw new RangeError(`${layout.name} at 0x${offset.toString(16)} overlaps another register`);
      this.#owner[first + i] = offset;
    }
    for (const f of layout.fieldNames) {
      const s = layout.spec(f);
      for (let b = s.lsb; b <= s.msb; b++) {
        const w = first + (b >>> 5);
        const m = (1 << (b & 31)) >>> 0;
        switch (s.access) {
          case "RW":
          case "RW1S":
            this.#writable[w] = ((this.#writable[w] ?? 0) | m) >>> 0;
            this.#readable[w] = ((this.#readable[w] ?? 0) | m) >>> 0;
            break;
          case "RO":
            this.#readable[w] = ((this.#readable[w] ?? 0) | m) >>> 0;
            break;
          case "RW1C":
          case "RW1CS":
            this.#w1c[w] = ((this.#w1c[w] ?? 0) | m) >>> 0;
            this.#readable[w] = ((this.#readable[w] ?? 0) | m) >>> 0;
            break;
          case "WO":
            this.#writable[w] = ((this.#writable[w] ?? 0) | m) >>> 0;
            break;
          case "RsvdZ":
          case "RsvdP":
            break;
        }
      }
    }
    this.#names.set(offset, layout.name);
    return this.view(offset, layout.dwords);
  }

  /** A live view of `dwords` dwords at `offset`, for the layout helpers. */
  view(offset: number, dwords: number): Uint32Array {
    return this.#dw.subarray(offset >>> 2, (offset >>> 2) + dwords);
  }

  /** Offset of the register that holds the dword at `offset`, or -1. */
  ownerOf(offset: number): number {
    if (!RegisterFile.#valid(offset)) return -1;
    return this.#owner[offset >>> 2] ?? -1;
  }

  nameOf(offset: number): string | undefined {
    return this.#names.get(offset);
  }

  /** A dword-aligned offset inside the window (anything else is a hole, whatever software passes). */
  static #valid(offset: number): boolean {
    return Number.isInteger(offset) && offset >= 0 && offset < REG_WINDOW && (offset & 3) === 0;
  }

  /** Software read: write-only and reserved bits read as zero, holes read as zero. */
  read32(offset: number): number {
    if (!RegisterFile.#valid(offset)) return 0;
    const w = offset >>> 2;
    return ((this.#dw[w] ?? 0) & (this.#readable[w] ?? 0)) >>> 0;
  }

  /**
   * Software write of one dword: writable bits take the value, RW1C bits set
   * in `value` clear, everything else keeps its value. Returns the owning
   * register's offset (for side effects) or -1 for a hole or a misaligned access.
   */
  write32(offset: number, value: number): number {
    if (!RegisterFile.#valid(offset)) return -1;
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
}
