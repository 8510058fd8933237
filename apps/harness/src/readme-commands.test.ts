import { describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { scenarios } from "./scenarios/index.js";

const root = fileURLToPath(new URL("../../..", import.meta.url));
const readme = readFileSync(join(root, "README.md"), "utf8");
const scripts = (JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { scripts: Record<string, string> }).scripts;

/** The README's `npm run ...` command lines, comments dropped. */
const commands = [...readme.matchAll(/^npm run (\S+)(.*?)(?:\s+#.*)?$/gm)].map((m) => ({ script: m[1] ?? "", args: (m[2] ?? "").trim() }));

describe("the README's commands after the quick start", () => {
  it("are all scripts of the root package", () => {
    expect(commands.length).toBeGreaterThan(5);
    for (const c of commands) expect(Object.keys(scripts), `npm run ${c.script}`).toContain(c.script);
  });

  it("every `npm run vsva -- ...` line works from a fresh shell (no pnpm on PATH) in another directory, outputs landing there", () => {
    const dir = mkdtempSync(join(tmpdir(), "vsva-readme-"));
    try {
      // A fresh shell: node's directory and the system's, nothing from the workspace or the test runner.
      const env = { PATH: [dirname(process.execPath), "/usr/bin", "/bin"].join(":"), HOME: process.env.HOME ?? dir };
      for (const c of commands.filter((x) => x.script === "vsva")) {
        const args = c.args.replace(/^--\s*/, "").split(/\s+/).filter((a) => a !== "");
        const r = spawnSync("npm", ["run", "-s", "--prefix", root, "vsva", "--", ...args], { cwd: dir, env, encoding: "utf8" });
        expect(r.status, `npm run vsva -- ${args.join(" ")}\n${r.stderr}`).toBe(0);
        expect(r.stdout.length).toBeGreaterThan(0);
      }
      for (const out of ["pr.json", "events.json", "run.html"]) expect(existsSync(join(dir, out)), out).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});

describe("the README's scenario table", () => {
  it("has a row for every scenario `vsva list` shows, and none for a scenario that does not exist", () => {
    const rows = [...readme.matchAll(/^\| `([a-z0-9-]+)` \| /gm)].map((m) => m[1] ?? "");
    const names = scenarios.map((s) => s.name);
    for (const n of names) expect(rows, `README row for ${n}`).toContain(n);
    const packages = new Set(rows.filter((r) => !names.includes(r)));
    // The table's other backticked first cells are the layout's and the coverage table's package names.
    for (const r of packages) expect(r.startsWith("packages/") || r.startsWith("apps/") || !r.includes("-") || existsSync(join(root, "packages", r)), `README row \`${r}\` names no scenario`).toBe(true);
  });
});
