import { describe, expect, it } from "vitest";
import { findScenario } from "./scenarios/index.js";
import { renderTimeline, wrap } from "./timeline.js";

describe("renderTimeline", () => {
  it("puts each step in its actor's column with the refcount at the right", () => {
    const out = renderTimeline(["VFIO", "IOMMU"], [
      { step: 1, actor: "VFIO", text: "ioasid_alloc()", refcount: 1 },
      { step: 2, actor: "IOMMU", text: "ioasid_get()", refcount: 2 },
    ]);
    const lines = out.split("\n").filter((l) => l.includes("ioasid_"));
    expect(lines[0]).toMatch(/│ 1\s+│ ioasid_alloc\(\)\s+│\s+│ 1\s+│/);
    expect(lines[1]).toMatch(/│ 2\s+│\s+│ ioasid_get\(\)\s+│ 2\s+│/);
  });

  const scenario = findScenario("native-sva");
  if (scenario === undefined) throw new Error("native-sva is listed");
  const run = scenario.run({ seed: 1, platform: "vtd" });
  /** Every word of every row, in order: what a reader must still find after wrapping. */
  const words = run.rows.flatMap((r) => r.text.split(" ").filter((w) => w !== ""));

  for (const width of [80, 120]) {
    it(`fits a ${width}-column terminal and loses no word of the run`, () => {
      const out = renderTimeline(run.columns, run.rows, { width });
      const lines = out.split("\n");
      expect(Math.max(...lines.map((l) => l.length))).toBeLessThanOrEqual(width);
      // Read back cell by cell: wrapped pieces rejoin into the original words.
      const flat = lines.map((l) => l.split("│").map((c) => c.trim()).join(" ")).join(" ");
      const joined = flat.replace(/\s+/g, " ");
      for (const w of words) expect(joined.replace(/([.\-=@/,]) /g, "$1")).toContain(w.replace(/([.\-=@/,]) /g, "$1"));
    });
  }

  it("keeps one column per actor when the terminal is wide enough, and lists rows when it is not", () => {
    expect(renderTimeline(run.columns, run.rows, { width: 160 }).split("\n")[1]).toMatch(/│ #\s+│ USER\s+│ MM\s+│ DEVICE\s+│ IOMMU\s+│ IOASID\s+│ HW\s+│ Ref │/);
    expect(renderTimeline(run.columns, run.rows, { width: 80 }).split("\n")[1]).toMatch(/│ #\s+│ actor\s+│ what happened\s+│ Ref │/);
  });

  it("has no limit without a width (a pipe or a file), as before", () => {
    const out = renderTimeline(run.columns, run.rows);
    expect(Math.max(...out.split("\n").map((l) => l.length))).toBeGreaterThan(150);
  });
});

describe("wrap", () => {
  it("breaks at spaces, and a word longer than a line after a '.', '-' or '@' inside it", () => {
    expect(wrap("iommu.domain-alloc dma", 12)).toBe("iommu.\ndomain-alloc\ndma");
    expect(wrap("pci.dma-complete ok @0x2aaaaaaaa000", 16)).toBe("pci.dma-complete\nok\n@0x2aaaaaaaa000");
    expect(wrap("a b c", 3)).toBe("a b\nc");
    expect(wrap("0x123456789abcdef", 8)).toBe("0x123456\n789abcde\nf");
  });
});
