// `pnpm bench` for the harness: every figure in a process of its own.
import { spawnSync } from "node:child_process";
import { Command, Option } from "commander";

/**
 * The figures, in the order a full run prints them. A full run starts each
 * in a fresh process (this script again, with `--figure`), as JMH forks a JVM
 * per benchmark, and that process loads only its figure's modules: V8
 * compiles a function for the argument types and shapes it has seen, so a
 * figure measured after others runs code compiled partly for them (the
 * accelerator's 4 KiB MEMMOVE gave 0.35 after the SVA DMA figures and
 * 0.36–0.41 alone, with the same code). Alone is what a user of that path
 * gets.
 */
const FIGURES = {
  "sva-dma": async () => (await import("./sva-dma.js")).svaDmaFigure(),
  accelerator: async () => (await import("./dsa-memmove.js")).dsaMemmoveFigure(),
  growth: async () => (await import("./growth.js")).growthFigure(),
  "vfio-map": async () => (await import("./vfio-map.js")).vfioMapFigure(),
  guest: async () => (await import("./guest.js")).guestFigures(),
} as const satisfies Record<string, () => Promise<void>>;

type FigureName = keyof typeof FIGURES;
const NAMES = Object.keys(FIGURES) as FigureName[];

const cli = new Command("bench")
  .description("the harness benchmarks: ratios against a raw copy measured in the same run, and growth figures")
  .addOption(new Option("--figure <name>", "run one figure in this process").choices(NAMES))
  // Shorthands kept from before `--figure`, for A/B runs of a change to one path.
  .option("--dma-only", "the SVA DMA figure alone (--figure sva-dma)")
  .option("--accel-only", "the accelerator MEMMOVE figure alone (--figure accelerator)")
  // `pnpm bench -- --figure x` hands the `--` on; options after it are still options here.
  .parse(process.argv.filter((a) => a !== "--"));

const opts = cli.opts<{ figure?: FigureName; dmaOnly?: boolean; accelOnly?: boolean }>();
const one: FigureName | undefined = opts.figure ?? (opts.dmaOnly === true ? "sva-dma" : opts.accelOnly === true ? "accelerator" : undefined);

if (one !== undefined) await FIGURES[one]();
else {
  const script = process.argv[1];
  if (script === undefined) throw new Error("bench: cannot tell which script to run again");
  const failed: FigureName[] = [];
  for (const name of NAMES) {
    // The same node, loader and flags (tsx's loader, --expose-gc) as this process.
    const r = spawnSync(process.execPath, [...process.execArgv, script, "--figure", name], { stdio: "inherit" });
    if (r.status !== 0) failed.push(name);
  }
  if (failed.length > 0) {
    console.error(`bench: figure(s) failed: ${failed.join(", ")}`);
    process.exitCode = 1;
  }
}
