// Helpers for tests of packages built on the kernel (subpath `@vsva/kernel/testing`).
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { isKernelError } from "./error.js";
import type { FaultInjector, FaultPointRegistry } from "./fault-inject.js";

/**
 * Runs `fn` and returns 0 if it returned, or the errno of the KernelError it
 * threw: the kernel's "0 or -errno" convention, so a test reads
 * `expect(errnoOf(() => bind())).toBe(Errno.EBUSY)`. Anything else thrown (a
 * TypeError, a KernelBug) is rethrown: a crash must never pass for an errno.
 */
export function errnoOf(fn: () => unknown): number {
  try {
    fn();
  } catch (e) {
    if (isKernelError(e)) return e.errno;
    throw e;
  }
  return 0;
}

/**
 * Runs `fn` in a fail-nth sweep: its value, or null when it failed with a
 * KernelError (an acceptable outcome of an injected failure). Anything else
 * thrown is rethrown: an injected failure must never become a crash.
 */
export function tolerate<T>(fn: () => T): T | null {
  try {
    return fn();
  } catch (e) {
    if (!isKernelError(e)) throw e;
    return null;
  }
}

/**
 * Fail-nth coverage across the runs of one or more sweeps: record each
 * run's fault injector, then ask which declared points no run failed and
 * which points met were never declared. Both lists sorted, so a test can
 * `expect(cov.missing()).toEqual([])`.
 */
export class FaultCoverage {
  readonly #declared: readonly FaultPointRegistry[];
  readonly #failed = new Set<string>();
  readonly #met = new Set<string>();
  #runs = 0;

  /** `own`: the points this coverage must see failed; `known`: every registry a run may meet (own included). */
  constructor(
    readonly own: FaultPointRegistry,
    known: readonly FaultPointRegistry[] = [],
  ) {
    this.#declared = [own, ...known];
  }

  /** Notes what one run met (every point hit) and failed (the injected ones). */
  record(faults: FaultInjector): void {
    this.#runs++;
    for (const p of faults.counts.keys()) this.#met.add(p);
    for (const p of faults.injected) this.#failed.add(p);
  }

  get runs(): number {
    return this.#runs;
  }

  /** The points of `own` that no recorded run failed. */
  missing(): string[] {
    return this.own.points.filter((p) => !this.#failed.has(p)).sort();
  }

  /** Points a run met that no registry given declares. */
  undeclared(): string[] {
    return [...this.#met].filter((p) => !this.#declared.some((r) => r.has(p))).sort();
  }
}

/**
 * The point names passed as string literals to `.inject(...)` (or
 * `.shouldFail(...)`, for a step that degrades instead of throwing) in a source
 * text: what a package's code injects, for checking against its registry.
 * Names built at run time are not seen here; {@link FaultCoverage.undeclared}
 * catches those once a sweep meets them.
 */
export function injectedPointLiterals(source: string): string[] {
  const out: string[] = [];
  for (const m of source.matchAll(/\.(?:inject|shouldFail)\(\s*(["'])([^"'\n]+)\1/g)) {
    const name = m[2];
    if (name !== undefined) out.push(name);
  }
  return out;
}

/** {@link injectedPointLiterals} over every non-test `.ts` file below `srcDir`, deduplicated and sorted. */
export function sourceFaultPoints(srcDir: string): string[] {
  const names = new Set<string>();
  for (const entry of readdirSync(srcDir, { recursive: true, encoding: "utf8" })) {
    if (!entry.endsWith(".ts") || entry.endsWith(".test.ts")) continue;
    for (const n of injectedPointLiterals(readFileSync(join(srcDir, entry), "utf8"))) names.add(n);
  }
  return [...names].sort();
}
