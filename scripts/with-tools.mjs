#!/usr/bin/env node
// Runs a command with the repository's own pnpm (.tools/bin, installed by
// `npm run quickstart`) first on PATH. turbo runs each package's task through
// the package manager it finds on PATH, so `npm run build` or `npm run bench`
// from a fresh shell, where pnpm is not on PATH, would fail without it.
import { spawnSync } from "node:child_process";
import path from "node:path";

const root = path.resolve(import.meta.dirname, "..");
const [cmd, ...args] = process.argv.slice(2);
if (cmd === undefined) {
  console.error("usage: with-tools.mjs COMMAND [ARGS...]");
  process.exit(2);
}
const env = { ...process.env, PATH: [path.join(root, ".tools", "bin"), process.env.PATH ?? ""].join(path.delimiter) };
const r = spawnSync(cmd, args, { stdio: "inherit", env, shell: process.platform === "win32" });
if (r.error !== undefined) {
  console.error(`with-tools: ${cmd}: ${r.error.message}`);
  process.exit(127);
}
process.exit(r.status ?? 1);
