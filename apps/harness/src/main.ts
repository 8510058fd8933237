#!/usr/bin/env node
import { writeFileSync } from "node:fs";
import { Command, InvalidArgumentError } from "commander";
import { FLAGSHIP, findScenario, scenarios } from "./scenarios/index.js";
import { runScenario } from "./run.js";
import { toChromeTrace } from "./chrome-trace.js";
import { renderHtmlReport } from "./report/html-report.js";
import { formatSweep, sweep } from "./sweep.js";
import { isHostScenario } from "./world/host-scenario.js";
import { PLATFORM_NAMES } from "./world/host.js";

// The CLI parser is commander: well kept, typed, with subcommands and help.
function parseSeed(v: string): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError("the seed must be a non-negative integer");
  return n;
}

const program = new Command()
  .name("vsva")
  .description("Full-system simulator of Linux vSVA: runs lifecycle scenarios and checks their invariants.")
  .showHelpAfterError();

program
  .command("list")
  .description("list the scenarios")
  .action(() => {
    for (const s of scenarios) {
      const on = s.platforms === undefined ? "" : ` [${s.platforms.join(", ")}]`;
      console.log(`${s.name.padEnd(28)} ${s.summary}${on}`);
    }
  });

program
  .command("run")
  .description("run one scenario and print its timeline and verdict")
  .argument("<name>", "scenario name (see `vsva list`)")
  .option("--seed <n>", "seed for randomness", parseSeed, 1)
  .option("--platform <name>", `IOMMU platform of the host: ${PLATFORM_NAMES.join("|")} (default: the scenario's first)`)
  .option("--json <file>", "write the raw trace-bus events as JSON")
  .option("--trace <file>", "write Chrome trace-event JSON (open it in Perfetto)")
  .option("--report <file>", "write a self-contained HTML page with the swimlane timeline")
  .action((name: string, opts: RunCliOptions) => {
    const scenario = findScenario(name);
    if (scenario === undefined) {
      console.error(`vsva: no scenario named '${name}'; try 'vsva list'`);
      process.exitCode = 2;
      return;
    }
    process.exitCode = runAndReport(scenario.name, opts);
  });

program
  .command("sweep")
  .description("fail every fault-injection point of a scenario's path in turn (fail-nth); each run must roll back cleanly")
  .argument("<name>", "scenario name (a host scenario, see `vsva list`)")
  .option("--platform <name>", `IOMMU platform of the host: ${PLATFORM_NAMES.join("|")} (default: the scenario's first)`)
  .action((name: string, opts: { platform?: string }) => {
    const scenario = findScenario(name);
    if (scenario === undefined || !isHostScenario(scenario)) {
      console.error(`vsva: '${name}' is not a host scenario with injection points; try 'vsva list'`);
      process.exitCode = 2;
      return;
    }
    const platform = opts.platform ?? scenario.platforms?.[0] ?? "vtd";
    if (!scenario.platforms?.includes(platform)) {
      console.error(`vsva: ${scenario.name} runs on ${scenario.platforms?.join(", ") ?? "no platform"}, not on '${platform}'`);
      process.exitCode = 2;
      return;
    }
    const result = sweep(scenario.def, platform);
    console.log(formatSweep(result));
    process.exitCode = result.ok ? 0 : 1;
  });

program.action(() => {
  process.exitCode = runAndReport(FLAGSHIP, { seed: 1 });
});

interface RunCliOptions {
  readonly seed: number;
  readonly platform?: string;
  readonly json?: string;
  readonly trace?: string;
  readonly report?: string;
}

function runAndReport(name: string, opts: RunCliOptions): number {
  const scenario = findScenario(name);
  if (scenario === undefined) return 2;
  const wanted = opts.platform ?? scenario.platforms?.[0];
  if (wanted !== undefined && scenario.platforms !== undefined && !scenario.platforms.includes(wanted)) {
    console.error(`vsva: ${scenario.name} runs on ${scenario.platforms.join(", ")}, not on '${wanted}'`);
    return 2;
  }
  const outcome = runScenario(scenario, { seed: opts.seed, ...(wanted === undefined ? {} : { platform: wanted }) });
  console.log(outcome.text);
  const events = outcome.result?.events ?? [];
  if (opts.json !== undefined) writeFileSync(opts.json, JSON.stringify(events, null, 2) + "\n");
  if (opts.trace !== undefined) writeFileSync(opts.trace, JSON.stringify(toChromeTrace(events, scenario.name)) + "\n");
  if (opts.report !== undefined) {
    // A run that oopsed has no result; its report still says FAIL, with the oops as the violation.
    const result = outcome.result ?? { title: scenario.name, columns: [], rows: [], events: [], violations: [outcome.text] };
    const meta = { scenario: scenario.name, seed: opts.seed, ...(wanted === undefined ? {} : { platform: wanted }) };
    writeFileSync(opts.report, renderHtmlReport(result, meta));
  }
  return outcome.ok ? 0 : 1;
}

program.parse();
