import { Errno } from "@vsva/kernel";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { SparseMemory } from "../mem/sparse-memory.js";
import { walkFirstLevel } from "./first-level.js";
import { type PageTableFormat, slFormat, x86Format } from "./formats.js";
import { PagePool } from "./page-pool.js";
import { walkSecondLevel } from "./second-level.js";
import { TableWriter } from "./table-writer.js";
import type { WalkResult } from "./types.js";
import { newWalkResult } from "./walk-result.js";
import { errnoOf } from "@vsva/kernel/testing";

// The writer and the walkers against a model: a list of leaves (va, pa, size,
// writable). Random map/unmap/protect sequences; after each step, every model
// leaf translates as the model says, a probe outside them faults not-present,
// and the writer's own listing equals the model.

const K4 = 4096;
const M2 = 2 ** 21;
const G1 = 2 ** 30;

interface Leaf {
  va: number;
  pa: number;
  size: number;
  write: boolean;
}

type Op =
  | { op: "map"; slot: number; size: number; count: number; pa: number; write: boolean; fixed: boolean }
  | { op: "unmap"; slot: number; size: number; count: number }
  | { op: "protect"; slot: number; size: number; count: number; write: boolean };

const sizeArb = fc.constantFrom(K4, K4, K4, M2, M2, G1);
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    op: fc.constant("map" as const),
    slot: fc.integer({ min: 0, max: 5 }),
    size: sizeArb,
    count: fc.integer({ min: 1, max: 3 }),
    pa: fc.integer({ min: 0, max: 63 }),
    write: fc.boolean(),
    fixed: fc.boolean(),
  }),
  fc.record({ op: fc.constant("unmap" as const), slot: fc.integer({ min: 0, max: 5 }), size: sizeArb, count: fc.integer({ min: 1, max: 3 }) }),
  fc.record({
    op: fc.constant("protect" as const),
    slot: fc.integer({ min: 0, max: 5 }),
    size: sizeArb,
    count: fc.integer({ min: 1, max: 3 }),
    write: fc.boolean(),
  }),
);

/** Model leaves a map creates: the same largest-fit rule the writer documents. */
function split(fmt: PageTableFormat, va: number, pa: number, size: number, write: boolean, fixed: number | undefined): Leaf[] {
  const out: Leaf[] = [];
  for (let off = 0; off < size; ) {
    let s = fixed ?? K4;
    if (fixed === undefined) {
      for (const [l, cand] of [[3, G1], [2, M2]] as const) {
        if (fmt.leafAllowed(l) && (va + off) % cand === 0 && (pa + off) % cand === 0 && size - off >= cand) {
          s = cand;
          break;
        }
      }
    }
    out.push({ va: va + off, pa: pa + off, size: s, write });
    off += s;
  }
  return out;
}

function overlaps(l: Leaf, va: number, size: number): boolean {
  return l.va < va + size && va < l.va + l.size;
}

interface Case {
  name: string;
  fmt: PageTableFormat;
  base: number;
  walk: (mem: SparseMemory, root: number, va: number, write: boolean, out: WalkResult) => WalkResult;
}

const cases: Case[] = [
  {
    name: "x86 4-level, lower half",
    fmt: x86Format({ levels: 4 }),
    base: 0,
    walk: (mem, root, va, write, out) =>
      walkFirstLevel(mem, { root, levels: 4, addrBits: 46, sre: true, wpe: true, nxe: true, ere: true, eafe: false, pages1g: true }, va, { write }, out),
  },
  {
    name: "x86 5-level, upper half",
    fmt: x86Format({ levels: 5 }),
    // Not -2^56: a double holds -2^56 + x exactly only for x a multiple of 8 (see types.ts), and probes are byte offsets.
    base: -(2 ** 50),
    walk: (mem, root, va, write, out) =>
      walkFirstLevel(mem, { root, levels: 5, addrBits: 46, sre: true, wpe: true, nxe: true, ere: true, eafe: false, pages1g: true }, va, { write }, out),
  },
  ...([3, 4, 5] as const).map(
    (levels): Case => ({
      name: `second level, ${levels} levels`,
      fmt: slFormat({ levels }),
      base: 2 ** 38,
      walk: (mem, root, va, write, out) =>
        walkSecondLevel(
          mem,
          { root, levels, addrBits: 46, pages2m: true, pages1g: true, slee: false, slade: false, snoopControl: true, deviceTlb: true },
          va,
          { write },
          out,
        ),
    }),
  ),
];

describe("table writer and walkers agree with a model map", () => {
  for (const c of cases) {
    it(`for random map/unmap/protect sequences (${c.name})`, () => {
      fc.assert(
        fc.property(fc.array(opArb, { minLength: 1, maxLength: 12 }), fc.integer({ min: 0, max: 2 ** 20 }), (ops, probeSeed) => {
          const mem = new SparseMemory({ addrBits: 46, regions: [{ base: 0, size: 0x200_0000 }] });
          const pool = new PagePool(mem, 0x10_0000, 0x1f0_0000);
          const w = new TableWriter(mem, c.fmt, { alloc: pool.alloc, free: pool.free });
          let model: Leaf[] = [];
          const out = newWalkResult();

          for (const op of ops) {
            const va = c.base + op.slot * op.size;
            const size = op.size * op.count;
            if (op.op === "map") {
              const pa = op.pa * op.size;
              const leaves = split(c.fmt, va, pa, size, op.write, op.fixed ? op.size : undefined);
              const expected = model.some((l) => overlaps(l, va, size)) ? Errno.EEXIST : 0;
              expect(errnoOf(() => w.map(va, pa, size, { write: op.write }, op.fixed ? op.size : undefined))).toBe(expected);
              if (expected === 0) model.push(...leaves);
            } else {
              const hit = model.filter((l) => overlaps(l, va, size));
              const cuts = hit.some((l) => l.va < va || l.va + l.size > va + size);
              if (op.op === "unmap") {
                let n: number | undefined;
                expect(errnoOf(() => (n = w.unmap(va, size)))).toBe(cuts ? Errno.EINVAL : 0);
                if (!cuts) {
                  expect(n).toBe(hit.reduce((s, l) => s + l.size, 0));
                  model = model.filter((l) => !overlaps(l, va, size));
                }
              } else {
                const covered = hit.reduce((s, l) => s + l.size, 0) === size;
                const expected = cuts ? Errno.EINVAL : covered ? 0 : Errno.ENOENT;
                expect(errnoOf(() => w.protect(va, size, { write: op.write }))).toBe(expected);
                if (expected === 0) for (const l of hit) l.write = op.write;
              }
            }

            model.sort((a, b) => a.va - b.va);
            expect(w.mappings().map((m) => ({ va: m.va, pa: m.pa, size: m.size, write: m.prot.write }))).toEqual(model);
            for (const l of model) {
              const off = (probeSeed * K4 + (probeSeed % K4)) % l.size;
              const r = c.walk(mem, w.root, l.va + off, false, out);
              expect(r.ok).toBe(true);
              expect(r.pa).toBe(l.pa + off);
              expect(r.pageSize).toBe(l.size);
              expect(c.walk(mem, w.root, l.va + off, true, out).ok).toBe(l.write);
            }
            for (const probe of [c.base + 7 * G1 + (probeSeed % 512) * K4, c.base + (probeSeed % 6) * M2 + K4 * (probeSeed % 3)]) {
              // Probes are page-aligned; a 1-byte width would vanish in rounding at 2^56.
              if (!model.some((l) => overlaps(l, probe, K4))) {
                const r = c.walk(mem, w.root, probe, false, out);
                expect(r.kind).toBe("not-present");
              }
            }
          }
        }),
        { numRuns: 60, seed: 0x5eed },
      );
    });
  }
});
