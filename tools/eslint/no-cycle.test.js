import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Linter } from "eslint";
import tseslint from "typescript-eslint";
import { afterAll, describe, expect, it } from "vitest";
import vsva from "./layers.js";

// Cycle detection reads the files on disk, so the fixture is a small tree in a
// temporary directory.
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vsva-cycle-"));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function write(name, text) {
  fs.writeFileSync(path.join(dir, name), text);
  return path.join(dir, name);
}

function lint(file) {
  const linter = new Linter({ configType: "flat", cwd: dir });
  return linter
    .verify(
      fs.readFileSync(file, "utf8"),
      [{ files: ["**/*.ts"], languageOptions: { parser: tseslint.parser }, plugins: { vsva }, rules: { "vsva/no-cycle": "error" } }],
      { filename: file },
    )
    .map((m) => m.message);
}

describe("vsva/no-cycle", () => {
  it("reports a runtime import cycle", () => {
    const a = write("a.ts", 'import { b } from "./b.js";\nexport const a = b;\n');
    write("b.ts", 'import { c } from "./c.js";\nexport const b = c;\n');
    write("c.ts", 'import { a } from "./a.js";\nexport const c = 1;\n');
    expect(lint(a)[0]).toMatch(/import cycle: .*a\.ts -> .*b\.ts -> .*c\.ts -> .*a\.ts/);
  });

  it("ignores type-only imports, which vanish at run time", () => {
    const d = write("d.ts", 'import type { E } from "./e.js";\nexport type D = E;\n');
    write("e.ts", 'import type { D } from "./d.js";\nexport type E = D | 1;\n');
    expect(lint(d)).toEqual([]);
  });
});
