// `pnpm graph`: draws the workspace's package graph as dependency-cruiser
// finds it (every import lint checks, collapsed to packages) as a mermaid
// block, and writes it into README.md between the package-graph markers.
import fs from "node:fs";
import path from "node:path";
import process from "node:process";
import { cruise } from "dependency-cruiser";
import { dependencyCruiserConfig, readLayers, workspaceRoot } from "./rules.js";

const START = "<!-- package-graph:start (pnpm graph writes this block) -->";
const END = "<!-- package-graph:end -->";

export async function packageGraph() {
  const { forbidden, options } = dependencyCruiserConfig(readLayers());
  const result = await cruise(["packages", "apps"], {
    ...options,
    baseDir: workspaceRoot,
    validate: true,
    ruleSet: { forbidden },
    includeOnly: "^(packages|apps)/",
    collapse: "^(packages|apps)/[^/]+",
    outputType: "mermaid",
  });
  return result.output.trim();
}

export function withGraph(readme, graph) {
  const start = readme.indexOf(START);
  const end = readme.indexOf(END);
  if (start < 0 || end < start) throw new Error(`README.md has no ${START} ... ${END} block`);
  return `${readme.slice(0, start)}${START}\n\`\`\`mermaid\n${graph}\n\`\`\`\n${readme.slice(end)}`;
}

if (import.meta.filename === path.resolve(process.argv[1] ?? "")) {
  const file = path.join(workspaceRoot, "README.md");
  fs.writeFileSync(file, withGraph(fs.readFileSync(file, "utf8"), await packageGraph()));
}
