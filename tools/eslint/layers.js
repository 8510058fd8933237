// ESLint plugin that keeps the workspace layered (dependencies point down the order of layers.json).
//
// Three rules, all driven by data rather than hand-kept lists:
// - `vsva/layering`: a package may import another `@vsva/*` package only if that
//   package sits in a strictly lower layer of `layers.json`, and only through a
//   subpath its `exports` map declares (no deep imports past `exports`).
// - `vsva/no-escape`: a relative import may not leave its own package directory.
// - `vsva/no-cycle`: runtime (non type-only) relative imports inside a package
//   must not form a cycle. Cross-package cycles are already impossible because
//   layering is a strict order.
import fs from "node:fs";
import path from "node:path";

const root = path.resolve(import.meta.dirname, "../..");
const layerList = JSON.parse(fs.readFileSync(path.join(root, "layers.json"), "utf8")).layers;
/** @type {Map<string, number>} short package name -> layer rank */
const rank = new Map();
layerList.forEach((names, i) => {
  for (const n of names) rank.set(n, i);
});

/** @type {Map<string, {dir: string, name: string, exports: Record<string, unknown>} | null>} */
const pkgCache = new Map();

function findPackage(file) {
  let dir = path.dirname(file);
  while (dir.startsWith(root) && dir !== root) {
    if (pkgCache.has(dir)) return pkgCache.get(dir);
    const pj = path.join(dir, "package.json");
    if (fs.existsSync(pj)) {
      const json = JSON.parse(fs.readFileSync(pj, "utf8"));
      const info = { dir, name: json.name, exports: json.exports ?? {} };
      pkgCache.set(dir, info);
      return info;
    }
    dir = path.dirname(dir);
  }
  return null;
}

function packageDirOf(shortName) {
  for (const base of ["packages", "apps"]) {
    const dir = path.join(root, base, shortName);
    if (fs.existsSync(path.join(dir, "package.json"))) return dir;
  }
  return null;
}

function shortNameOf(fullName) {
  return fullName.startsWith("@vsva/") ? fullName.slice("@vsva/".length) : null;
}

/** Module specifiers of a node that imports or re-exports. */
function sourceOf(node) {
  if (node.type === "ImportExpression") return node.source.type === "Literal" ? node.source : null;
  return node.source ?? null;
}

const layering = {
  meta: { type: "problem", schema: [], messages: {} },
  create(context) {
    const here = findPackage(context.filename);
    const hereShort = here ? shortNameOf(here.name) : null;
    function check(node) {
      const src = sourceOf(node);
      if (!src || typeof src.value !== "string" || !src.value.startsWith("@vsva/")) return;
      const [, shortName, ...rest] = src.value.split("/");
      const subpath = rest.length === 0 ? "." : "./" + rest.join("/");
      if (!rank.has(shortName)) {
        context.report({ node: src, message: `@vsva/${shortName} is not a layer in layers.json` });
        return;
      }
      if (hereShort !== null && shortName !== hereShort) {
        const from = rank.get(hereShort);
        const to = rank.get(shortName);
        if (from === undefined) {
          context.report({ node: src, message: `package ${here.name} has no layer in layers.json` });
        } else if (to >= from) {
          context.report({
            node: src,
            message: `layering: @vsva/${hereShort} (layer ${from}) may not import @vsva/${shortName} (layer ${to}); dependencies point downward only`,
          });
        }
      }
      const dir = packageDirOf(shortName);
      if (dir) {
        const exp = JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8")).exports ?? {};
        if (!Object.hasOwn(exp, subpath) || exp[subpath] === null) {
          context.report({ node: src, message: `deep import: '${src.value}' is not in the exports map of @vsva/${shortName}` });
        }
      }
    }
    return {
      ImportDeclaration: check,
      ExportNamedDeclaration: check,
      ExportAllDeclaration: check,
      ImportExpression: check,
    };
  },
};

const noEscape = {
  meta: { type: "problem", schema: [], messages: {} },
  create(context) {
    const here = findPackage(context.filename);
    function check(node) {
      const src = sourceOf(node);
      if (!here || !src || typeof src.value !== "string" || !src.value.startsWith(".")) return;
      const target = path.resolve(path.dirname(context.filename), src.value);
      // The root vitest.shared.ts is the one sanctioned shared config file.
      if (target === path.join(root, "vitest.shared.ts")) return;
      if (!target.startsWith(here.dir + path.sep)) {
        context.report({ node: src, message: `'${src.value}' reaches outside ${here.name}; import the package by name instead` });
      }
    }
    return { ImportDeclaration: check, ExportNamedDeclaration: check, ExportAllDeclaration: check, ImportExpression: check };
  },
};

// --- cycle detection over runtime relative imports -------------------------

const importRe = /^\s*(import|export)\s+(type\s+)?[^'"]*?from\s*["'](\.[^"']+)["']|^\s*import\s*["'](\.[^"']+)["']/gm;
/** @type {Map<string, string[]>} */
const edgeCache = new Map();

function resolveRelative(fromFile, spec) {
  const base = path.resolve(path.dirname(fromFile), spec);
  const candidates = [base, base.replace(/\.js$/, ".ts"), base + ".ts", path.join(base, "index.ts")];
  return candidates.find((c) => fs.existsSync(c) && fs.statSync(c).isFile()) ?? null;
}

function runtimeEdges(file) {
  const cached = edgeCache.get(file);
  if (cached) return cached;
  const text = fs.existsSync(file) ? fs.readFileSync(file, "utf8") : "";
  const out = [];
  for (const m of text.matchAll(importRe)) {
    if (m[2]) continue; // `import type … from` / `export type … from`
    const spec = m[3] ?? m[4];
    const target = resolveRelative(file, spec);
    if (target) out.push(target);
  }
  edgeCache.set(file, out);
  return out;
}

function findCycle(start) {
  // Iterative DFS looking for a path back to `start`.
  const stack = [[start, [start]]];
  const seen = new Set();
  while (stack.length > 0) {
    const [file, trail] = stack.pop();
    for (const next of runtimeEdges(file)) {
      if (next === start) return trail;
      if (seen.has(next)) continue;
      seen.add(next);
      stack.push([next, [...trail, next]]);
    }
  }
  return null;
}

const noCycle = {
  meta: { type: "problem", schema: [], messages: {} },
  create(context) {
    return {
      Program(node) {
        edgeCache.clear(); // files may have changed since the last lint of this process
        const trail = findCycle(context.filename);
        if (trail) {
          const rel = trail.map((f) => path.relative(root, f)).join(" -> ");
          context.report({ node, message: `import cycle: ${rel} -> ${path.relative(root, context.filename)}` });
        }
      },
    };
  },
};

export default {
  meta: { name: "eslint-plugin-vsva" },
  rules: { layering, "no-escape": noEscape, "no-cycle": noCycle },
};

