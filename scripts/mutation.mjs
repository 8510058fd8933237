#!/usr/bin/env node
// `pnpm mutation [pkg...]`: Stryker on each named package (default: kernel and
// ioasid), one after the other. Reports land in reports/mutation/<pkg>/.
// Concurrency defaults to 2 (VSVA_MUTATE_CONCURRENCY to change it).
import { spawnSync } from "node:child_process";
import console from "node:console";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
// Package names first; anything from the first option on goes to Stryker as is,
// e.g. `pnpm mutation arm-smmu-v3 --mutate a.ts,b.ts` (comma-separated: a
// second --mutate replaces the first).
const args = process.argv.slice(2).filter((a) => a !== "--");
const firstOption = args.findIndex((a) => a.startsWith("-"));
const pkgs = firstOption < 0 ? args : args.slice(0, firstOption);
const passThrough = firstOption < 0 ? [] : args.slice(firstOption);
const targets = pkgs.length > 0 ? pkgs : ["kernel", "ioasid"];
let failed = 0;
for (const pkg of targets) {
  if (!existsSync(join(root, "packages", pkg, "vitest.config.ts"))) {
    console.error(`mutation: no package packages/${pkg} with a vitest.config.ts`);
    failed++;
    continue;
  }
  console.log(`\n=== mutation testing packages/${pkg} ===`);
  const r = spawnSync("stryker", ["run", "stryker.config.mjs", ...passThrough], {
    cwd: root,
    stdio: "inherit",
    shell: process.platform === "win32",
    env: { ...process.env, VSVA_MUTATE_PACKAGE: pkg },
  });
  if (r.status !== 0) failed++;
}
process.exit(failed === 0 ? 0 : 1);
