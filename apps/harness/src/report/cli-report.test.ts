import { describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { findScenario } from "../scenarios/index.js";
import { renderHtmlReport } from "./html-report.js";

const harness = fileURLToPath(new URL("../..", import.meta.url));

describe("vsva run NAME --report FILE", () => {
  it("writes the scenario's report next to --json, with the exit status of the run", () => {
    const dir = mkdtempSync(join(tmpdir(), "vsva-report-"));
    try {
      const report = join(dir, "native-sva.html");
      const json = join(dir, "native-sva.json");
      const run = spawnSync(join(harness, "node_modules/.bin/tsx"), ["--conditions=@vsva/source", "src/main.ts", "run", "native-sva", "--seed", "1", "--report", report, "--json", json], {
        cwd: harness,
        encoding: "utf8",
      });
      expect(run.status, run.stderr).toBe(0);
      const scenario = findScenario("native-sva");
      if (scenario === undefined) throw new Error("native-sva is listed");
      // The CLI's page is exactly the renderer's for the same run: the platform defaults to the scenario's first.
      const want = renderHtmlReport(scenario.run({ seed: 1, platform: "vtd" }), { scenario: "native-sva", platform: "vtd", seed: 1 });
      expect(readFileSync(report, "utf8")).toBe(want);
      expect(JSON.parse(readFileSync(json, "utf8"))).toHaveLength(scenario.run({ seed: 1, platform: "vtd" }).events.length);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
