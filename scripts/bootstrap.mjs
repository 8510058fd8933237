#!/usr/bin/env node
// Fresh-machine entry point used by the README's two commands and by CI.
// Needs only Node >= 20.19 and npm. Installs the pinned pnpm into ./.tools
// (never globally, never through corepack, which fails on this registry), then:
//   --run-main : pnpm install --frozen-lockfile, then the main job (`pnpm vsva`)
//   --check    : the whole test suite (lint, typecheck, tests)
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";

const root = path.resolve(import.meta.dirname, "..");
const pkg = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8"));
const wanted = pkg.packageManager.replace(/^pnpm@/, "");
const toolsDir = path.join(root, ".tools");
const localPnpm = path.join(toolsDir, "bin", "pnpm");

function pnpmVersion(bin) {
  try {
    return execFileSync(bin, ["--version"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  } catch {
    return null;
  }
}

function ensurePnpm() {
  // An exact match matters: pnpm refuses to run under a packageManager pin it
  // cannot verify.
  if (pnpmVersion("pnpm") === wanted) return "pnpm";
  if (pnpmVersion(localPnpm) === wanted) return localPnpm;
  console.error(`installing pnpm ${wanted} into .tools/ ...`);
  const args = ["install", "-g", "--prefix", toolsDir, "--no-fund", "--no-audit", `pnpm@${wanted}`];
  // npm with --prefix loses the global npmrc and its CA file (seen with npm 10).
  const ca = "/etc/ssl/certs/ca-certificates.crt";
  if (fs.existsSync(ca)) args.push("--cafile", ca);
  run("npm", args);
  return localPnpm;
}

// Children (turbo above all) look pnpm up on PATH, so the local install's bin
// directory goes first.
const childEnv = {
  ...process.env,
  PATH: [path.join(toolsDir, "bin"), process.env.PATH ?? ""].join(path.delimiter),
  TURBO_TELEMETRY_DISABLED: "1",
  // The pinned pnpm is deliberate: no upgrade banner.
  npm_config_update_notifier: "false",
};

function run(cmd, args) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: "inherit", env: childEnv });
  if (r.status !== 0) process.exit(r.status ?? 1);
}

const mode = process.argv[2];
const pnpm = ensurePnpm();
if (!fs.existsSync(path.join(root, "node_modules", ".modules.yaml")) || mode === "--run-main") {
  run(pnpm, ["install", "--frozen-lockfile"]);
}
if (mode === "--run-main") run(pnpm, ["vsva"]);
else if (mode === "--check") run(pnpm, ["run", "check"]);
else {
  console.error("usage: bootstrap.mjs --run-main | --check");
  process.exit(2);
}
