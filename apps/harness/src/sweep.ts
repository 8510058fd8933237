import { errnoName } from "@vsva/kernel";
import { type HostScenarioDef, runHostScenario } from "./world/host-scenario.js";
import { CRASH_ROW } from "./scenarios/guest-crash.js";

/**
 * The fail-nth sweep (iommufd_fail_nth): run a scenario with the n-th
 * fault-injection hit failing, for n = 1, 2, … until a run reaches no n-th
 * hit. Every run must end cleanly: the step that met the injected failure
 * returns the kernel's errno, everything set up so far is rolled back by the
 * scenario's cleanups and the host's teardown, nothing leaks, no invariant
 * breaks, nothing oopses.
 */
export interface SweepRun {
  readonly n: number;
  readonly injected: string | null;
  readonly errno: string | null;
  readonly violations: readonly string[];
}

export interface SweepResult {
  readonly scenario: string;
  readonly runs: readonly SweepRun[];
  readonly ok: boolean;
}

/** A bound on n, far above any path here, so a scenario that injects forever cannot hang the sweep. */
const MAX_N = 2000;

export function sweep(def: HostScenarioDef, platform?: string): SweepResult {
  const runs: SweepRun[] = [];
  for (let n = 1; n <= MAX_N; n++) {
    const r = runHostScenario(def, { seed: 1, failNth: n, ...(platform === undefined ? {} : { platform }) });
    runs.push({ n, injected: r.injected, errno: r.error === null ? null : errnoName(r.error.errno), violations: r.violations });
    if (r.injected === null) break;
  }
  const last = runs.at(-1);
  const finished = last?.injected === null;
  const ok = finished && runs.every((r) => r.violations.length === 0);
  return { scenario: def.name, runs, ok };
}

export function formatSweep(s: SweepResult): string {
  const lines = [`fail-nth sweep of ${s.scenario}:`];
  for (const r of s.runs) {
    const what = r.injected === null ? "no injection reached: the run completed" : `injected at ${r.injected} -> ${r.errno === null ? "absorbed (the path recovered)" : `-${r.errno}`}`;
    lines.push(`  n=${String(r.n).padEnd(4)} ${what}${r.violations.length === 0 ? ", clean" : ""}`);
    for (const v of r.violations) lines.push(`         violated: ${v}`);
  }
  const injected = s.runs.filter((r) => r.injected !== null).length;
  lines.push(`${s.scenario}: ${s.ok ? "PASS" : "FAIL"} (${injected} injection points swept)`);
  return lines.join("\n");
}

/**
 * The crash sweep: run a scenario that takes `--at` (guest-crash) with the
 * VM killed after step 1, 2, … until a run ends before the kill point is
 * reached. Every run must end with every invariant held (nothing of the dead
 * VM leaked, no DMA after its death, the bystander VM's work done) and
 * nothing left at quiescence.
 */
export interface CrashRun {
  readonly at: number;
  /** The crash row of the run: what happened at the kill point. */
  readonly what: string;
  readonly violations: readonly string[];
}

export interface CrashSweepResult {
  readonly scenario: string;
  readonly runs: readonly CrashRun[];
  readonly ok: boolean;
}

export function crashSweep(def: HostScenarioDef, platform?: string): CrashSweepResult {
  const runs: CrashRun[] = [];
  for (let at = 1; at <= MAX_N; at++) {
    const r = runHostScenario(def, { seed: 1, at, ...(platform === undefined ? {} : { platform }) });
    const row = r.rows.find((x) => x.actor === "USER" && x.text.startsWith(`${CRASH_ROW} ${at}:`));
    if (row === undefined) {
      // The run ended before step `at`: every kill point has been tried. A run that failed on its way counts against the sweep.
      if (r.violations.length > 0) runs.push({ at, what: "the run did not reach its kill point", violations: r.violations });
      break;
    }
    runs.push({ at, what: row.text.slice(row.text.indexOf(":") + 1).trim(), violations: r.violations });
  }
  const ok = runs.length > 0 && runs.every((r) => r.violations.length === 0);
  return { scenario: def.name, runs, ok };
}

export function formatCrashSweep(s: CrashSweepResult): string {
  const lines = [`crash sweep of ${s.scenario} (the VM killed after each step in turn):`];
  for (const r of s.runs) {
    lines.push(`  at=${String(r.at).padEnd(3)} ${r.what}${r.violations.length === 0 ? ": clean" : ""}`);
    for (const v of r.violations) lines.push(`         violated: ${v}`);
  }
  lines.push(`${s.scenario}: ${s.ok ? "PASS" : "FAIL"} (${s.runs.length} kill points tried)`);
  return lines.join("\n");
}
