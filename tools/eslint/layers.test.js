// The layering rules checked against real files of the workspace: each case
// lints a snippet as if it lived at a given path inside a package.
import path from "node:path";
import { Linter } from "eslint";
import tseslint from "typescript-eslint";
import { describe, expect, it } from "vitest";
import vsva from "./layers.js";

const root = path.resolve(import.meta.dirname, "../..");

function lint(relFile, code) {
  const linter = new Linter({ configType: "flat", cwd: root });
  const messages = linter.verify(
    code,
    [
      {
        files: ["**/*.ts"],
        languageOptions: { parser: tseslint.parser, sourceType: "module" },
        plugins: { vsva },
        rules: { "vsva/layering": "error", "vsva/no-escape": "error" },
      },
    ],
    { filename: path.join(root, relFile) },
  );
  return messages.map((m) => m.message);
}

describe("vsva/layering", () => {
  it("allows a higher package to import a lower one through its exports", () => {
    expect(lint("packages/iommu-hw/src/x.ts", 'import { Errno } from "@vsva/kernel";')).toEqual([]);
  });

  it("refuses an import from a lower package into a higher one", () => {
    const [msg] = lint("packages/kernel/src/x.ts", 'import { SparseMemory } from "@vsva/iommu-hw";');
    expect(msg).toMatch(/may not import @vsva\/iommu-hw/);
  });

  it("refuses an import between packages of the same layer", () => {
    expect(lint("packages/ioasid/src/x.ts", 'import "@vsva/iommu-hw";')[0]).toMatch(/may not import/);
  });

  it("refuses a deep import past a package's exports map", () => {
    expect(lint("packages/iommu-hw/src/x.ts", 'import { x } from "@vsva/kernel/src/errno.js";')[0]).toMatch(/deep import/);
  });

  it("refuses an unknown @vsva package", () => {
    expect(lint("packages/iommu-hw/src/x.ts", 'export * from "@vsva/nonexistent";')[0]).toMatch(/not a layer/);
  });
});

describe("vsva/no-escape", () => {
  it("refuses a relative import that leaves the package", () => {
    expect(lint("packages/iommu-hw/src/x.ts", 'import "../../kernel/src/index.js";')[0]).toMatch(/reaches outside/);
  });

  it("allows relative imports inside the package", () => {
    expect(lint("packages/iommu-hw/src/vtd/x.ts", 'import "../layout.js";')).toEqual([]);
  });
});
