export { type Scenario, type ScenarioOptions, type ScenarioResult } from "./scenario.js";
export { scenarios, findScenario, FLAGSHIP } from "./scenarios/index.js";
export { runScenario, type RunOutcome } from "./run.js";
export { renderTimeline, type TimelineRow } from "./timeline.js";
export { toChromeTrace, type ChromeTrace } from "./chrome-trace.js";
export { sweep, formatSweep, type SweepResult, type SweepRun } from "./sweep.js";
export { hostScenario, isHostScenario, runHostScenario, type HostScenario, type HostScenarioDef, type StepContext } from "./world/host-scenario.js";
export { Host, type HostOptions, type DeviceSlot } from "./world/host.js";
export { renderHtmlReport, type ReportMeta } from "./report/html-report.js";
