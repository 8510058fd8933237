import { resetStats, SparseMemory, walkFirstLevel, slFormat, x86Format, PagePool, secondLevelStage, walkSecondLevel, TableWriter, type FirstLevelConfig, type FirstLevelWalkOptions, type SecondLevelConfig, newWalkResult } from "@vsva/pgtable";
import { WalkCache } from "../src/pt/walk-cache.js";
import type { Figure } from "./figure.js";

/**
 * Deterministic memory-reference counts of page walks (entry reads, as
 * PhysMem.stats counts them), not timings:
 * - a cold nested 4-level-over-4-level walk: the architectural bound is
 *   5 second-level walks of 4 reads (FLPTPTR table, PDPT, PD, PT, output)
 *   plus 4 first-level reads = 24;
 * - the walk to the neighbouring 4 KiB page after it, with first- and
 *   second-level paging-structure caches: the first-level PTE and the
 *   second-level PTE of the output, 2;
 * - the same for 5-over-5 (6 × 5 + 5 = 35) and for a second-level-only walk.
 * The second level maps guest-physical memory 1:1 with 4 KiB pages, so every
 * second-level walk is a full-depth one.
 */
export function benchWalk(): Promise<Figure[]> {
  const figures: Figure[] = [];
  for (const levels of [4, 5] as const) {
    const r = rig(levels);
    const coldOpts: FirstLevelWalkOptions = { secondStage: secondLevelStage(r.mem, r.sl) };
    resetStats(r.mem.stats);
    const cold = walkFirstLevel(r.mem, r.fl, r.va, { write: false }, newWalkResult(), coldOpts);
    const bound = (levels + 1) * levels + levels;
    figures.push(
      refs(`nested ${levels}/${levels} cold walk`, cold.ok ? r.mem.stats.reads : -1, bound),
      refs(`nested ${levels}/${levels} cold walk, A/D writes (A preset)`, cold.ok ? r.mem.stats.writes : -1, 0),
    );

    const warmOpts: FirstLevelWalkOptions = {
      secondStage: secondLevelStage(r.mem, r.sl, { psc: { cache: new WalkCache("sl-psc", 256), tag: 1 } }),
      psc: { cache: new WalkCache("fl-psc", 256), tag: 1 },
    };
    const out = newWalkResult();
    walkFirstLevel(r.mem, r.fl, r.va, { write: false }, out, warmOpts);
    resetStats(r.mem.stats);
    const warm = walkFirstLevel(r.mem, r.fl, r.va + 4096, { write: false }, out, warmOpts);
    figures.push(refs(`nested ${levels}/${levels} warm walk to the neighbouring 4 KiB page (PSC)`, warm.ok ? r.mem.stats.reads : -1, 2));
  }

  const r = rig(4);
  const psc = { psc: { cache: new WalkCache("sl-psc", 256), tag: 1 } };
  const out = newWalkResult();
  resetStats(r.mem.stats);
  walkSecondLevel(r.mem, r.sl, 0x80_0000, { write: true }, out, psc);
  figures.push(refs("second-level 4-level cold walk", out.ok ? r.mem.stats.reads : -1, 4));
  resetStats(r.mem.stats);
  walkSecondLevel(r.mem, r.sl, 0x80_1000, { write: true }, out, psc);
  figures.push(refs("second-level warm walk to the neighbouring page (PSC)", out.ok ? r.mem.stats.reads : -1, 1));
  return Promise.resolve(figures);
}

function refs(name: string, value: number, max: number): Figure {
  return { name, value, unit: " refs", target: `≤ ${max}`, ok: value >= 0 && value <= max };
}

interface Rig {
  mem: SparseMemory;
  fl: FirstLevelConfig;
  sl: SecondLevelConfig;
  va: number;
}

function rig(levels: 4 | 5): Rig {
  const mem = new SparseMemory({ addrBits: 46, regions: [{ base: 0, size: 0x200_0000 }] });
  const slPool = new PagePool(mem, 0x100_0000, 0x80_0000);
  const flPool = new PagePool(mem, 0x10_0000, 0x10_0000);
  const slw = new TableWriter(mem, slFormat({ levels }), { alloc: slPool.alloc });
  // 1:1 guest-physical map of the first 16 MiB, 4 KiB pages: full-depth second-level walks.
  slw.map(0, 0, 0x100_0000, { write: true }, 4096);
  const flw = new TableWriter(mem, x86Format({ levels }), { alloc: flPool.alloc });
  const va = 0x7f12_3456_7000;
  flw.map(va, 0x80_0000, 2 * 4096, { write: true, accessed: true, dirty: true }, 4096);
  // The writer leaves A clear in the non-leaf entries; one walk sets them, as a CPU would have.
  walkFirstLevel(mem, flConfig(flw.root, levels), va, { write: false }, newWalkResult(), {
    secondStage: secondLevelStage(mem, slConfig(slw.root, levels)),
  });
  return { mem, fl: flConfig(flw.root, levels), sl: slConfig(slw.root, levels), va };
}

function flConfig(root: number, levels: 4 | 5): FirstLevelConfig {
  return { root, levels, addrBits: 46, sre: true, wpe: true, nxe: true, ere: true, eafe: false, pages1g: true };
}

function slConfig(root: number, levels: 4 | 5): SecondLevelConfig {
  return { root, levels, addrBits: 46, pages2m: true, pages1g: true, slee: false, slade: false, snoopControl: true, deviceTlb: true };
}
