import { describe, expect, it } from "vitest";
import { packageGraph, withGraph } from "./graph.js";

const START = "<!-- package-graph:start (pnpm graph writes this block) -->";
const END = "<!-- package-graph:end -->";

describe("pnpm graph", () => {
  it("replaces only the block between the markers", () => {
    const readme = `# x\n\nbefore\n${START}\n\`\`\`mermaid\nold\n\`\`\`\n${END}\nafter\n`;
    expect(withGraph(readme, "flowchart LR\na-->b")).toBe(`# x\n\nbefore\n${START}\n\`\`\`mermaid\nflowchart LR\na-->b\n\`\`\`\n${END}\nafter\n`);
  });

  it("refuses a README without the markers rather than append somewhere", () => {
    expect(() => withGraph("# x\n", "g")).toThrow(/package-graph/);
  });

  it("draws packages, not files, with the harness's edges to the packages it imports", async () => {
    const graph = await packageGraph();
    expect(graph).toMatch(/^flowchart/);
    expect(graph).toContain("apps_harness-->packages_kernel");
    expect(graph).not.toMatch(/src|node_modules|\.ts\b/);
  }, 60_000);
});
