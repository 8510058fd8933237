import type { TraceEvent } from "@vsva/kernel";
import type { TimelineRow } from "./timeline.js";

export interface ScenarioOptions {
  /** Seed of the scenario's free choices (addresses, slots, PASIDs); the same seed gives the same trace. */
  readonly seed: number;
  /** The IOMMU platform of the host (host scenarios); "vtd" when absent. */
  readonly platform?: string;
  /** The step after which the scenario's chosen event happens (guest-crash: the VM is killed); for scenarios that say what it does ({@link Scenario.at}). */
  readonly at?: number;
}

export interface ScenarioResult {
  readonly title: string;
  /** Actor columns of the timeline, left to right. */
  readonly columns: readonly string[];
  readonly rows: readonly TimelineRow[];
  /** Every trace-bus event of the run. */
  readonly events: readonly TraceEvent[];
  /** The seeded choices the run made ("what = value"), so it can be reproduced; absent or empty when it has none. */
  readonly choices?: readonly string[];
  /** Invariants that did not hold; empty for a passing run. */
  readonly violations: readonly string[];
}

export interface Scenario {
  readonly name: string;
  readonly summary: string;
  /** Platforms the scenario runs on (absent: it needs no IOMMU platform). */
  readonly platforms?: readonly string[];
  /** What `--at STEP` does in this scenario; absent: the scenario takes no --at. */
  readonly at?: string;
  run(opts: ScenarioOptions): ScenarioResult;
}
