// @ts-check
// Two properties of the repository itself that CI keeps: a citation in the
// code or the docs is one a reader with a clone can follow, and turbo's lint
// cache survives a run (its inputs do not take in logs or installed modules).
import { describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { delimiter, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../..", import.meta.url));

/** @param {string} dir @returns {string[]} */
function sourceFiles(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    if (e.name === "node_modules" || e.name === "dist" || e.name.startsWith(".")) return [];
    const p = join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(p);
    return /\.(ts|js|mjs|md|json)$/.test(e.name) ? [p] : [];
  });
}

describe("citations", () => {
  it("name no document outside the repository (seed numbers, fact sheets, design notes)", () => {
    const roots = ["packages", "apps", "scripts", "tools/layering", ".changeset"].map((d) => join(root, d));
    const files = [...roots.flatMap(sourceFiles), join(root, "README.md")].filter((f) => statSync(f).isFile());
    // Written so that this file does not match itself.
    const outside = new RegExp(["\\bseed 0\\d\\d\\b", "spec-facts", "linux-anchor", "qemu-anchor", "\\.\\./shared/", "DESIGN\\.md", "STYLE\\.md", "toolchain\\.md", "SPEC\\?"].join("|"), "i");
    const hits = files.flatMap((f) =>
      readFileSync(f, "utf8")
        .split("\n")
        .flatMap((line, i) => (outside.test(line) ? [`${relative(root, f)}:${String(i + 1)}: ${line.trim()}`] : [])),
    );
    expect(hits).toEqual([]);
  });
});

describe("turbo's lint cache", () => {
  it("does not change when a lint log or an installed module under tools/layering changes", () => {
    const env = { ...process.env, TURBO_TELEMETRY_DISABLED: "1", PATH: [join(root, ".tools/bin"), process.env.PATH ?? ""].join(delimiter) };
    const hashes = () => {
      const r = spawnSync(join(root, "node_modules/.bin/turbo"), ["run", "lint", "lint:layers", "--dry=json"], { cwd: root, env, encoding: "utf8" });
      expect(r.status, r.stderr).toBe(0);
      /** @type {{ tasks: { taskId: string, hash: string }[] }} */
      const plan = JSON.parse(r.stdout);
      return Object.fromEntries(plan.tasks.map((t) => [t.taskId, t.hash]));
    };
    const logDir = join(root, "tools/layering/.turbo");
    const modDir = join(root, "tools/layering/node_modules/.vsva-cache-probe");
    mkdirSync(logDir, { recursive: true });
    mkdirSync(modDir, { recursive: true });
    try {
      writeFileSync(join(logDir, "probe.log"), "first run\n");
      writeFileSync(join(modDir, "probe.js"), "export {};\n");
      const before = hashes();
      writeFileSync(join(logDir, "probe.log"), "second run: a different log\n");
      writeFileSync(join(modDir, "probe.js"), "export const changed = 1;\n");
      expect(hashes()).toEqual(before);
      expect(Object.keys(before).length).toBeGreaterThan(5);
    } finally {
      rmSync(join(logDir, "probe.log"), { force: true });
      rmSync(modDir, { recursive: true, force: true });
    }
  }, 60_000);
});
