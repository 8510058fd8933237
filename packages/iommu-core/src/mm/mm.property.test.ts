import { Errno, Kernel } from "@vsva/kernel";
import { SparseMemory } from "@vsva/pgtable";
import fc from "fast-check";
import { expect, it } from "vitest";
import { PAGE_SIZE, PageAllocator } from "../page-alloc.js";
import { Mm } from "./mm.js";
import { PhysMemBacking } from "./phys-backing.js";
import { Prot, vmaAllows } from "./prot.js";
import { errnoOf } from "@vsva/kernel/testing";

/**
 * Random mmap/munmap/mprotect/reclaim/CPU-access sequences over a 16-page
 * window, checked against a model that knows only pages: which are mapped,
 * with which protection, and what bytes they hold. After every step the VMAs
 * must be the model's pages merged, resident PTEs must carry the VMA's write
 * permission, and every invalidation must cover each page that lost a PTE
 * permission. At the end, exit must give every page back.
 */
const BASE = 0x5555_0000_0000;
const WINDOW = 16;

type Op =
  | { readonly op: "mmap"; readonly at: number; readonly n: number; readonly prot: number; readonly populate: boolean }
  | { readonly op: "munmap" | "reclaim"; readonly at: number; readonly n: number }
  | { readonly op: "mprotect"; readonly at: number; readonly n: number; readonly prot: number }
  | { readonly op: "write"; readonly at: number; readonly off: number; readonly value: number }
  | { readonly op: "read"; readonly at: number; readonly off: number };

const page = fc.integer({ min: 0, max: WINDOW - 1 });
const count = fc.integer({ min: 1, max: 5 });
const prot = fc.constantFrom(Prot.NONE, Prot.READ, Prot.READ | Prot.WRITE, Prot.WRITE, Prot.READ | Prot.EXEC);
const offset = fc.integer({ min: 0, max: PAGE_SIZE - 1 });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ op: fc.constant("mmap" as const), at: page, n: count, prot, populate: fc.boolean() }),
  fc.record({ op: fc.constantFrom("munmap" as const, "reclaim" as const), at: page, n: count }),
  fc.record({ op: fc.constant("mprotect" as const), at: page, n: count, prot }),
  fc.record({ op: fc.constant("write" as const), at: page, off: offset, value: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ op: fc.constant("read" as const), at: page, off: offset }),
);

interface ModelPage {
  prot: number;
  bytes: Map<number, number>;
}

function expectedVmas(model: Map<number, ModelPage>): { start: number; end: number; prot: number }[] {
  const out: { start: number; end: number; prot: number }[] = [];
  for (let i = 0; i < WINDOW; i++) {
    const p = model.get(i);
    if (p === undefined) continue;
    const start = BASE + i * PAGE_SIZE;
    const last = out[out.length - 1];
    if (last?.end === start && last.prot === p.prot) last.end = start + PAGE_SIZE;
    else out.push({ start, end: start + PAGE_SIZE, prot: p.prot });
  }
  return out;
}

it("agrees with a page model over random mapping and access sequences", () => {
  fc.assert(
    fc.property(fc.array(opArb, { minLength: 1, maxLength: 40 }), fc.constantFrom(4 as const, 5 as const), (ops, levels) => {
      const kernel = new Kernel();
      const mem = new SparseMemory({ addrBits: 40, regions: [{ base: 0x100_0000, size: 256 * PAGE_SIZE }] });
      const pages = new PageAllocator({ base: 0x100_0000, size: 256 * PAGE_SIZE, backing: new PhysMemBacking(mem), faults: kernel.faults });
      const mm = new Mm({ kernel, mem, pages, levels, name: "prop" });
      const flushed = new Set<number>();
      mm.registerNotifier({
        invalidateRange: (_m, start, end) => {
          for (let va = start; va < end; va += PAGE_SIZE) flushed.add((va - BASE) / PAGE_SIZE);
        },
        release: () => undefined,
      });
      const model = new Map<number, ModelPage>();
      const range = (at: number, n: number) => Array.from({ length: Math.min(n, WINDOW - at) }, (_, k) => at + k);
      for (const o of ops) {
        const va = BASE + o.at * PAGE_SIZE;
        const before = new Map([...model].map(([i, p]) => [i, p.prot]));
        const resident = new Set(range(0, WINDOW).filter((i) => mm.lookup(BASE + i * PAGE_SIZE) !== null));
        flushed.clear();
        switch (o.op) {
          case "mmap": {
            const ps = range(o.at, o.n);
            const size = ps.length * PAGE_SIZE;
            const want = ps.some((i) => model.has(i)) ? Errno.EEXIST : 0;
            expect(errnoOf(() => mm.mmap(va, size, o.prot, { populate: o.populate }))).toBe(want);
            if (want === 0) for (const i of ps) model.set(i, { prot: o.prot, bytes: new Map() });
            break;
          }
          case "munmap":
            expect(errnoOf(() => mm.munmap(va, range(o.at, o.n).length * PAGE_SIZE))).toBe(0);
            for (const i of range(o.at, o.n)) model.delete(i);
            break;
          case "reclaim":
            mm.reclaim(va, range(o.at, o.n).length * PAGE_SIZE);
            break;
          case "mprotect": {
            const ps = range(o.at, o.n);
            const want = ps.every((i) => model.has(i)) ? 0 : Errno.ENOMEM;
            expect(errnoOf(() => mm.mprotect(va, ps.length * PAGE_SIZE, o.prot))).toBe(want);
            if (want === 0) for (const i of ps) (model.get(i) ?? { prot: 0 }).prot = o.prot;
            break;
          }
          case "write": {
            const p = model.get(o.at);
            const want = p === undefined ? Errno.EFAULT : vmaAllows(p.prot, { write: true }) ? 0 : Errno.EACCES;
            expect(errnoOf(() => mm.write(va + o.off, new Uint8Array([o.value])))).toBe(want);
            if (want === 0) p?.bytes.set(o.off, o.value);
            break;
          }
          case "read": {
            const p = model.get(o.at);
            const want = p === undefined ? Errno.EFAULT : vmaAllows(p.prot, {}) ? 0 : Errno.EACCES;
            let got: Uint8Array | null = null;
            expect(errnoOf(() => (got = mm.read(va + o.off, 1)))).toBe(want);
            if (want === 0) expect(got).toEqual(new Uint8Array([p?.bytes.get(o.off) ?? 0]));
            break;
          }
        }
        expect(mm.vmas()).toEqual(expectedVmas(model));
        for (let i = 0; i < WINDOW; i++) {
          const leaf = mm.lookup(BASE + i * PAGE_SIZE);
          const p = model.get(i);
          if (leaf === null) continue;
          // A resident page is in a VMA that allows access, with the VMA's write permission.
          expect(p === undefined || p.prot === Prot.NONE).toBe(false);
          expect(leaf.prot.write).toBe(((p?.prot ?? 0) & Prot.WRITE) !== 0);
          // A page that was resident and lost write (or its PTE) was flushed.
          const lostWrite = ((before.get(i) ?? 0) & Prot.WRITE) !== 0 && !leaf.prot.write;
          if (lostWrite && resident.has(i)) expect(flushed.has(i)).toBe(true);
        }
        for (const i of resident) if (mm.lookup(BASE + i * PAGE_SIZE) === null) expect(flushed.has(i)).toBe(true);
      }
      mm.exit();
      expect(pages.stats.livePages).toBe(0);
    }),
    { numRuns: 150 },
  );
});
