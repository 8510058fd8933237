#!/usr/bin/env node
import { Command, type CommanderError, InvalidArgumentError } from "commander";
import { FLAGSHIP, findScenario, scenarios } from "./scenarios/index.js";
import { runScenario } from "./run.js";
import { toChromeTrace } from "./chrome-trace.js";
import { renderHtmlReport } from "./report/html-report.js";
import { crashSweep, formatCrashSweep, formatSweep, sweep } from "./sweep.js";
import { isHostScenario } from "./world/host-scenario.js";
import { PLATFORM_NAMES } from "./world/host.js";
import { EXIT, type OutputFile, UsageError, checkOutputs, harnessVersion, invocationDir, terminalWidth, writeOutputs } from "./cli.js";

// The CLI parser is commander: well kept, typed, with subcommands and help.
function parseSeed(v: string): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError("the seed must be a non-negative integer");
  return n;
}

function parseStep(v: string): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError("the step must be a positive integer");
  return n;
}

// `vsva list | head -2`: the reader went away; what is left to print has no one to read it.
process.stdout.on("error", (e: NodeJS.ErrnoException) => {
  if (e.code === "EPIPE") process.exit();
  throw e;
});

const program = new Command()
  .name("vsva")
  .description("Full-system simulator of Linux vSVA: runs lifecycle scenarios and checks their invariants.")
  .version(harnessVersion(), "-V, --version", "print the version")
  .showHelpAfterError()
  // Every parse error (unknown option, missing argument, bad value) is a usage error: exit 2.
  .exitOverride((err: CommanderError) => {
    process.exit(err.exitCode === 0 ? EXIT.pass : EXIT.usage);
  })
  .addHelpText(
    "after",
    `
With no command, runs ${FLAGSHIP}. Relative output paths are taken from the
directory you ran the command in.

Guest scenarios: \`vsva run guest-crash --at STEP\` kills VM 1 after step STEP
while VM 2 keeps doing DMA; \`vsva crash-sweep guest-crash\` kills it after
each step in turn, and passes when every run leaks nothing and VM 2 is
unaffected. Every guest scenario takes --at (VM 1 is the one killed: in
malicious-guest, the hostile VM), so \`vsva crash-sweep NAME\` works on each.

Exit status:
  0  the run passed: every invariant held after every step
  1  an invariant was violated (or the simulator oopsed)
  2  usage error: unknown command, scenario or option, bad value, an output
     file that cannot be written`,
  );

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
  .option("--seed <n>", "seed of the scenario's free choices (device slot, buffer addresses, PASIDs); printed with the run", parseSeed, 1)
  .option("--platform <name>", `IOMMU platform of the host: ${PLATFORM_NAMES.join("|")} (default: the scenario's first; only for scenarios that list platforms)`)
  .option("--at <step>", "guest scenarios: kill VM 1 after this step of the run (only for scenarios that take it; see `vsva crash-sweep`)", parseStep)
  .option("--json <file>", "write the raw trace-bus events as JSON")
  .option("--trace <file>", "write Chrome trace-event JSON (open it in Perfetto)")
  .option("--report <file>", "write a self-contained HTML page with the swimlane timeline")
  .action((name: string, opts: RunCliOptions) => {
    process.exitCode = runAndReport(name, opts);
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
      process.exitCode = EXIT.usage;
      return;
    }
    const platform = opts.platform ?? scenario.platforms?.[0] ?? "vtd";
    if (!scenario.platforms?.includes(platform)) {
      console.error(`vsva: ${scenario.name} runs on ${scenario.platforms?.join(", ") ?? "no platform"}, not on '${platform}'`);
      process.exitCode = EXIT.usage;
      return;
    }
    const result = sweep(scenario.def, platform);
    console.log(formatSweep(result));
    process.exitCode = result.ok ? EXIT.pass : EXIT.violated;
  });

program
  .command("crash-sweep")
  .description("kill the VM after each step in turn (a scenario that takes --at: every guest scenario); each run must leak nothing and leave the other VM unaffected")
  .argument("<name>", "scenario name (one that takes --at, see `vsva list`)")
  .action((name: string) => {
    const scenario = findScenario(name);
    if (scenario === undefined || !isHostScenario(scenario) || scenario.at === undefined) {
      console.error(`vsva: '${name}' is not a scenario with a kill point (--at); try 'vsva crash-sweep guest-crash'`);
      process.exitCode = EXIT.usage;
      return;
    }
    const result = crashSweep(scenario.def, scenario.platforms?.[0]);
    console.log(formatCrashSweep(result));
    process.exitCode = result.ok ? EXIT.pass : EXIT.violated;
  });

// Without a command, the flagship; a word that is no command is an error, not "too many arguments".
program.allowExcessArguments().action(() => {
  const stray = program.args[0];
  if (stray !== undefined) {
    console.error(`vsva: unknown command '${stray}' (commands: list, run, sweep, crash-sweep; see 'vsva --help')`);
    process.exitCode = EXIT.usage;
    return;
  }
  process.exitCode = runAndReport(FLAGSHIP, { seed: 1 });
});

interface RunCliOptions {
  readonly seed: number;
  readonly platform?: string;
  readonly at?: number;
  readonly json?: string;
  readonly trace?: string;
  readonly report?: string;
}

function runAndReport(name: string, opts: RunCliOptions): number {
  const scenario = findScenario(name);
  if (scenario === undefined) {
    console.error(`vsva: no scenario named '${name}'; try 'vsva list'`);
    return EXIT.usage;
  }
  if (opts.platform !== undefined && scenario.platforms === undefined) {
    console.error(`vsva: ${scenario.name} uses no IOMMU platform; --platform does not apply to it`);
    return EXIT.usage;
  }
  if (opts.at !== undefined && scenario.at === undefined) {
    console.error(`vsva: ${scenario.name} takes no --at (guest-crash does)`);
    return EXIT.usage;
  }
  const wanted = opts.platform ?? scenario.platforms?.[0];
  if (wanted !== undefined && scenario.platforms !== undefined && !scenario.platforms.includes(wanted)) {
    console.error(`vsva: ${scenario.name} runs on ${scenario.platforms.join(", ")}, not on '${wanted}'`);
    return EXIT.usage;
  }
  // Every output is checked before the run: a path that cannot be written is a usage error, not a stack trace after PASS.
  let outputs: readonly OutputFile[];
  try {
    outputs = checkOutputs(
      [
        { option: "--json", path: opts.json },
        { option: "--trace", path: opts.trace },
        { option: "--report", path: opts.report },
      ],
      invocationDir(),
    );
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    console.error(`vsva: ${e.message}`);
    return EXIT.usage;
  }
  const outcome = runScenario(scenario, { seed: opts.seed, ...(wanted === undefined ? {} : { platform: wanted }), ...(opts.at === undefined ? {} : { at: opts.at }) }, terminalWidth());
  console.log(outcome.text);
  const events = outcome.result?.events ?? [];
  const contents: Record<string, () => string> = {
    "--json": () => JSON.stringify(events, null, 2) + "\n",
    "--trace": () => JSON.stringify(toChromeTrace(events, scenario.name)) + "\n",
    "--report": () => {
      // A run that oopsed has no result; its report still says FAIL, with the oops as the violation.
      const result = outcome.result ?? { title: scenario.name, columns: [], rows: [], events: [], choices: [], violations: [outcome.text] };
      const meta = { scenario: scenario.name, seed: opts.seed, ...(wanted === undefined ? {} : { platform: wanted }) };
      return renderHtmlReport(result, meta);
    },
  };
  try {
    for (const line of writeOutputs(outputs, (o) => contents[o.option]?.() ?? "")) console.log(line);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    console.error(`vsva: ${e.message}`);
    return EXIT.usage;
  }
  return outcome.ok ? EXIT.pass : EXIT.violated;
}

program.parse();
