import { Errno } from "./errno.js";
import { KernelError } from "./error.js";
import type { TraceBus } from "./trace.js";

/**
 * Named fault-injection points (after Linux's fault-injection framework and iommufd's fail_nth). Every allocation or
 * fallible step the kernel could fail calls {@link FaultInjector.inject} with
 * its point name. Two ways to arm:
 *
 * - `failNth(n)`: the n-th hit counted from arming, whatever its point, fails
 *   once. This is the `iommufd_fail_nth` technique: run a path with n = 1, 2, …
 *   until a run completes without an injection, checking rollback each time.
 * - `failPoint(name, {nth, times})`: hits of one named point fail.
 *
 * Counters record every point seen, so a sweep knows the path's points.
 */
/**
 * The fault-injection points one package declares: every name its code
 * passes to {@link FaultInjector.inject}, listed once. A package's fail-nth
 * coverage test checks the list both ways: each declared point is failed by
 * some sweep (a point no sweep reaches is a rollback nobody tested), and
 * each point a sweep meets is declared somewhere (a new point cannot slip
 * in unlisted).
 */
export interface FaultPointRegistry<P extends string = string> {
  /** The package that declares them ("@vsva/ioasid"). */
  readonly owner: string;
  readonly points: readonly P[];
  /** Whether `point` is one of these. */
  has(point: string): point is P;
}

/** Declares a package's points. EINVAL for an empty or repeated name. */
export function declareFaultPoints<const P extends string>(owner: string, points: readonly P[]): FaultPointRegistry<P> {
  const set = new Set<string>();
  for (const p of points) {
    if (p.length === 0 || set.has(p)) throw new KernelError(Errno.EINVAL, `${owner}: fault point '${p}' is empty or declared twice`);
    set.add(p);
  }
  const frozen = Object.freeze([...points]);
  return Object.freeze({ owner, points: frozen, has: (point: string): point is P => set.has(point) });
}

export interface FailPointSpec {
  /** Fail from the nth hit of this point on (1 = the first). */
  readonly nth?: number;
  /** How many consecutive hits fail (default 1; Infinity = all). */
  readonly times?: number;
  readonly errno?: Errno;
}

interface Armed {
  nth: number;
  remaining: number;
  errno: Errno | undefined;
  seen: number;
}

export class FaultInjector {
  readonly #counts = new Map<string, number>();
  #totalHits = 0;
  #nth: { target: number; seen: number } | null = null;
  readonly #points = new Map<string, Armed>();
  readonly injected: string[] = [];

  constructor(private readonly trace?: TraceBus) {}

  /** Hits per point since construction (or {@link resetCounters}). */
  get counts(): ReadonlyMap<string, number> {
    return this.#counts;
  }

  get totalHits(): number {
    return this.#totalHits;
  }

  get armed(): boolean {
    return this.#nth !== null || this.#points.size > 0;
  }

  failNth(n: number): void {
    if (!Number.isInteger(n) || n < 1) throw new KernelError(Errno.EINVAL, `fail-nth wants n >= 1, got ${n}`);
    this.#nth = { target: n, seen: 0 };
  }

  failPoint(name: string, spec: FailPointSpec = {}): void {
    const nth = spec.nth ?? 1;
    const times = spec.times ?? 1;
    if (!Number.isInteger(nth) || nth < 1 || !(times >= 1)) {
      throw new KernelError(Errno.EINVAL, `bad fail spec for ${name}: nth=${nth} times=${times}`);
    }
    this.#points.set(name, { nth, remaining: times, errno: spec.errno, seen: 0 });
  }

  disarm(): void {
    this.#nth = null;
    this.#points.clear();
  }

  resetCounters(): void {
    this.#counts.clear();
    this.#totalHits = 0;
    this.injected.length = 0;
  }

  /** Counts a hit of `point`; true if this hit must fail. */
  shouldFail(point: string): boolean {
    this.#counts.set(point, (this.#counts.get(point) ?? 0) + 1);
    this.#totalHits++;
    let fail = false;
    if (this.#nth !== null) {
      this.#nth.seen++;
      if (this.#nth.seen === this.#nth.target) {
        fail = true;
        this.#nth = null;
      }
    }
    const p = this.#points.get(point);
    if (p !== undefined) {
      p.seen++;
      if (p.seen >= p.nth && p.remaining > 0) {
        fail = true;
        p.remaining--;
        if (p.remaining === 0) this.#points.delete(point);
      }
    }
    if (fail) this.injected.push(point);
    return fail;
  }

  /** Throws `KernelError(errno)` (ENOMEM by default, as most kernel allocations) when this hit must fail. */
  inject(point: string, errno: Errno = Errno.ENOMEM): void {
    const override = this.#points.get(point)?.errno;
    if (!this.shouldFail(point)) return;
    const e = override ?? errno;
    this.trace?.emit("kernel.fault-injected", "KERNEL", {}, { point, errno: e, hit: this.#counts.get(point) ?? 0 });
    throw new KernelError(e, `fault injected at ${point}`);
  }
}
