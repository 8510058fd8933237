import type { Layout } from "@vsva/pgtable";

/**
 * Storage for a register window with guest-visible access rules derived from
 * the register layouts (QEMU's "reset value, writable mask, W1C mask" idea,
 * but computed from the one declaration in regs.ts rather than written twice).
 *
 * Software-side accesses (`read32`/`write32`) apply the rules; the hardware
 * model reads and writes registers through `view()` and the layout helpers,
 * bypassing them, as the silicon does. The VT-d and SMMUv3 units both use it.
 */
export class RegisterFile {
  readonly #dw: Uint32Array;
  readonly #writable: Uint32Array;
  readonly #w1c: Uint32Array;
  readonly #readable: Uint32Array;
  /** Per dword: offset of the register it belongs to, or -1 for a hole. */
  readonly #owner: Int32Array;
  readonly #names = new Map<number, string>();

  /** A window of `windowBytes` (a multiple of 4) of MMIO space; everything undefined in it is a hole. */
  constructor(readonly windowBytes: number) {
    if (!Number.isInteger(windowBytes) || windowBytes <= 0 || windowBytes % 4 !== 0) {
      throw new RangeError(`register window of ${windowBytes} bytes is not a positive multiple of 4`);
    }
    const n = windowBytes / 4;
    this.#dw = new Uint32Array(n);
    this.#writable = new Uint32Array(n);
    this.#w1c = new Uint32Array(n);
    this.#readable = new Uint32Array(n);
    this.#owner = new Int32Array(n).fill(-1);
  }

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
    if (!this.#valid(offset)) return -1;
    return this.#owner[offset >>> 2] ?? -1;
  }

  nameOf(offset: number): string | undefined {
    return this.#names.get(offset);
  }

  /** A dword-aligned offset inside the window (anything else is a hole, whatever software passes). */
  #valid(offset: number): boolean {
    return Number.isInteger(offset) && offset >= 0 && offset < this.windowBytes && (offset & 3) === 0;
  }

  /** Software read: write-only and reserved bits read as zero, holes read as zero. */
  read32(offset: number): number {
    if (!this.#valid(offset)) return 0;
    const w = offset >>> 2;
    return ((this.#dw[w] ?? 0) & (this.#readable[w] ?? 0)) >>> 0;
  }

  /**
   * Software write of one dword: writable bits take the value, RW1C bits set
   * in `value` clear, everything else keeps its value. Returns the owning
   * register's offset (for side effects) or -1 for a hole or a misaligned access.
   */
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
