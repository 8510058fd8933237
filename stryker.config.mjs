// Mutation testing for one package at a time: `pnpm mutation [pkg...]` (see
// scripts/mutation.mjs) sets VSVA_MUTATE_PACKAGE and runs Stryker from the
// repository root, so the sandbox keeps the layout `vitest.shared.ts` and the
// `@vsva/source` condition expect. Not part of `pnpm run check`: a package
// takes minutes.
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

const root = dirname(fileURLToPath(import.meta.url));
const pkg = process.env.VSVA_MUTATE_PACKAGE ?? "kernel";
const dir = `packages/${pkg}`;

/** @type {import("@stryker-mutator/api/core").PartialStrykerOptions} */
export default {
  testRunner: "vitest",
  plugins: ["@stryker-mutator/vitest-runner", join(root, "scripts/stryker-ignore-trace-payload.mjs")],
  vitest: { configFile: `${dir}/vitest.config.ts`, dir },
  // Production code only: tests and test helpers (testing.ts, testing/, test hosts) are not mutated.
  mutate: [
    `${dir}/src/**/*.ts`,
    `!${dir}/src/**/*.test.ts`,
    ...["src/testing.ts", "src/testing", "src/test-host.ts"].filter((p) => existsSync(join(root, dir, p))).map((p) => `!${dir}/${p}${p.endsWith(".ts") ? "" : "/**"}`),
  ],
  // Strings are messages and trace names: a wrong message is not a bug the
  // suite is meant to catch. Trace payloads are diagnostics for the harness's
  // report, not state (the ignorer below); the ids and refcount of an event are
  // still scored.
  mutator: { excludedMutations: ["StringLiteral"] },
  ignorers: ["trace-payload"],
  coverageAnalysis: "perTest",
  concurrency: Number(process.env.VSVA_MUTATE_CONCURRENCY ?? 2),
  timeoutMS: 5000,
  reporters: ["clear-text", "progress-append-only", "html", "json"],
  htmlReporter: { fileName: `reports/mutation/${pkg}/index.html` },
  jsonReporter: { fileName: `reports/mutation/${pkg}/mutation.json` },
  tempDirName: `.stryker-tmp/${pkg}`,
  cleanTempDir: "always",
  thresholds: { high: 90, low: 85, break: null },
  ignorePatterns: ["reports", ".tools", "out", "**/dist", "**/.turbo", "**/coverage"],
};
