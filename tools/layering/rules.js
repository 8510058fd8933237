// The workspace's import rules as a dependency-cruiser configuration, built
// from layers.json so the design table is the only list to keep:
// - layering: a package imports only itself and the packages its "uses" names;
// - unlisted-package: every package has an entry in layers.json;
// - deep-import: `@vsva/*` imports resolve through the target's `exports` map
//   (with the `@vsva/source` condition), so a subpath the map does not declare,
//   or declares `null`, does not resolve and is refused;
// - not-to-unresolvable: every other import resolves too;
// - no-escape: a relative import stays inside its own package;
// - no-cycle: runtime imports form no cycle (type-only imports vanish at run
//   time and may be mutual).
import fs from "node:fs";
import path from "node:path";

export const workspaceRoot = path.resolve(import.meta.dirname, "../..");

/** Package directories: a key of layers.json is the directory name under one of these. */
const PKG = "(packages|apps)";

function escapeRe(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/**
 * The packages of a layers.json object and, for each, the set of packages it
 * may import (itself included), in listed order. Throws on data that would make
 * the rule meaningless: a "uses" entry that is not listed before the package
 * (an upward or unknown dependency) or a malformed entry.
 *
 * @param {{ packages: Record<string, { uses: string[] | "*" }> }} layers
 * @returns {Map<string, string[]>}
 */
export function allowedImports(layers) {
  /** @type {Map<string, string[]>} */
  const allowed = new Map();
  for (const [name, entry] of Object.entries(layers.packages)) {
    if (name.startsWith("$")) continue;
    const lower = [...allowed.keys()];
    let uses;
    if (entry.uses === "*") {
      uses = lower;
    } else if (Array.isArray(entry.uses)) {
      uses = entry.uses;
    } else {
      throw new Error(`layers.json: "${name}" needs "uses": a list of package names or "*"`);
    }
    for (const dep of uses) {
      if (!lower.includes(dep)) {
        throw new Error(
          `layers.json: "${name}" uses "${dep}", which is not listed before it; dependencies point downward only`,
        );
      }
    }
    allowed.set(name, [name, ...uses]);
  }
  return allowed;
}

/** A package's test files (`*.test.ts`, `*.test-d.ts`): what `testUses` applies to. */
const TEST_FILE = "\\.test(-d)?\\.ts$";

/**
 * For each package with a "testUses" list: the packages its tests may import
 * beyond its "uses" (a test may drive the package over a real neighbour, as a
 * devDependency, without the package's own code ever importing it). Listed
 * before the package too, so a test cannot reach upward either.
 *
 * @param {{ packages: Record<string, { uses: string[] | "*", testUses?: string[] }> }} layers
 * @returns {Map<string, string[]>}
 */
export function testOnlyImports(layers) {
  /** @type {Map<string, string[]>} */
  const out = new Map();
  const seen = [];
  for (const [name, entry] of Object.entries(layers.packages)) {
    if (name.startsWith("$")) continue;
    if (entry.testUses !== undefined) {
      if (!Array.isArray(entry.testUses)) throw new Error(`layers.json: "${name}": "testUses" must be a list of package names`);
      for (const dep of entry.testUses) {
        if (!seen.includes(dep)) throw new Error(`layers.json: "${name}" tests use "${dep}", which is not listed before it`);
      }
      out.set(name, entry.testUses);
    }
    seen.push(name);
  }
  return out;
}

/** @returns {{ packages: Record<string, { uses: string[] | "*" }> }} */
export function readLayers(file = path.join(workspaceRoot, "layers.json")) {
  return JSON.parse(fs.readFileSync(file, "utf8"));
}

/**
 * The dependency-cruiser configuration (rules and options) for a layers.json
 * object. Paths in the rules are relative to the workspace root, which is the
 * cruise's base directory.
 */
export function dependencyCruiserConfig(layers) {
  const allowed = allowedImports(layers);
  const names = [...allowed.keys()];
  const anyOf = (list) => list.map(escapeRe).join("|");

  const testOnly = testOnlyImports(layers);
  const layering = names.flatMap((name) => {
    const uses = allowed.get(name).slice(1);
    const extra = testOnly.get(name);
    const rule = {
      name: `layering-${name}`,
      comment: `@vsva/${name} may import only ${uses.length > 0 ? uses.map((u) => `@vsva/${u}`).join(", ") : "no other @vsva package"} (layers.json)`,
      severity: "error",
      from: extra === undefined ? { path: `^${PKG}/${escapeRe(name)}/` } : { path: `^${PKG}/${escapeRe(name)}/`, pathNot: TEST_FILE },
      to: { path: `^${PKG}/[^/]+/`, pathNot: `^${PKG}/(${anyOf(allowed.get(name))})/` },
    };
    if (extra === undefined) return [rule];
    return [
      rule,
      {
        name: `layering-${name}-tests`,
        comment: `@vsva/${name}'s tests may import what it uses and ${extra.map((u) => `@vsva/${u}`).join(", ")} (layers.json testUses)`,
        severity: "error",
        from: { path: `^${PKG}/${escapeRe(name)}/.*${TEST_FILE}` },
        to: { path: `^${PKG}/[^/]+/`, pathNot: `^${PKG}/(${anyOf([...allowed.get(name), ...extra])})/` },
      },
    ];
  });

  return {
    forbidden: [
      ...layering,
      {
        name: "unlisted-package",
        comment: "this package has no entry in layers.json, so nothing says what it may import; add it there",
        severity: "error",
        from: { path: `^${PKG}/[^/]+/`, pathNot: `^${PKG}/(${anyOf(names)})/` },
        to: {},
      },
      {
        name: "deep-import",
        comment:
          "a @vsva import that does not resolve: its subpath is not in the package's exports map (import the package's public entry instead), or the package is not a dependency in this package's package.json",
        severity: "error",
        from: {},
        to: { couldNotResolve: true, path: "^@vsva/" },
      },
      {
        name: "not-to-unresolvable",
        comment: "an import that resolves to no file",
        severity: "error",
        from: {},
        to: { couldNotResolve: true, pathNot: "^@vsva/" },
      },
      {
        name: "no-escape",
        comment:
          "a relative import that leaves its package; import the other package by name (the root vitest.shared.ts is the one shared file)",
        severity: "error",
        from: { path: `^${PKG}/([^/]+)/` },
        to: { dependencyTypes: ["local"], pathNot: ["^$1/$2/", "^vitest\\.shared\\.ts$"] },
      },
      {
        name: "no-cycle",
        comment: "runtime imports that form a cycle; type-only imports are left out, they vanish at run time",
        severity: "error",
        from: {},
        to: { circular: true, dependencyTypesNot: ["type-only"], viaOnly: { dependencyTypesNot: ["type-only"] } },
      },
    ],
    options: {
      doNotFollow: { path: "(^|/)node_modules/" },
      exclude: { path: "(^|/)(node_modules|dist|coverage|\\.turbo)/" },
      // See type-only imports, so that they are checked for layering and told
      // apart from runtime imports for cycles.
      tsPreCompilationDeps: true,
      enhancedResolveOptions: {
        exportsFields: ["exports"],
        conditionNames: ["@vsva/source", "import", "node", "default"],
        extensions: [".ts", ".js", ".mjs"],
      },
      reporterOptions: {
        mermaid: { minify: false },
      },
    },
  };
}
