#!/usr/bin/env node
// Stamps out a workspace package with the shared shape (source-first exports,
// noEmit tsconfig for checks, build tsconfig for dist, vitest project).
// usage: node scripts/new-package.mjs <name> "<description>" [dep ...]
import fs from "node:fs";
import path from "node:path";

const [name, description, ...deps] = process.argv.slice(2);
if (!name || !description) {
  console.error('usage: new-package.mjs <name> "<description>" [dep ...]');
  process.exit(2);
}
const dir = path.resolve(import.meta.dirname, "..", "packages", name);
if (fs.existsSync(dir)) {
  console.error(`${dir} exists`);
  process.exit(1);
}
fs.mkdirSync(path.join(dir, "src"), { recursive: true });
const write = (f, text) => fs.writeFileSync(path.join(dir, f), text);
const json = (v) => JSON.stringify(v, null, 2) + "\n";
write("package.json", json({
  name: `@vsva/${name}`,
  version: "0.0.0",
  description,
  license: "MIT",
  repository: { type: "git", url: "git+https://github.com/vsva/vsva.git", directory: `packages/${name}` },
  homepage: `https://github.com/vsva/vsva/tree/main/packages/${name}#readme`,
  bugs: { url: "https://github.com/vsva/vsva/issues" },
  engines: { node: ">=20.19" },
  type: "module",
  exports: {
    ".": { "@vsva/source": "./src/index.ts", types: "./dist/index.d.ts", default: "./dist/index.js" },
    "./package.json": "./package.json",
    "./internal/*": null,
  },
  files: ["dist", "src/**/*.ts", "!src/**/*.test.ts", "CHANGELOG.md"],
  scripts: {
    build: "tsc -p tsconfig.build.json",
    typecheck: "tsc -p tsconfig.json",
    lint: "eslint .",
    test: "vitest run",
    // Add `"bench": "tsx --conditions=@vsva/source bench/index.ts"` with the package's first bench.
  },
  dependencies: Object.fromEntries(deps.map((d) => [`@vsva/${d}`, "workspace:*"])),
  devDependencies: { "@types/node": "catalog:", "fast-check": "catalog:", tinybench: "catalog:", tsx: "catalog:", typescript: "catalog:", vitest: "catalog:" },
}));
write("tsconfig.json", json({
  extends: "../../tsconfig.base.json",
  compilerOptions: { noEmit: true, allowImportingTsExtensions: true },
  include: ["src", "bench", "vitest.config.ts"],
}));
write("tsconfig.build.json", json({
  extends: "../../tsconfig.base.json",
  compilerOptions: { rootDir: "src", outDir: "dist", customConditions: [] },
  include: ["src"],
  exclude: ["src/**/*.test.ts", "src/**/*.test-d.ts"],
}));
write("vitest.config.ts", `import { defineProject, mergeConfig } from "vitest/config";
import { sharedProject } from "../../vitest.shared.ts";

export default mergeConfig(sharedProject, defineProject({ test: { name: "${name}" } }));
`);
write("CHANGELOG.md", `# @vsva/${name}\n`);
// Every tarball carries the licence (the release test checks it).
fs.copyFileSync(path.resolve(import.meta.dirname, "..", "LICENSE"), path.join(dir, "LICENSE"));
write("README.md", `# @vsva/${name}\n\n${description}\n`);
write("src/index.ts", "export {};\n");
console.log(`created packages/${name}`);
