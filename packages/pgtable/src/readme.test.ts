import { expect, it } from "vitest";
import { PagePool, SparseMemory, TableWriter, newWalkResult, walkFirstLevel, x86Format } from "./index.js";

// The example of README.md, line for line (imports from "./index.js" instead of "@vsva/pgtable").
it("runs the README example", () => {
  const mem = new SparseMemory({ addrBits: 46, regions: [{ base: 0, size: 16 << 20 }] });
  const pool = new PagePool(mem, 0x10_0000, 1 << 20);
  // An x86-64 4-level table, written as a kernel writes it (checks first, then applies).
  const pt = new TableWriter(mem, x86Format({ levels: 4 }), { alloc: pool.alloc });
  pt.map(0x7f00_0000_0000, 0x20_0000, 4096, { write: true });
  // Walked as a CPU's MMU or a VT-d first level walks it: every entry read goes through the memory bus.
  const cfg = { root: pt.root, levels: 4, addrBits: 46, sre: false, wpe: false, nxe: true, ere: false, eafe: false, pages1g: true } as const;
  const r = walkFirstLevel(mem, cfg, 0x7f00_0000_0123, { write: true }, newWalkResult());
  expect(r).toMatchObject({ ok: true, pa: 0x20_0123, pageSize: 4096, reads: 4 });
});
