import { describe, expect, it } from "vitest";
import { renderTimeline } from "./timeline.js";

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
});
