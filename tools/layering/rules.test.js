// The workspace's import rules (rules.js with the real layers.json) run by
// dependency-cruiser over a small fixture workspace: each package of the
// fixture links every other one in its node_modules, so resolution never
// decides a case and the rules alone do.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { cruise } from "dependency-cruiser";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { allowedImports, dependencyCruiserConfig, readLayers, testOnlyImports } from "./rules.js";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vsva-layering-"));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const fixturePackages = {
  kernel: "packages",
  ioasid: "packages",
  "iommu-hw": "packages",
  "iommu-core": "packages",
  "intel-svm": "packages",
  machine: "packages",
  "vfio-type1": "packages",
  "kvm-pasid": "packages",
  dsa: "packages",
  idxd: "packages",
  vdcm: "packages",
  stray: "packages", // not in layers.json
  harness: "apps",
};

function write(rel, text) {
  const file = path.join(dir, rel);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, text);
}

function makeWorkspace() {
  write("vitest.shared.ts", "export const shared = 1;\n");
  for (const [name, base] of Object.entries(fixturePackages)) {
    write(
      `${base}/${name}/package.json`,
      JSON.stringify({
        name: `@vsva/${name}`,
        type: "module",
        exports: {
          ".": { "@vsva/source": "./src/index.ts", default: "./dist/index.js" },
          "./testing": { "@vsva/source": "./src/testing.ts", default: "./dist/testing.js" },
          "./internal/*": null,
        },
      }),
    );
    write(`${base}/${name}/src/index.ts`, `export const ${name.replace(/-/g, "_")} = 1;\nexport type T = number;\n`);
    write(`${base}/${name}/src/testing.ts`, "export const fake = 1;\n");
    write(`${base}/${name}/src/internal/secret.ts`, "export const secret = 1;\n");
    for (const [other, otherBase] of Object.entries(fixturePackages)) {
      if (other === name) continue;
      const link = path.join(dir, base, name, "node_modules/@vsva", other);
      fs.mkdirSync(path.dirname(link), { recursive: true });
      fs.symlinkSync(path.join(dir, otherBase, other), link, "dir");
    }
  }
}

/** @type {Map<string, string[]>} module (relative to the fixture) -> names of the rules it breaks */
const broken = new Map();
/** @type {string[][]} each reported cycle: its modules, relative to the fixture */
const cycles = [];

/** The fixture's cases: file -> source. Each test names the file it checks. */
const cases = {
  "packages/iommu-core/src/uses.ts": 'import { kernel } from "@vsva/kernel";\nimport "@vsva/ioasid";\nimport { fake } from "@vsva/kernel/testing";\nexport const u = kernel + fake;\n',
  "packages/vfio-type1/src/driver.ts": 'import { intel_svm } from "@vsva/intel-svm";\nexport const d = intel_svm;\n',
  "packages/vfio-type1/src/driver-type.ts": 'import type { T } from "@vsva/intel-svm";\nexport type D = T;\n',
  "packages/vfio-type1/src/core.ts": 'import "@vsva/iommu-core";\nimport "@vsva/machine";\nimport "@vsva/ioasid";\nexport const c = 1;\n',
  "packages/kvm-pasid/src/core.ts": 'export * from "@vsva/iommu-core";\n',
  "packages/kvm-pasid/src/lazy.ts": 'export async function load() {\n  return import("@vsva/iommu-hw");\n}\n',
  "packages/kvm-pasid/src/uses.ts": 'import "@vsva/kernel";\nimport "@vsva/ioasid";\nimport "@vsva/machine";\nexport const k = 1;\n',
  "packages/kernel/src/up.ts": 'export * from "@vsva/ioasid";\n',
  "packages/ioasid/src/sideways.ts": 'import "@vsva/iommu-hw";\nexport const s = 1;\n',
  "apps/harness/src/all.ts": Object.keys(fixturePackages)
    .filter((n) => n !== "harness" && n !== "stray")
    .map((n) => `import "@vsva/${n}";\n`)
    .join(""),
  "apps/harness/src/stray.ts": 'import "@vsva/stray";\n',
  "packages/stray/src/a.ts": 'import "./index.js";\n',
  "packages/iommu-core/src/deep.ts": 'import "@vsva/kernel/src/index.ts";\n',
  "packages/iommu-core/src/internal.ts": 'import "@vsva/kernel/internal/secret";\n',
  "packages/iommu-core/src/unknown.ts": 'import "@vsva/nonexistent";\n',
  "packages/iommu-core/src/escape.ts": 'import "../../kernel/src/index.ts";\n',
  "packages/kvm-pasid/src/escape.ts": 'import "../../intel-svm/src/index.ts";\n',
  "packages/iommu-core/src/nested/inside.ts": 'import "../uses.js";\nimport "./sibling.js";\n',
  "packages/iommu-core/src/nested/sibling.ts": "export const sibling = 1;\n",
  "packages/kernel/vitest.config.ts": 'import { shared } from "../../vitest.shared.ts";\nexport default shared;\n',
  "packages/iommu-core/src/cycle-a.ts": 'import { b } from "./cycle-b.js";\nexport const a = b;\n',
  "packages/iommu-core/src/cycle-b.ts": 'import { c } from "./cycle-c.js";\nexport const b = c;\n',
  "packages/iommu-core/src/cycle-c.ts": 'import { a } from "./cycle-a.js";\nexport const c = () => a;\n',
  "packages/iommu-core/src/types-d.ts": 'import type { E } from "./types-e.js";\nexport type D = E | 0;\n',
  "packages/vdcm/src/real-driver.test.ts": 'import { idxd } from "@vsva/idxd";\nimport { kvm_pasid } from "@vsva/kvm-pasid";\nexport const t = idxd + kvm_pasid;\n',
  "packages/vdcm/src/real-driver.ts": 'import { idxd } from "@vsva/idxd";\nexport const t = idxd;\n',
  "packages/vdcm/src/upward.test.ts": 'import { harness } from "@vsva/harness";\nexport const t = harness;\n',
  "packages/iommu-core/src/types-e.ts": 'import type { D } from "./types-d.js";\nexport type E = D | 1;\n',
  "packages/iommu-core/src/mixed-f.ts": 'import { g } from "./mixed-g.js";\nexport type F = number;\nexport const f = g;\n',
  "packages/iommu-core/src/mixed-g.ts": 'import type { F } from "./mixed-f.js";\nexport const g: F = 1;\n',
};

beforeAll(async () => {
  makeWorkspace();
  for (const [file, text] of Object.entries(cases)) write(file, text);
  const { forbidden, options } = dependencyCruiserConfig(readLayers());
  const result = await cruise(["packages", "apps"], { ...options, baseDir: dir, validate: true, ruleSet: { forbidden } });
  for (const v of result.output.summary.violations) {
    const list = broken.get(v.from) ?? [];
    list.push(v.rule.name);
    broken.set(v.from, list);
    if (v.rule.name === "no-cycle") cycles.push([v.from, ...v.cycle.map((c) => c.name)]);
  }
});

function rulesBrokenBy(file) {
  if (!Object.hasOwn(cases, file)) throw new Error(`no fixture case ${file}`);
  return [...new Set(broken.get(file) ?? [])].sort();
}

describe("layering: each package imports only what layers.json's uses lists", () => {
  it("allows the packages a package uses, through their public entries and declared subpaths", () => {
    expect(rulesBrokenBy("packages/iommu-core/src/uses.ts")).toEqual([]);
    expect(rulesBrokenBy("packages/vfio-type1/src/core.ts")).toEqual([]);
    expect(rulesBrokenBy("packages/kvm-pasid/src/uses.ts")).toEqual([]);
  });

  it("refuses vfio-type1 importing a driver, though the driver sits lower", () => {
    expect(rulesBrokenBy("packages/vfio-type1/src/driver.ts")).toEqual(["layering-vfio-type1"]);
  });

  it("counts a type-only import as a dependency", () => {
    expect(rulesBrokenBy("packages/vfio-type1/src/driver-type.ts")).toEqual(["layering-vfio-type1"]);
  });

  it("refuses kvm-pasid importing the IOMMU core or the hardware, by re-export or dynamic import", () => {
    expect(rulesBrokenBy("packages/kvm-pasid/src/core.ts")).toEqual(["layering-kvm-pasid"]);
    expect(rulesBrokenBy("packages/kvm-pasid/src/lazy.ts")).toEqual(["layering-kvm-pasid"]);
  });

  it("refuses an upward import and an import between packages the design keeps apart", () => {
    expect(rulesBrokenBy("packages/kernel/src/up.ts")).toEqual(["layering-kernel"]);
    expect(rulesBrokenBy("packages/ioasid/src/sideways.ts")).toEqual(["layering-ioasid"]);
  });

  it("lets the harness import every listed package, and no package missing from layers.json", () => {
    expect(rulesBrokenBy("apps/harness/src/all.ts")).toEqual([]);
    expect(rulesBrokenBy("apps/harness/src/stray.ts")).toEqual(["layering-harness"]);
  });

  it("lets a package's tests, and only its tests, import its testUses too (never upward)", () => {
    expect(rulesBrokenBy("packages/vdcm/src/real-driver.test.ts")).toEqual([]);
    expect(rulesBrokenBy("packages/vdcm/src/real-driver.ts")).toEqual(["layering-vdcm"]);
    expect(rulesBrokenBy("packages/vdcm/src/upward.test.ts")).toEqual(["layering-vdcm-tests"]);
  });

  it("refuses a package that has no entry in layers.json", () => {
    expect(rulesBrokenBy("packages/stray/src/a.ts")).toEqual(["unlisted-package"]);
  });
});

describe("deep-import: @vsva imports go through the exports map", () => {
  it("refuses a path the exports map does not declare", () => {
    expect(rulesBrokenBy("packages/iommu-core/src/deep.ts")).toEqual(["deep-import"]);
  });

  it("refuses a path the exports map closes with null", () => {
    expect(rulesBrokenBy("packages/iommu-core/src/internal.ts")).toEqual(["deep-import"]);
  });

  it("refuses an @vsva package that does not exist", () => {
    expect(rulesBrokenBy("packages/iommu-core/src/unknown.ts")).toEqual(["deep-import"]);
  });
});

describe("no-escape: relative imports stay in their package", () => {
  it("refuses a relative import into another package, allowed or not", () => {
    expect(rulesBrokenBy("packages/iommu-core/src/escape.ts")).toEqual(["no-escape"]);
    expect(rulesBrokenBy("packages/kvm-pasid/src/escape.ts")).toEqual(["layering-kvm-pasid", "no-escape"]);
  });

  it("allows relative imports inside the package and the shared vitest config", () => {
    expect(rulesBrokenBy("packages/iommu-core/src/nested/inside.ts")).toEqual([]);
    expect(rulesBrokenBy("packages/kernel/vitest.config.ts")).toEqual([]);
  });
});

describe("no-cycle: runtime imports form no cycle", () => {
  it("reports a runtime cycle once, with every module on it", () => {
    const cycleFiles = ["a", "b", "c"].map((m) => `packages/iommu-core/src/cycle-${m}.ts`);
    expect(cycles).toHaveLength(1);
    expect([...new Set(cycles[0])].sort()).toEqual(cycleFiles);
  });

  it("ignores a cycle that a type-only import closes, since it vanishes at run time", () => {
    for (const m of ["types-d", "types-e", "mixed-f", "mixed-g"]) {
      expect(rulesBrokenBy(`packages/iommu-core/src/${m}.ts`)).toEqual([]);
    }
  });
});

describe("layers.json", () => {
  it("expands * to every package listed before, and always allows the package itself", () => {
    const allowed = allowedImports({ packages: { a: { uses: [] }, b: { uses: ["a"] }, c: { uses: "*" } } });
    expect(allowed.get("a")).toEqual(["a"]);
    expect(allowed.get("c")).toEqual(["c", "a", "b"]);
  });

  it("refuses a use of a package listed later or not at all, so dependencies point downward", () => {
    expect(() => allowedImports({ packages: { a: { uses: ["b"] }, b: { uses: [] } } })).toThrow(/not listed before/);
    expect(() => allowedImports({ packages: { a: { uses: ["zz"] } } })).toThrow(/"zz"/);
    expect(() => allowedImports({ packages: { a: {} } })).toThrow(/needs "uses"/);
  });

  it("takes testUses only from packages listed before, as a list", () => {
    expect(testOnlyImports({ packages: { a: { uses: [] }, b: { uses: [], testUses: ["a"] } } }).get("b")).toEqual(["a"]);
    expect(() => testOnlyImports({ packages: { a: { uses: [], testUses: ["b"] }, b: { uses: [] } } })).toThrow(/not listed before/);
    expect(() => testOnlyImports({ packages: { a: { uses: [], testUses: "b" } } })).toThrow(/must be a list/);
  });

  it("ignores $comment keys", () => {
    const allowed = allowedImports({ packages: { $comment: "why", a: { $comment: "why", uses: [] }, b: { uses: "*" } } });
    expect([...allowed.keys()]).toEqual(["a", "b"]);
    expect(allowed.get("b")).toEqual(["b", "a"]);
  });

  it("holds for the workspace's own file: vfio-type1 never uses a driver, kvm-pasid only kernel, pgtable, ioasid and machine", () => {
    const allowed = allowedImports(readLayers());
    expect(allowed.get("vfio-type1")).not.toContain("intel-svm");
    expect(allowed.get("kvm-pasid")?.slice(1).sort()).toEqual(["ioasid", "kernel", "machine", "pgtable"]);
  });
});
