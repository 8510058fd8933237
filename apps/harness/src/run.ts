import type { Scenario, ScenarioOptions, ScenarioResult } from "./scenario.js";
import { renderTimeline } from "./timeline.js";

export interface RunOutcome {
  readonly ok: boolean;
  readonly text: string;
  readonly result?: ScenarioResult;
}

/**
 * Runs a scenario and turns it into a verdict. An exception escaping a
 * scenario is the simulator's kernel oops: it fails the run, with the stack.
 */
export function runScenario(scenario: Scenario, opts: ScenarioOptions): RunOutcome {
  let result: ScenarioResult;
  try {
    result = scenario.run(opts);
  } catch (e) {
    const detail = e instanceof Error ? (e.stack ?? e.message) : String(e);
    return { ok: false, text: `${scenario.name}: FAIL: unhandled exception (oops)\n${detail}` };
  }
  const lines = [result.title, renderTimeline(result.columns, result.rows)];
  if (result.violations.length === 0) {
    lines.push(`${scenario.name}: PASS (${result.events.length} trace events, every invariant held)`);
  } else {
    lines.push(`${scenario.name}: FAIL`, ...result.violations.map((v) => `  violated: ${v}`));
  }
  return { ok: result.violations.length === 0, text: lines.join("\n"), result };
}
