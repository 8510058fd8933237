// The raw-copy baseline of the SVA DMA figures, made robust against a slow buffer pairing.
import { spawnSync } from "node:child_process";

/**
 * Why a baseline needs care: inside a long bench process the same
 * `Uint8Array.prototype.set` of 64 KiB was measured at ~2 µs with some
 * source/destination pairs and 22–25 µs with others, depending on which two
 * arrays were paired and not on either array alone. A slow pairing makes the
 * copy look slow and the DMA ÷ copy ratio look far better than it is (it
 * printed 7.8 "ok": a DMA cannot beat a copy of the same bytes). So the
 * baseline is:
 *
 * 1. the best of several source/destination pairs and placements, timed in
 *    this process: sources and destinations that are standalone buffers and
 *    views at different offsets (page-aligned and not) of one large buffer,
 *    every source against every destination, each timed best-of-N;
 * 2. checked against the same copy timed in a fresh process (a tiny plain
 *    script spawned with `node -e`, which has loaded nothing else and does
 *    the same pairs and best-of-N);
 *
 * and the ratio uses the faster (fairer) of the two. Both are printed.
 *
 * What is copied is what the device moves: a DMA writing one pattern into
 * `count` destinations is timed against one source copied `count` times
 * side by side; a MEMMOVE of `count` distinct sources into `count` distinct
 * destinations against `count` distinct sources copied into `count` distinct
 * destinations (`distinctSources`). Copying one source over and over keeps
 * it in the CPU's nearest cache, which the device's distinct sources never
 * are: that copy is 65–75 ns per 4 KiB here against 77–93 for distinct ones.
 */

/**
 * The copy itself: `Uint8Array.prototype.set` called through a constant, as the
 * simulated memory's block moves call it (V8 does not specialise a typed array's
 * `.set` load, so `view.set(...)` pays a load IC per call), so the baseline is
 * the fastest plain copy, not a slower spelling of it.
 */
// eslint-disable-next-line @typescript-eslint/unbound-method -- always called as u8set.call(view, ...)
const u8set = Uint8Array.prototype.set;

/** Samples per measurement; the best one counts (the machine is shared: the best sample is the least disturbed). */
export const SAMPLES = 15;
/** Samples per source/destination pair of the in-process copy baseline. */
const PAIR_SAMPLES = 7;
/** Target wall time of one sample, ns. */
const SAMPLE_NS = 2_000_000;

/** Best-of-{@link SAMPLES} time of one call of `fn`, in ns; each sample runs it enough times to last ~2 ms. */
export function bestNs(fn: () => void, samples = SAMPLES): number {
  fn();
  let reps = 1;
  for (;;) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < reps; i++) fn();
    const dt = Number(process.hrtime.bigint() - t0);
    if (dt >= SAMPLE_NS / 4 || reps >= 1 << 20) break;
    reps *= 2;
  }
  reps = Math.max(1, reps * 4);
  let best = Number.POSITIVE_INFINITY;
  for (let s = 0; s < samples; s++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < reps; i++) fn();
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / reps);
  }
  return best;
}

/** Offsets (bytes) at which views are placed in the shared buffer: page-aligned and not, cache-line aligned and not. */
const OFFSETS = [0, 4096 + 64, 3 * 4096 + 8];

/** Buffers of `size` bytes: one standalone buffer, plus views at {@link OFFSETS} of one shared buffer. */
function placements(size: number, fill: number): Uint8Array[] {
  const shared = new Uint8Array(2 * OFFSETS.length * (size + 4 * 4096));
  const out = [new Uint8Array(size).fill(fill)];
  OFFSETS.forEach((off, i) => {
    const start = i * 2 * (size + 4 * 4096) + off;
    out.push(shared.subarray(start, start + size).fill(fill));
  });
  return out;
}

export interface CopyBaseline {
  /** Best pair, ns per copy of `size` bytes. */
  readonly bestNs: number;
  /** Worst pair's best-of-N, ns: the spread shows whether a pairing was slow. */
  readonly worstNs: number;
  readonly pairs: number;
}

/**
 * The baseline's copies, one per source × destination pair: one call copies
 * the `size`-byte source `batch` times, side by side into a destination of
 * `batch × size` bytes (as many distinct bytes written as the DMA writes), or
 * with `distinct`, the `batch` consecutive `size`-byte pieces of a
 * `batch × size`-byte source each to its place in the destination. Made once
 * per figure: timing them then allocates nothing, so the baseline's rounds do
 * not make the collector move the device's objects between its rounds (in a
 * standalone loop, copies made afresh between the rounds cost the
 * accelerator's 4 KiB MEMMOVE ~5 ns per descriptor).
 */
export function copyPairs(size: number, batch: number, distinct = false): (() => void)[] {
  const srcs = placements(distinct ? size * batch : size, 0x5a);
  const dsts = placements(size * batch, 0);
  return srcs.flatMap((s) => {
    // The pieces' views are made here, outside the timed copy.
    const pieces = Array.from({ length: batch }, (_, i) => (distinct ? s.subarray(i * size, (i + 1) * size) : s));
    return dsts.map((d) => () => {
      for (let i = 0; i < batch; i++) u8set.call(d, pieces[i] ?? s, i * size);
    });
  });
}

/** The best of every pair of {@link copyPairs}, in ns per call (each pair best-of-{@link PAIR_SAMPLES}), and the slowest pair's. */
export function inProcessCopy(size: number, batch: number, distinct = false, pairs = copyPairs(size, batch, distinct)): CopyBaseline {
  let best = Number.POSITIVE_INFINITY;
  let worst = 0;
  for (const copy of pairs) {
    const t = bestNs(copy, PAIR_SAMPLES);
    best = Math.min(best, t);
    worst = Math.max(worst, t);
  }
  return { bestNs: best, worstNs: worst, pairs: pairs.length };
}

/**
 * The same measurement in a fresh `node` process: plain JavaScript, same
 * placements and pairs, same best-of-N. Returns NaN if the child fails (the
 * ratio then rests on the in-process baseline alone, and the line says so).
 */
export function freshProcessCopy(size: number, batch: number, distinct = false): number {
  const script = `
const size = ${size}, batch = ${batch}, distinct = ${String(distinct)}, OFFSETS = ${JSON.stringify(OFFSETS)};
function placements(size, fill) {
  const shared = new Uint8Array(2 * OFFSETS.length * (size + 4 * 4096));
  const out = [new Uint8Array(size).fill(fill)];
  OFFSETS.forEach((off, i) => { const st = i * 2 * (size + 4 * 4096) + off; out.push(shared.subarray(st, st + size).fill(fill)); });
  return out;
}
function bestNs(fn, samples) {
  fn(); let reps = 1;
  for (;;) { const t0 = process.hrtime.bigint(); for (let i = 0; i < reps; i++) fn();
    if (Number(process.hrtime.bigint() - t0) >= ${SAMPLE_NS / 4} || reps >= 1 << 20) break; reps *= 2; }
  reps *= 4; let best = Infinity;
  for (let s = 0; s < samples; s++) { const t0 = process.hrtime.bigint(); for (let i = 0; i < reps; i++) fn();
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / reps); }
  return best;
}
const u8set = Uint8Array.prototype.set;
let best = Infinity;
for (const s of placements(distinct ? size * batch : size, 0x5a)) {
  const pieces = Array.from({ length: batch }, (_, i) => (distinct ? s.subarray(i * size, (i + 1) * size) : s));
  for (const d of placements(size * batch, 0)) best = Math.min(best, bestNs(() => { for (let i = 0; i < batch; i++) u8set.call(d, pieces[i], i * size); }, ${PAIR_SAMPLES}));
}
process.stdout.write(String(best));
`;
  const r = spawnSync(process.execPath, ["-e", script], { encoding: "utf8", timeout: 120_000 });
  const v = Number(r.stdout);
  return r.status === 0 && Number.isFinite(v) && v > 0 ? v : Number.NaN;
}

/** One line of a device-versus-copy figure: `count` transfers of `size` bytes per timed pass. */
export interface CopyCase {
  readonly label: string;
  /** Bytes per descriptor. */
  readonly size: number;
  /** Descriptors per timed pass (the raw copy does as many copies of `size`). */
  readonly count: number;
  readonly target: number;
}

/** A device's transfer timed against the robust copy baseline of the same bytes. */
export interface DeviceVsCopy {
  /** Best time of one pass of the device's transfers, ns. */
  readonly deviceNs: number;
  /** The baseline: the faster of the in-process best and the fresh process. */
  readonly copyNs: number;
  readonly ratio: number;
  /** The ratio line's tail: device and baseline rates, how the baseline was made. */
  readonly detail: string;
  /** "BAD " when the device beat the copy (a broken baseline, never a pass), else "ok  " or "MISS" against `target`. */
  readonly mark: "BAD " | "ok  " | "MISS";
}

/**
 * Times `pass` (`count` transfers of `size` bytes) and the copy baseline in
 * alternating `rounds`, best of all (a burst of load from elsewhere during one
 * measurement does not decide the ratio), then checks the in-process baseline
 * against a fresh process. A device cannot move bytes faster than a plain copy
 * of them, so a ratio of 1 or more is marked BAD. `distinctSources`: the
 * device reads `count` distinct sources (see the module comment).
 */
export function deviceVsCopy(
  pass: () => void, size: number, count: number, rounds: number, target: number, deviceName: string, distinctSources = false,
): DeviceVsCopy {
  let deviceNs = Number.POSITIVE_INFINITY;
  let inProc = { bestNs: Number.POSITIVE_INFINITY, worstNs: 0, pairs: 0 };
  // The device gets as many samples per round as the baseline's pairs take together (it had 15
  // against their 112): on a shared machine the best of more samples is the less disturbed one.
  const pairs = copyPairs(size, count, distinctSources);
  const deviceSamples = pairs.length * PAIR_SAMPLES;
  for (let round = 0; round < rounds; round++) {
    deviceNs = Math.min(deviceNs, bestNs(pass, deviceSamples));
    const r = inProcessCopy(size, count, distinctSources, pairs);
    inProc = { bestNs: Math.min(inProc.bestNs, r.bestNs), worstNs: Math.max(inProc.worstNs, r.worstNs), pairs: r.pairs };
  }
  const fresh = freshProcessCopy(size, count, distinctSources);
  const copyNs = Number.isNaN(fresh) ? inProc.bestNs : Math.min(inProc.bestNs, fresh);
  const ratio = copyNs / deviceNs;
  const gbps = (ns: number): string => ((size * count) / ns).toFixed(2);
  const detail =
    `${deviceName} ${gbps(deviceNs)} GB/s; baseline = faster of best-of-${inProc.pairs}-pairs in process ${gbps(inProc.bestNs)} GB/s ` +
    `(slowest pair ${gbps(inProc.worstNs)} GB/s) and fresh process ${Number.isNaN(fresh) ? "unavailable" : `${gbps(fresh)} GB/s`}`;
  return { deviceNs, copyNs, ratio, detail, mark: ratio >= 1 ? "BAD " : ratio >= target ? "ok  " : "MISS" };
}
