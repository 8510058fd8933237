import { KernelBug } from "./error.js";

/**
 * Tracks whether the simulated CPU is in atomic context (a spinlock held, an
 * atomic notifier running). Anything that may sleep calls {@link mightSleep},
 * which is the kernel's `might_sleep()` check: sleeping in atomic context is a
 * bug ("BUG: sleeping function called from invalid context"), so it raises a
 * {@link KernelBug} rather than a recoverable error.
 */
export class AtomicContext {
  #depth = 0;
  readonly #why: string[] = [];

  get depth(): number {
    return this.#depth;
  }

  get inAtomic(): boolean {
    return this.#depth > 0;
  }

  enter(why: string): void {
    this.#depth++;
    this.#why.push(why);
  }

  exit(): void {
    if (this.#depth === 0) throw new KernelBug("atomic context exited more often than entered");
    this.#depth--;
    this.#why.pop();
  }

  /** Runs `fn` in atomic context, leaving it however `fn` ends. */
  run<T>(why: string, fn: () => T): T {
    this.enter(why);
    try {
      return fn();
    } finally {
      this.exit();
    }
  }

  mightSleep(what: string): void {
    if (this.#depth > 0) {
      throw new KernelBug(`sleeping function called from invalid context: ${what} inside ${this.#why.join(" > ")}`);
    }
  }
}
