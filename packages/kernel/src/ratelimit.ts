import { Errno } from "./errno.js";
import { KernelError } from "./error.js";
import type { Actor, TraceBus } from "./trace.js";

/**
 * `printk_ratelimited` for failures that user space or a guest can trigger: a
 * malicious guest must not be able to flood the host log. Per call-site key,
 * at most `burst` messages per `intervalNs` of virtual time are emitted; the
 * rest are counted and the count is reported with the next emitted message.
 *
 * The lines kept are a ring, like the kernel's log buffer: the newest
 * `capacity` lines, and a count of the older ones that were dropped, so a
 * long run's log stays bounded (the trace bus still sees every line).
 *
 * The per-key windows are bounded too: keys carry device and mdev names, so
 * a run that creates and removes devices makes new keys without end. A window
 * whose interval has passed with nothing suppressed is the same as no window
 * (the next message opens a fresh one), so such windows are swept whenever
 * the map has doubled since the last sweep; only keys that are live (inside
 * their interval) or owe a suppressed count stay.
 */
export interface RateLimitOptions {
  readonly intervalNs?: number;
  readonly burst?: number;
  /** Lines kept (default 1024); older ones are dropped and counted in {@link RateLimitedLog.dropped}. */
  readonly capacity?: number;
}

interface Window {
  start: number;
  printed: number;
  suppressed: number;
}

export interface LogLine {
  readonly time: number;
  readonly actor: Actor;
  readonly key: string;
  readonly message: string;
  readonly suppressedBefore: number;
}

export class RateLimitedLog {
  readonly #ring: LogLine[] = [];
  /** Where the next line goes once the ring is full (its oldest line). */
  #next = 0;
  #dropped = 0;
  readonly #capacity: number;
  readonly #windows = new Map<string, Window>();
  /** Window count at which the next sweep of idle windows runs. */
  #sweepAt = 64;
  readonly #interval: number;
  readonly #burst: number;

  constructor(
    private readonly clock: { now(): number },
    private readonly trace?: TraceBus,
    opts: RateLimitOptions = {},
  ) {
    // The kernel's DEFAULT_RATELIMIT_INTERVAL (5 s) and DEFAULT_RATELIMIT_BURST (10).
    this.#interval = opts.intervalNs ?? 5e9;
    this.#burst = opts.burst ?? 10;
    this.#capacity = opts.capacity ?? 1024;
    if (!Number.isSafeInteger(this.#capacity) || this.#capacity < 1) {
      throw new KernelError(Errno.EINVAL, `log capacity ${String(this.#capacity)} is not a positive integer`);
    }
  }

  /** The lines kept, oldest first (at most `capacity`). */
  get lines(): readonly LogLine[] {
    if (this.#ring.length < this.#capacity || this.#next === 0) return this.#ring;
    return [...this.#ring.slice(this.#next), ...this.#ring.slice(0, this.#next)];
  }

  /** Lines emitted but no longer kept (the ring was full). */
  get dropped(): number {
    return this.#dropped;
  }

  /** Emits a warning unless this key is over its budget; false when suppressed. */
  warn(key: string, message: string, actor: Actor = "KERNEL"): boolean {
    const now = this.clock.now();
    let w = this.#windows.get(key);
    if (w === undefined || now - w.start >= this.#interval) {
      const fresh = w === undefined;
      w = { start: now, printed: 0, suppressed: w?.suppressed ?? 0 };
      this.#windows.set(key, w);
      if (fresh && this.#windows.size >= this.#sweepAt) this.#sweepIdle(now);
    }
    if (w.printed >= this.#burst) {
      w.suppressed++;
      return false;
    }
    w.printed++;
    const line: LogLine = { time: now, actor, key, message, suppressedBefore: w.suppressed };
    w.suppressed = 0;
    if (this.#ring.length < this.#capacity) {
      this.#ring.push(line);
    } else {
      this.#ring[this.#next] = line;
      this.#next = (this.#next + 1) % this.#capacity;
      this.#dropped++;
    }
    this.trace?.emit("kernel.log", actor, {}, { level: "warn", message, suppressed: line.suppressedBefore });
    return true;
  }

  /** Keys with a window kept (live, or owing a suppressed count). */
  get trackedKeys(): number {
    return this.#windows.size;
  }

  /** Drops windows that are over and owe nothing; amortised O(1) per new key. */
  #sweepIdle(now: number): void {
    for (const [k, w] of this.#windows) {
      if (now - w.start >= this.#interval && w.suppressed === 0) this.#windows.delete(k);
    }
    this.#sweepAt = Math.max(64, 2 * this.#windows.size);
  }

  /** Messages suppressed for `key` and not yet reported. */
  suppressed(key: string): number {
    return this.#windows.get(key)?.suppressed ?? 0;
  }
}
