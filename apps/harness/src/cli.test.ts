import { describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { EXIT, UsageError, checkOutputs, harnessVersion, invocationDir, terminalWidth } from "./cli.js";

const harness = fileURLToPath(new URL("..", import.meta.url));
const tsx = join(harness, "node_modules/.bin/tsx");

/** Runs the CLI as a user would, from `cwd`, with only the environment given (no INIT_CWD from the test runner). */
function vsva(args: readonly string[], opts: { cwd?: string; env?: Record<string, string> } = {}): { status: number | null; stdout: string; stderr: string } {
  const env: Record<string, string> = { PATH: process.env.PATH ?? "", ...opts.env };
  const r = spawnSync(tsx, ["--conditions=@vsva/source", join(harness, "src/main.ts"), ...args], { cwd: opts.cwd ?? harness, encoding: "utf8", env });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function withTmp(fn: (dir: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), "vsva-cli-"));
  try {
    fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe("output paths are checked before the run", () => {
  it("refuses a file in a directory that does not exist, naming the option", () => {
    withTmp((dir) => {
      expect(() => checkOutputs([{ option: "--report", path: "missing/r.html" }], dir)).toThrow(new UsageError(`--report missing/r.html: directory ${join(dir, "missing")} does not exist`));
    });
  });

  it("refuses a directory as the file, and one file named by two options", () => {
    withTmp((dir) => {
      mkdirSync(join(dir, "out"));
      expect(() => checkOutputs([{ option: "--trace", path: "out" }], dir)).toThrow(/--trace out: .* is a directory/);
      expect(() =>
        checkOutputs(
          [
            { option: "--json", path: "a.json" },
            { option: "--trace", path: join(dir, "a.json") },
          ],
          dir,
        ),
      ).toThrow(/the same file as --json/);
    });
  });

  it("resolves relative paths against the directory given and skips options not given", () => {
    withTmp((dir) => {
      const files = checkOutputs(
        [
          { option: "--json", path: undefined },
          { option: "--report", path: "r.html" },
        ],
        dir,
      );
      expect(files).toEqual([{ option: "--report", path: join(dir, "r.html") }]);
    });
  });
});

describe("the directory the user ran the command in", () => {
  it("is INIT_CWD when a package manager runs the package's own script", () => {
    expect(invocationDir({ INIT_CWD: "/home/u/work", npm_package_json: "/repo/package.json" }, "/repo")).toBe("/home/u/work");
  });

  it("is the working directory otherwise, also when an INIT_CWD was inherited from another package's script", () => {
    expect(invocationDir({}, "/home/u")).toBe("/home/u");
    expect(invocationDir({ INIT_CWD: "/elsewhere", npm_package_json: "/repo/package.json" }, "/repo/apps/harness")).toBe("/repo/apps/harness");
  });
});

describe("the terminal width", () => {
  it("is COLUMNS when set, else the terminal's columns, and unlimited on a pipe", () => {
    expect(terminalWidth({ COLUMNS: "80" }, { isTTY: true, columns: 200 })).toEqual({ width: 80 });
    expect(terminalWidth({}, { isTTY: true, columns: 120 })).toEqual({ width: 120 });
    expect(terminalWidth({ COLUMNS: "wide" }, { isTTY: false })).toEqual({});
  });
});

describe("the vsva command", () => {
  it("says an unknown command is unknown, exit 2", () => {
    const r = vsva(["lsit"]);
    expect(r.status).toBe(EXIT.usage);
    expect(r.stderr).toMatch(/unknown command 'lsit'/);
  }, 30_000);

  it("prints its package version for --version", () => {
    const r = vsva(["--version"]);
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toBe(harnessVersion());
    expect(harnessVersion()).toMatch(/^\d+\.\d+\.\d+/);
  }, 30_000);

  it("documents the exit statuses in --help", () => {
    const r = vsva(["--help"]);
    expect(r.stdout).toMatch(/0\s+the run passed/);
    expect(r.stdout).toMatch(/1\s+an invariant was violated/);
    expect(r.stdout).toMatch(/2\s+usage error/);
  }, 30_000);

  it("rejects an unwritable --report with one line and exit 2 before running anything", () => {
    withTmp((dir) => {
      const r = vsva(["run", "native-sva", "--report", "no/such/dir/r.html"], { cwd: dir });
      expect(r.status).toBe(EXIT.usage);
      expect(r.stdout).toBe("");
      expect(r.stderr.trim().split("\n")).toEqual([`vsva: --report no/such/dir/r.html: directory ${join(dir, "no/such/dir")} does not exist`]);
    });
  }, 30_000);

  it("rejects a --platform the scenario does not run on", () => {
    // The ioasid.rst tables are played on the real VT-d stack (bind_gpasid, ENQCMD): VT-d only.
    const r = vsva(["run", "ioasid-lifecycle", "--platform", "smmu"]);
    expect(r.status).toBe(EXIT.usage);
    expect(r.stderr).toMatch(/ioasid-lifecycle runs on vtd, not on 'smmu'/);
  }, 30_000);

  it("writes relative outputs under INIT_CWD when run as the package's script, and says where", () => {
    withTmp((dir) => {
      const r = vsva(["run", "ioasid-lifecycle", "--json", "ev.json", "--trace", "tr.json"], {
        cwd: harness,
        env: { INIT_CWD: dir, npm_package_json: join(harness, "package.json") },
      });
      expect(r.status, r.stderr).toBe(EXIT.pass);
      expect(JSON.parse(readFileSync(join(dir, "ev.json"), "utf8"))).not.toHaveLength(0);
      expect(existsSync(join(dir, "tr.json"))).toBe(true);
      expect(existsSync(join(harness, "ev.json"))).toBe(false);
      expect(r.stdout).toContain(`wrote json: ${join(dir, "ev.json")}\nwrote trace: ${join(dir, "tr.json")}`);
    });
  }, 30_000);

  it("exits quietly when the reader of its output goes away (vsva list | head)", () => {
    // head -n 0 exits before vsva writes, so every write meets a closed pipe (EPIPE).
    const cmd = `set -o pipefail; '${tsx}' --conditions=@vsva/source '${join(harness, "src/main.ts")}' list | head -n 0`;
    const r = spawnSync("bash", ["-c", cmd], { cwd: harness, encoding: "utf8", env: { PATH: process.env.PATH ?? "" } });
    expect(r.stderr).not.toMatch(/EPIPE/);
    expect(r.status).toBe(0);
  }, 30_000);
});

describe("the VM kill point", () => {
  it("runs guest-crash with --at, refuses --at where a scenario takes none, and crash-sweeps guest-crash clean", () => {
    const at = vsva(["run", "guest-crash", "--at", "12"]);
    expect(at.status, at.stderr).toBe(EXIT.pass);
    expect(at.stdout).toMatch(/crash after step 12: VM 1's VMM/);
    const refused = vsva(["run", "native-sva", "--at", "3"]);
    expect(refused.status).toBe(EXIT.usage);
    expect(refused.stderr).toMatch(/native-sva takes no --at/);
    expect(vsva(["run", "guest-crash", "--at", "0"]).status).toBe(EXIT.usage);
    const sweep = vsva(["crash-sweep", "guest-crash"]);
    expect(sweep.status, sweep.stdout).toBe(EXIT.pass);
    expect(sweep.stdout).toMatch(/guest-crash: PASS \(\d+ kill points tried\)/);
    expect(vsva(["crash-sweep", "native-sva"]).status).toBe(EXIT.usage);
  }, 60_000);
});
