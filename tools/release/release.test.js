// @ts-check
// What a person outside the repository gets: every package packs into a
// tarball that stands on its own (LICENSE, CHANGELOG, README, metadata, built
// dist, no workspace: or catalog: ranges), the pending changesets are valid,
// and the tarballs install into a plain project outside the workspace, import
// from plain Node ESM (no @vsva/source condition) and type-check with tsc.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../..", import.meta.url));
const pnpm = existsSync(join(root, ".tools/bin/pnpm")) ? join(root, ".tools/bin/pnpm") : "pnpm";
// turbo (the build) looks pnpm up on PATH, as scripts/with-tools.mjs arranges for the root scripts.
const env = { ...process.env, PATH: [join(root, ".tools/bin"), join(root, "node_modules/.bin"), process.env.PATH ?? ""].join(delimiter) };
delete env.INIT_CWD;

/** @param {string} dir */
function readJson(dir) {
  return JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
}

/** The publishable packages: every workspace package under packages/ that is not private. */
const packages = readdirSync(join(root, "packages"))
  .map((name) => join(root, "packages", name))
  .filter((dir) => existsSync(join(dir, "package.json")) && readJson(dir).private !== true)
  .map((dir) => ({ dir, pkg: readJson(dir) }));

/** @param {string} cmd @param {string[]} args @param {string} cwd */
function run(cmd, args, cwd) {
  const r = spawnSync(cmd, args, { cwd, env, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} (in ${cwd}) exited ${String(r.status)}:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

const work = mkdtempSync(join(tmpdir(), "vsva-release-"));
/** @type {Map<string, string>} package name -> tarball path */
const tarballs = new Map();
/** @type {Map<string, any>} package name -> the package.json inside its tarball */
const packed = new Map();

beforeAll(() => {
  // The tarballs carry dist/, so build first (turbo replays it from cache when nothing changed).
  run(join(root, "node_modules/.bin/turbo"), ["run", "build", "--filter=./packages/*", "--output-logs=errors-only"], root);
  const dest = join(work, "tarballs");
  mkdirSync(dest);
  for (const { dir, pkg } of packages) {
    run(pnpm, ["pack", "--pack-destination", dest], dir);
    const file = readdirSync(dest).find((f) => f.startsWith(`${pkg.name.replace("@", "").replace("/", "-")}-`) && f.endsWith(".tgz"));
    if (file === undefined) throw new Error(`no tarball for ${pkg.name}`);
    tarballs.set(pkg.name, join(dest, file));
    packed.set(pkg.name, JSON.parse(execFileSync("tar", ["-xzOf", join(dest, file), "package/package.json"], { encoding: "utf8" })));
  }
}, 240_000);

afterAll(() => {
  rmSync(work, { recursive: true, force: true });
});

describe("every package's tarball", () => {
  it("exists for each publishable package", () => {
    expect(packages.map((p) => p.pkg.name).sort()).toEqual([...tarballs.keys()].sort());
    expect(packages.length).toBeGreaterThanOrEqual(6);
  });

  for (const { pkg } of packages) {
    it(`${pkg.name}: no workspace: or catalog: range left, and every @vsva dependency at its exact version`, () => {
      const got = packed.get(pkg.name);
      for (const field of ["dependencies", "peerDependencies", "optionalDependencies", "devDependencies"]) {
        for (const [name, range] of Object.entries(got[field] ?? {})) {
          expect(String(range), `${field}.${name}`).not.toMatch(/^(workspace|catalog):/);
        }
      }
      for (const [name, range] of Object.entries(got.dependencies ?? {})) {
        const dep = packages.find((p) => p.pkg.name === name);
        if (dep !== undefined) expect(range, name).toBe(dep.pkg.version);
      }
    });

    it(`${pkg.name}: LICENSE, CHANGELOG.md, README.md with an install line, built dist, repository/homepage/bugs, no tests`, () => {
      const list = execFileSync("tar", ["-tzf", tarballs.get(pkg.name) ?? ""], { encoding: "utf8" }).split("\n");
      for (const f of ["LICENSE", "CHANGELOG.md", "README.md", "dist/index.js", "dist/index.d.ts"]) expect(list, f).toContain(`package/${f}`);
      expect(list.filter((f) => f.endsWith(".test.ts") || f.endsWith(".test.js"))).toEqual([]);
      const got = packed.get(pkg.name);
      expect(got.license).toBe("MIT");
      expect(got.repository?.url).toMatch(/^git\+https:\/\//);
      expect(got.repository?.directory).toBe(`packages/${pkg.name.replace("@vsva/", "")}`);
      expect(got.homepage).toMatch(/^https:\/\//);
      expect(got.bugs?.url).toMatch(/^https:\/\//);
      const readme = execFileSync("tar", ["-xzOf", tarballs.get(pkg.name) ?? "", "package/README.md"], { encoding: "utf8" });
      expect(readme).toContain(`npm install ${pkg.name}`);
      // Outside readers cannot follow citations of documents that are not in the repository.
      expect(readme).not.toMatch(/\bseed \d{3}\b|spec-facts|shared\//i);
      expect(pkg.description).not.toMatch(/\bseed \d{3}\b|spec-facts|shared\//i);
    });
  }
});

describe("pending changesets", () => {
  it("pass `changeset status`", () => {
    // Against the base branch when the clone has it; a single-branch CI checkout still has every changeset parsed and checked.
    const hasBase = spawnSync("git", ["rev-parse", "--verify", "--quiet", "main"], { cwd: root, env }).status === 0;
    const r = spawnSync(join(root, "node_modules/.bin/changeset"), hasBase ? ["status"] : ["status", "--since=HEAD"], { cwd: root, env, encoding: "utf8" });
    expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
  });
});

describe("a project outside the workspace", () => {
  const consumer = join(work, "consumer");

  beforeAll(() => {
    mkdirSync(consumer);
    // Every @vsva package from its tarball, dependencies between them too (overrides): nothing from a registry.
    const files = Object.fromEntries([...tarballs].map(([name, file]) => [name, `file:${file}`]));
    writeFileSync(
      join(consumer, "package.json"),
      JSON.stringify({ name: "vsva-consumer", private: true, type: "module", dependencies: files, pnpm: { overrides: files } }, null, 2),
    );
    run(pnpm, ["install", "--offline", "--ignore-workspace", "--config.confirmModulesPurge=false"], consumer);
  }, 240_000);

  it("imports every package and its testing entry from plain Node ESM, without the @vsva/source condition", () => {
    writeFileSync(
      join(consumer, "main.mjs"),
      [
        `import { Kernel, KernelError, Errno, asSpid, NOTIFY_OK } from "@vsva/kernel";`,
        `import { errnoOf } from "@vsva/kernel/testing";`,
        `import { IoasidCore } from "@vsva/ioasid";`,
        `import * as hw from "@vsva/iommu-hw";`,
        `import * as core from "@vsva/iommu-core";`,
        `import * as vtd from "@vsva/intel-svm";`,
        `import * as smmu from "@vsva/arm-smmu-v3";`,
        `const k = new Kernel();`,
        `const ioasid = new IoasidCore({ scheduler: k.scheduler, trace: k.trace, faults: k.faults });`,
        `const set = ioasid.allocSet({}, 4, "mm");`,
        `const id = ioasid.alloc(set, 1, 0xfffff);`,
        `ioasid.attachSpid(set, id, asSpid(7));`,
        `const other = ioasid.allocSet({}, 4, "mm");`,
        `const refused = errnoOf(() => ioasid.free(other, id));`,
        `ioasid.free(set, id);`,
        `console.log(JSON.stringify({ id, refused: refused === Errno.EACCES, state: ioasid.state(id), kernelError: typeof KernelError, ok: NOTIFY_OK !== undefined,`,
        `  hw: Object.keys(hw).length, core: Object.keys(core).length, vtd: Object.keys(vtd).length, smmu: Object.keys(smmu).length }));`,
      ].join("\n"),
    );
    const out = JSON.parse(run(process.execPath, ["main.mjs"], consumer));
    expect(out).toMatchObject({ id: 1, refused: true, state: "IDLE", kernelError: "function", ok: true });
    for (const n of [out.hw, out.core, out.vtd, out.smmu]) expect(n).toBeGreaterThan(0);
  });

  it("type-checks a TypeScript consumer and every package's README example with tsc, and the examples run", () => {
    writeFileSync(
      join(consumer, "tsconfig.json"),
      JSON.stringify({ compilerOptions: { target: "es2022", module: "nodenext", moduleResolution: "nodenext", strict: true, outDir: "out", skipLibCheck: false, types: [] }, include: ["*.ts"] }),
    );
    writeFileSync(
      join(consumer, "main.ts"),
      [
        `import { Kernel, type Ioasid, asSpid } from "@vsva/kernel";`,
        `import { IoasidCore } from "@vsva/ioasid";`,
        `import { IommuCore } from "@vsva/iommu-core";`,
        `import { SparseMemory } from "@vsva/iommu-hw";`,
        `const k = new Kernel();`,
        `const ioasid = new IoasidCore({ scheduler: k.scheduler, trace: k.trace, faults: k.faults });`,
        `const set = ioasid.allocSet({}, 4, "mm");`,
        `const id: Ioasid = ioasid.alloc(set, 1, 0xfffff);`,
        `ioasid.attachSpid(set, id, asSpid(7));`,
        `const core = new IommuCore({ kernel: k, ioasid });`,
        `const mem = new SparseMemory({ addrBits: 46, regions: [{ base: 0, size: 1 << 24 }] });`,
        `export const used: readonly unknown[] = [core, mem];`,
      ].join("\n"),
    );
    // The first ```ts block of each packed README, as a reader would paste it.
    const examples = [];
    for (const [name, file] of tarballs) {
      const readme = execFileSync("tar", ["-xzOf", file, "package/README.md"], { encoding: "utf8" });
      const block = /```ts\n([\s\S]*?)```/.exec(readme)?.[1];
      expect(block, `${name}'s README has a TypeScript example`).toBeDefined();
      const base = `readme-${name.replace("@vsva/", "")}`;
      writeFileSync(join(consumer, `${base}.ts`), `${block ?? ""}\nexport {};\n`);
      examples.push({ name, base });
    }
    const tsc = join(root, "node_modules/.bin/tsc");
    run(tsc, ["-p", "tsconfig.json"], consumer);
    for (const { name, base } of examples) {
      const r = spawnSync(process.execPath, [join("out", `${base}.js`)], { cwd: consumer, env, encoding: "utf8" });
      expect(r.status, `${name}'s README example:\n${r.stderr}`).toBe(0);
    }
    // And tsc must fail on a wrong use: the check is real.
    const bad = join(work, "bad");
    mkdirSync(bad);
    writeFileSync(join(bad, "tsconfig.json"), JSON.stringify({ compilerOptions: { module: "nodenext", strict: true, noEmit: true, types: [] }, files: ["bad.ts"] }));
    writeFileSync(join(bad, "bad.ts"), `import { IoasidCore } from "@vsva/ioasid";\nexport const x: number = new IoasidCore({});\n`);
    execFileSync("ln", ["-s", join(consumer, "node_modules"), join(bad, "node_modules")]);
    writeFileSync(join(bad, "package.json"), JSON.stringify({ type: "module" }));
    const failed = spawnSync(tsc, ["-p", "tsconfig.json"], { cwd: bad, env, encoding: "utf8" });
    expect(failed.status).not.toBe(0);
    expect(failed.stdout).toMatch(/error TS\d+/);
  });
});
