import { type Stats, accessSync, constants, readFileSync, statSync, writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import type { TimelineLayout } from "./timeline.js";

/** The CLI's exit status, documented in `vsva --help`. */
export const EXIT = {
  /** Every invariant held after every step. */
  pass: 0,
  /** An invariant was violated, or the simulator oopsed. */
  violated: 1,
  /** Unknown command, scenario or option, a bad value, or an output that cannot be written. */
  usage: 2,
} as const;

/** A mistake in how vsva was asked to run: reported as one line, exit status 2. */
export class UsageError extends Error {
  override readonly name = "UsageError";
}

/** The harness's package version, for `--version` (src/ and dist/ both sit one level below package.json). */
export function harnessVersion(): string {
  const pkg: unknown = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));
  const v = typeof pkg === "object" && pkg !== null && "version" in pkg ? pkg.version : undefined;
  return typeof v === "string" ? v : "unknown";
}

/**
 * The directory the user ran the command in. A package manager runs a
 * package's script (`npm run vsva`, `pnpm vsva`) in the package's own
 * directory and says where it was invoked in INIT_CWD; otherwise it is the
 * working directory. INIT_CWD counts only when this process is that script
 * (the working directory is the package's): an INIT_CWD inherited from an
 * unrelated script further up is ignored.
 */
export function invocationDir(env: NodeJS.ProcessEnv = process.env, cwd: string = process.cwd()): string {
  const init = env.INIT_CWD;
  const pkg = env.npm_package_json;
  if (init !== undefined && init !== "" && pkg !== undefined && resolve(dirname(pkg)) === resolve(cwd)) return resolve(init);
  return cwd;
}

/**
 * How wide the timeline may be: COLUMNS when set (the user's override), else
 * the terminal's width; no limit when writing to a pipe or a file.
 */
export function terminalWidth(env: NodeJS.ProcessEnv = process.env, stdout: { isTTY?: boolean; columns?: number } = process.stdout): TimelineLayout {
  const fromEnv = Number(env.COLUMNS);
  if (env.COLUMNS !== undefined && Number.isSafeInteger(fromEnv) && fromEnv > 0) return { width: fromEnv };
  if (stdout.isTTY === true && stdout.columns !== undefined && stdout.columns > 0) return { width: stdout.columns };
  return {};
}

export interface OutputRequest {
  /** The option that named the file ("--report"). */
  readonly option: string;
  /** As the user gave it; absent when the option was not given. */
  readonly path: string | undefined;
}

export interface OutputFile {
  readonly option: string;
  /** Absolute. */
  readonly path: string;
}

/**
 * Resolves the requested output files against `base` and checks, before
 * anything runs, that each can be written: its directory exists and is
 * writable, it is not a directory, it is not named twice. Throws UsageError
 * saying which option and path are wrong.
 */
export function checkOutputs(requests: readonly OutputRequest[], base: string): OutputFile[] {
  const files: OutputFile[] = [];
  for (const { option, path } of requests) {
    if (path === undefined) continue;
    if (path === "") throw new UsageError(`${option}: the file name is empty`);
    const abs = resolve(base, path);
    const twice = files.find((f) => f.path === abs);
    if (twice !== undefined) throw new UsageError(`${option} ${path}: the same file as ${twice.option}`);
    const self = statOrNull(abs);
    if (self?.isDirectory() === true) throw new UsageError(`${option} ${path}: ${abs} is a directory`);
    if (self !== null) {
      if (!writable(abs)) throw new UsageError(`${option} ${path}: ${abs} cannot be written (permission denied)`);
    } else {
      const dir = dirname(abs);
      const parent = statOrNull(dir);
      if (parent === null) throw new UsageError(`${option} ${path}: directory ${dir} does not exist`);
      if (!parent.isDirectory()) throw new UsageError(`${option} ${path}: ${dir} is not a directory`);
      if (!writable(dir)) throw new UsageError(`${option} ${path}: cannot create files in ${dir} (permission denied)`);
    }
    files.push({ option, path: abs });
  }
  return files;
}

/** Writes each file with its content; returns one "wrote ..." line per file. A failure is a UsageError naming the file. */
export function writeOutputs(files: readonly OutputFile[], content: (f: OutputFile) => string): string[] {
  return files.map((f) => {
    try {
      writeFileSync(f.path, content(f));
    } catch (e) {
      const why = e instanceof Error && "code" in e ? String(e.code) : String(e);
      throw new UsageError(`${f.option}: could not write ${f.path} (${why})`);
    }
    return `wrote ${f.option.slice(2)}: ${f.path}`;
  });
}

function statOrNull(path: string): Stats | null {
  try {
    return statSync(path);
  } catch {
    return null;
  }
}

function writable(path: string): boolean {
  try {
    accessSync(path, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}
