import { KernelBug } from "./error.js";

/**
 * A `struct kref`/`refcount_t`-style reference count. It refuses what the
 * kernel's refcount_t WARNs about: an increment from zero (a use after free)
 * and a decrement below zero. Both are kernel bugs, not user errors.
 */
export class Kref {
  #count: number;

  constructor(
    initial = 1,
    readonly what = "kref",
  ) {
    if (!Number.isInteger(initial) || initial < 0) throw new KernelBug(`${what}: bad initial count ${initial}`);
    this.#count = initial;
  }

  read(): number {
    return this.#count;
  }

  get(): void {
    if (this.#count === 0) throw new KernelBug(`${this.what}: addition on 0; use-after-free`);
    this.#count++;
  }

  /** `kref_get_unless_zero`: takes a reference only if the object is still live. */
  getUnlessZero(): boolean {
    if (this.#count === 0) return false;
    this.#count++;
    return true;
  }

  /** Drops one reference; true when this was the last one (the caller releases). */
  put(): boolean {
    if (this.#count === 0) throw new KernelBug(`${this.what}: underflow; use-after-free`);
    this.#count--;
    return this.#count === 0;
  }
}
