// `pnpm bench` for the harness: SVA DMA throughput against a raw copy, in one run.
import { Bench } from "tinybench";
import { Prot } from "@vsva/iommu-core";
import { Host } from "../src/world/host.js";
import { growthFigure } from "./growth.js";
import { vfioMapFigure } from "./vfio-map.js";

/**
 * SVA DMA bytes/s ÷ raw `Uint8Array` copy bytes/s, 4 KiB transfers with every
 * cache warm (IOTLB, micro-TLB, the device's ATS cache): the device copies a
 * process's page through its PASID, translated by the emulated VT-d unit set
 * up by the real driver, and the bytes move in emulated host memory. Target
 * ≥ 0.5 (the simulator costs at most twice a plain memory copy).
 */
const SIZE = 4096;
const PAGES = 16;
/**
 * Transfers per timed sample. A figure in bytes/s is a throughput: timing each
 * ~100 ns copy on its own adds the timer's own cost (two clock reads, tens of
 * ns) to both sides of the ratio. A batch of one pass over the buffer
 * amortises it. (Timed one copy per sample, the ratio measured 0.62–0.75 with
 * this code, so the batching is not what meets the target.)
 */
const BATCH = PAGES;

const h = new Host();
const slot = h.addDevice("dsa0", 4);
h.enableSva(slot);
const mm = h.newMm("bench");
const buf = mm.mmap(null, SIZE * PAGES, Prot.READ | Prot.WRITE, { populate: true });
const bond = h.core.sva.bindDevice(slot.dev, mm);
const src = new Uint8Array(SIZE).fill(0x5a);
const dst = new Uint8Array(SIZE * PAGES);
const dma = slot.ep.dma;
// One descriptor per page, written once as a driver would: the device reads its
// registers, nothing is allocated per transfer.
const programs = Array.from({ length: PAGES }, (_, i) => ({
  pasid: bond.pasid,
  addr: buf + i * SIZE,
  length: SIZE,
  direction: "write" as const,
  pattern: src,
}));

const dmaPass = (): void => {
  for (const p of programs) {
    dma.setProgram(p);
    if (dma.trigger() !== "ok") throw new Error(`bench DMA failed: ${dma.result}`);
  }
};
const rawPass = (): void => {
  for (let i = 0; i < BATCH; i++) dst.set(src, i * SIZE);
};
dmaPass(); // warm every cache
const hitsBefore = slot.ep.deviceTlb.stats.hits;
dmaPass();
if (slot.ep.deviceTlb.stats.hits - hitsBefore !== PAGES) throw new Error("bench: the warm pass missed the device TLB");

const bench = new Bench({ time: 500, warmupTime: 100 });
bench
  .add("raw Uint8Array copy, 4 KiB", rawPass)
  .add("SVA DMA write, 4 KiB", dmaPass);
await bench.run();

const mean = (name: string): number => {
  const r = bench.getTask(name)?.result;
  return r !== undefined && "latency" in r ? r.latency.mean : Number.NaN;
};
const ratio = mean("raw Uint8Array copy, 4 KiB") / mean("SVA DMA write, 4 KiB");
const mbps = (BATCH * SIZE / (mean("SVA DMA write, 4 KiB") / 1000)) / 1e6;
console.log("\nharness: SVA DMA throughput (ratio measured in one run)");
console.log(`  ${ratio >= 0.5 ? "ok  " : "MISS"} SVA DMA bytes/s ÷ raw Uint8Array copy bytes/s (4 KiB, caches warm): ${ratio.toFixed(2)} (target ≥ 0.5; DMA at ${mbps.toFixed(0)} MB/s)`);

growthFigure();
vfioMapFigure();
