/**
 * The free choices of one scenario run (where a device sits, where a buffer
 * is mapped, which PASID a VMM asks for), drawn from the run's seed and
 * recorded so the run can be reproduced: the same seed makes the same
 * choices, byte for byte, and a different seed makes different ones.
 *
 * The generator is mulberry32: 32 bits of state, a full period, and no
 * dependence on anything but the seed.
 */
export class SeededChoices {
  #state: number;
  readonly #made: string[] = [];

  constructor(readonly seed: number) {
    // Fold the seed (any safe integer) into 32 bits; the golden-ratio offset keeps seed 0 from being a fixed point.
    this.#state = (Math.floor(seed / 0x1_0000_0000) ^ seed ^ 0x9e37_79b9) >>> 0;
  }

  /** What was chosen so far, in order, each as "what = value". */
  get made(): readonly string[] {
    return this.#made;
  }

  /**
   * An integer in [lo, hi] that is a multiple of `align` (lo must be one),
   * recorded under `what` and shown by `show` (hexadecimal by default).
   */
  int(what: string, lo: number, hi: number, opts: { align?: number; show?: (v: number) => string } = {}): number {
    const align = opts.align ?? 1;
    if (!Number.isSafeInteger(lo) || !Number.isSafeInteger(hi) || hi < lo || lo % align !== 0) {
      throw new RangeError(`${what}: no multiple of ${align} in [${lo}, ${hi}] to choose from`);
    }
    const count = Math.floor((hi - lo) / align) + 1;
    // Two draws make 53 bits, enough for any range of safe integers without bias worth measuring.
    const r = (this.#next() * 0x20_0000 + (this.#next() >>> 11)) / 2 ** 53;
    const v = lo + Math.floor(r * count) * align;
    this.#made.push(`${what} = ${(opts.show ?? hexString)(v)}`);
    return v;
  }

  #next(): number {
    this.#state = (this.#state + 0x6d2b_79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }
}

function hexString(v: number): string {
  return `0x${v.toString(16)}`;
}
