import type { Actor, TraceBus } from "./trace.js";

/**
 * `printk_ratelimited` for failures that user space or a guest can trigger: a
 * malicious guest must not be able to flood the host log. Per call-site key,
 * at most `burst` messages per `intervalNs` of virtual time are emitted; the
 * rest are counted and the count is reported with the next emitted message.
 */
export interface RateLimitOptions {
  readonly intervalNs?: number;
  readonly burst?: number;
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
  readonly lines: LogLine[] = [];
  readonly #windows = new Map<string, Window>();
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
  }

  /** Emits a warning unless this key is over its budget; false when suppressed. */
  warn(key: string, message: string, actor: Actor = "KERNEL"): boolean {
    const now = this.clock.now();
    let w = this.#windows.get(key);
    if (w === undefined || now - w.start >= this.#interval) {
      w = { start: now, printed: 0, suppressed: w?.suppressed ?? 0 };
      this.#windows.set(key, w);
    }
    if (w.printed >= this.#burst) {
      w.suppressed++;
      return false;
    }
    w.printed++;
    const line: LogLine = { time: now, actor, key, message, suppressedBefore: w.suppressed };
    w.suppressed = 0;
    this.lines.push(line);
    this.trace?.emit("kernel.log", actor, {}, { level: "warn", message, suppressed: line.suppressedBefore });
    return true;
  }

  /** Messages suppressed for `key` and not yet reported. */
  suppressed(key: string): number {
    return this.#windows.get(key)?.suppressed ?? 0;
  }
}
