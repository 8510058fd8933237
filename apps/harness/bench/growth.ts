// The harness growth figure (`pnpm bench`): how building a host and running its DMA scale with its size.
import { Prot } from "@vsva/iommu-core";
import { Host, type DeviceSlot } from "../src/world/host.js";
import type { PlatformName } from "../src/world/platform.js";

/** Bound PASIDs per endpoint, and DMAs per bound PASID. */
export const PASIDS_PER_DEVICE = 16;
export const DMAS_PER_PASID = 100;
const PAGE = 4096;

interface Built {
  readonly host: Host;
  readonly work: { readonly slot: DeviceSlot; readonly pasid: number; readonly buf: number }[];
}

/**
 * A host with `n` endpoints, each with SVA enabled and {@link PASIDS_PER_DEVICE}
 * processes bound (one PASID each, a populated page per process): what a
 * host with many accelerators and many SVA users holds.
 */
export function build(n: number, platform: PlatformName = "vtd"): Built {
  const host = new Host({ platform });
  const work: { slot: DeviceSlot; pasid: number; buf: number }[] = [];
  for (let d = 0; d < n; d++) {
    const slot = host.addDevice(`dsa${d}`);
    host.enableSva(slot);
    for (let p = 0; p < PASIDS_PER_DEVICE; p++) {
      const mm = host.newMm(`p${d}.${p}`);
      const buf = mm.mmap(null, PAGE, Prot.READ | Prot.WRITE, { populate: true });
      const bond = host.core.sva.bindDevice(slot.dev, mm);
      work.push({ slot, pasid: bond.pasid, buf });
    }
  }
  return { host, work };
}

const PATTERN = Uint8Array.of(0x5a, 0xa5, 0x5a, 0xa5);

/** {@link DMAS_PER_PASID} DMA writes through every bound PASID. */
export function runDma(b: Built): void {
  for (const w of b.work) {
    const dma = w.slot.ep.dma;
    for (let i = 0; i < DMAS_PER_PASID; i++) {
      dma.setProgram({ pasid: w.pasid, addr: w.buf + ((i * 64) % PAGE), length: PATTERN.length, direction: "write", pattern: PATTERN });
      if (dma.trigger() !== "ok") throw new Error(`growth bench: DMA through PASID ${w.pasid} failed: ${dma.result}`);
    }
  }
}

const SIZES = [1, 2, 4, 8, 16, 32, 64] as const;
const SAMPLES = 5;
const MAX_N = SIZES[SIZES.length - 1] ?? 64;
const TARGET = 2.2;

interface Sample {
  readonly buildMs: number;
  readonly dmaMs: number;
  readonly heapPerPasid: number;
}

/** Forces a full collection when the bench runs with `--expose-gc`; heap figures are rougher without. */
export function collect(): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc !== undefined) gc();
}

/**
 * CPU time this process used, in ms. The bench machine is shared: wall time
 * counts the time other processes ran, CPU time only ours.
 */
export function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/**
 * Builds `reps` hosts of `n` endpoints, then runs the DMA on each; returns the
 * time per host. Every sample builds the same number of endpoints in all
 * (`reps × n`), so each timing spans enough work to keep timer noise small
 * and the live heap, and with it the garbage collector's share, is the same
 * at every size: the ratios show how the simulator scales, not the GC.
 */
function sample(n: number, reps: number): Sample {
  collect();
  const heap0 = process.memoryUsage().heapUsed;
  const t0 = cpuMs();
  const hosts = Array.from({ length: reps }, () => build(n));
  const t1 = cpuMs();
  collect();
  const heap1 = process.memoryUsage().heapUsed;
  const t2 = cpuMs();
  for (const h of hosts) runDma(h);
  const t3 = cpuMs();
  const pasids = hosts.reduce((sum, h) => sum + h.work.length, 0);
  return { buildMs: (t1 - t0) / reps, dmaMs: (t3 - t2) / reps, heapPerPasid: (heap1 - heap0) / pasids };
}

/**
 * Growth of a host with N endpoints × 16 bound PASIDs × 100 DMAs each, N = 1 …
 * 64: build(2N) ÷ build(N) and DMA(2N) ÷ DMA(N) for each doubling, each the
 * median over {@link SAMPLES} rounds of the ratio measured within the round
 * (target ≤ 2.2: linear, with room for noise; the best of all rounds would let
 * one lucky sample of N decide its ratio to 2N), and the heap a bound PASID
 * costs at the largest size.
 */
export function growthFigure(): void {
  collect();
  runDma(build(4)); // warm the JIT on every path before timing: the build's and the DMA's (each figure runs in a fresh process)
  const rounds: Map<number, Sample>[] = [];
  for (let s = 0; s < SAMPLES; s++) {
    // Every size in each round, so a noisy neighbour slows the sizes of a round alike.
    const round = new Map<number, Sample>();
    for (const n of SIZES) round.set(n, sample(n, (2 * MAX_N) / n));
    rounds.push(round);
  }
  const of = (n: number, pick: (r: Sample) => number): number[] => rounds.map((r) => { const x = r.get(n); return x === undefined ? Number.NaN : pick(x); });
  const best = new Map<number, { build: number; dma: number; heap: number }>(
    SIZES.map((n) => [n, { build: Math.min(...of(n, (r) => r.buildMs)), dma: Math.min(...of(n, (r) => r.dmaMs)), heap: Math.min(...of(n, (r) => r.heapPerPasid)) }]),
  );
  /** The median over rounds of size m's time ÷ size n's time in the same round. */
  const ratio = (m: number, n: number, pick: (r: Sample) => number): number => {
    const [xs, ys] = [of(m, pick), of(n, pick)];
    return median(xs.map((x, i) => x / (ys[i] ?? Number.NaN)));
  };
  const gcNote = (globalThis as { gc?: unknown }).gc === undefined ? " (no --expose-gc: heap figures include garbage)" : "";
  console.log(`\nharness: growth, N endpoints × ${PASIDS_PER_DEVICE} bound PASIDs × ${DMAS_PER_PASID} DMAs each (CPU time; times best of ${SAMPLES} rounds, ratios the median of the ${SAMPLES} rounds' own)`);
  for (const n of SIZES) {
    const b = best.get(n);
    if (b === undefined) continue;
    console.log(`  N=${String(n).padStart(2)}: build ${b.build.toFixed(1).padStart(7)} ms, DMA ${b.dma.toFixed(1).padStart(7)} ms`);
  }
  for (let i = 1; i < SIZES.length; i++) {
    const [n, m] = [SIZES[i - 1] ?? 1, SIZES[i] ?? 1];
    const rb = ratio(m, n, (r) => r.buildMs);
    const rd = ratio(m, n, (r) => r.dmaMs);
    const ok = (r: number) => (r <= TARGET ? "ok  " : "MISS");
    console.log(`  ${ok(rb)} build(${m}) ÷ build(${n}): ${rb.toFixed(2)} (target ≤ ${TARGET})   ${ok(rd)} DMA(${m}) ÷ DMA(${n}): ${rd.toFixed(2)} (target ≤ ${TARGET})`);
  }
  const last = best.get(SIZES[SIZES.length - 1] ?? 64);
  if (last !== undefined) {
    console.log(`  heap per bound PASID at N=${MAX_N} (${MAX_N * PASIDS_PER_DEVICE} PASIDs, everything a host holds for them): ${Math.round(last.heap)} bytes${gcNote}`);
  }
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] ?? Number.NaN) : ((s[mid - 1] ?? Number.NaN) + (s[mid] ?? Number.NaN)) / 2;
}
