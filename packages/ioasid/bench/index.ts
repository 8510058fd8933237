import v8 from "node:v8";
import vm from "node:vm";
import { type Ioasid, Kernel } from "@vsva/kernel";
import { Bench } from "tinybench";
import { IoasidCore } from "../src/index.js";
import { type BenchFigure, report } from "./report.js";

/**
 * The IOASID core's three performance targets:
 * - an alloc+free pair costs at most 3x a Map set+delete of the same key count;
 * - a live ID costs at most 128 bytes with 2^20 - 1 IDs live;
 * - alloc at 99% occupancy costs at most 2x alloc in an empty namespace
 *   (the lowest 99% of IDs used, so a linear scan would walk a million bits).
 */
const BATCH = 1024;

function newCore(): { core: IoasidCore; kernel: Kernel } {
  const kernel = new Kernel();
  return { kernel, core: new IoasidCore({ scheduler: kernel.scheduler, trace: kernel.trace, faults: kernel.faults }) };
}

function meanMs(bench: Bench, name: string): number {
  const r = bench.tasks.find((t) => t.name === name)?.result;
  if (r === undefined || !("latency" in r)) throw new Error(`task ${name} did not complete`);
  return r.latency.mean;
}

// --- pairs vs Map
const pairs = newCore();
const pairSet = pairs.core.allocSet(null, 0, "none");
const ids = new Uint32Array(BATCH);
const map = new Map<number, unknown>();

// --- 99% occupancy vs empty
const empty = newCore();
const emptySet = empty.core.allocSet(null, 0, "none");
const full = newCore();
const fullSet = full.core.allocSet(null, 0, "none");
const occupied = Math.floor(full.core.capacity * 0.99);
for (let i = 0; i < occupied; i++) full.core.alloc(fullSet, 1, full.core.capacity);

const bench = new Bench({ time: 400, warmup: true });
bench
  .add("ioasid alloc+free", () => {
    for (let i = 0; i < BATCH; i++) ids[i] = pairs.core.alloc(pairSet, 1, 0xfffff);
    for (let i = 0; i < BATCH; i++) pairs.core.free(pairSet, ids[i] as Ioasid);
  })
  .add("Map set+delete", () => {
    for (let i = 0; i < BATCH; i++) map.set(i + 1, undefined);
    for (let i = 0; i < BATCH; i++) map.delete(i + 1);
  })
  .add("alloc+free at empty", () => {
    for (let i = 0; i < BATCH; i++) empty.core.free(emptySet, empty.core.alloc(emptySet, 1, 0xfffff));
  })
  .add("alloc+free at 99%", () => {
    for (let i = 0; i < BATCH; i++) full.core.free(fullSet, full.core.alloc(fullSet, 1, 0xfffff));
  });
await bench.run();

// --- bytes per live ID: everything the core holds, JS heap and typed-array buffers alike.
v8.setFlagsFromString("--expose-gc");
const gc = vm.runInNewContext("gc") as () => void;
const used = () => {
  gc();
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
};
const before = used();
const mem = newCore();
const memSet = mem.core.allocSet(null, 0, "none");
for (let i = 0; i < mem.core.capacity; i++) mem.core.alloc(memSet, 1, mem.core.capacity, null);
const after = used();
const live = mem.core.allocated;

const pairRatio = meanMs(bench, "ioasid alloc+free") / meanMs(bench, "Map set+delete");
const perId = (after - before) / live;
const occRatio = meanMs(bench, "alloc+free at 99%") / meanMs(bench, "alloc+free at empty");
const nsPerPair = (meanMs(bench, "ioasid alloc+free") * 1e6) / BATCH;

const figures: BenchFigure[] = [
  { label: "alloc+free pair / Map set+delete", value: pairRatio, unit: "x", target: "<= 3x", met: pairRatio <= 3 },
  { label: `bytes per live ID (${live} live)`, value: perId, unit: " B", target: "<= 128 B", met: perId <= 128 },
  { label: "alloc at 99% occupancy / alloc at empty", value: occRatio, unit: "x", target: "<= 2x", met: occRatio <= 2 },
];
report(`@vsva/ioasid (alloc+free pair ${nsPerPair.toFixed(0)} ns)`, figures);
