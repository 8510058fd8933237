import type { Scenario, ScenarioOptions, ScenarioResult } from "./scenario.js";
import { type TimelineLayout, renderTimeline } from "./timeline.js";

export interface RunOutcome {
  readonly ok: boolean;
  readonly text: string;
  readonly result?: ScenarioResult;
}

/**
 * Runs a scenario and turns it into a verdict. An exception escaping a
 * scenario is the simulator's kernel oops: it fails the run, with the stack.
 */
export function runScenario(scenario: Scenario, opts: ScenarioOptions, layout: TimelineLayout = {}): RunOutcome {
  let result: ScenarioResult;
  try {
    result = scenario.run(opts);
  } catch (e) {
    const detail = e instanceof Error ? (e.stack ?? e.message) : String(e);
    return { ok: false, text: `${scenario.name}: FAIL: unhandled exception (oops)\n${detail}` };
  }
  const lines = [result.title, seedLine(opts.seed, result.choices), renderTimeline(result.columns, result.rows, layout)];
  if (result.violations.length === 0) {
    lines.push(`${scenario.name}: PASS (${result.events.length} trace events, every invariant held)`);
  } else {
    lines.push(`${scenario.name}: FAIL`, ...result.violations.map((v) => `  violated: ${v}`));
  }
  return { ok: result.violations.length === 0, text: lines.join("\n"), result };
}

/** The seed and what it chose: enough to reproduce the run (`vsva run NAME --seed N`). */
export function seedLine(seed: number, choices: readonly string[] = []): string {
  return `seed ${seed}: ${choices.length === 0 ? "this scenario has no free choices" : choices.join(", ")}`;
}
