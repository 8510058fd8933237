import { describe, expect, it } from "vitest";
import { Errno } from "@vsva/kernel";
import { errnoOf } from "@vsva/kernel/testing";
import { Prot } from "@vsva/iommu-core";
import { tlbiNhAsid } from "./commands.js";
import { PATTERN, SmmuTestHost, dmaWrite, type SmmuHostOptions } from "./testing.js";

/**
 * Flushes larger than the command queue: the driver must cut them into
 * slices that fit (each closed by its own CMD_SYNC) and every command of
 * every slice must reach the unit. A four-slot queue (CMDQ_BASE.LOG2SIZE = 2)
 * holds three commands and a sync.
 */

const RW = Prot.READ | Prot.WRITE;
const PAGE = 0x1000;

function smallQueue(opts: SmmuHostOptions = {}) {
  const h = new SmmuTestHost({ ...opts, unit: { cmdqBits: 2, ...opts.unit } });
  const ep = h.endpoint();
  const dev = h.probe(ep);
  h.core.enableFeature(dev, "sva");
  return { h, ep, dev };
}

const syncs = (h: SmmuTestHost): number => h.unit.debug.stats.syncs;

for (const [mode, opts] of [
  ["the unit consumes at once", {}],
  ["the unit consumes from a work item", { unit: { msi: false }, deferredCommands: true }],
] as const) {
  describe(`a four-slot command queue (${mode})`, () => {
    it("a munmap of eight cached pages (8 TLBI_NH_VA + ATC_INV) goes in three slices and leaves no stale translation", () => {
      const { h, ep, dev } = smallQueue(opts);
      expect(h.drv.hw.cmdq.base).toBeGreaterThanOrEqual(0);
      const mm = h.newMm();
      const va = mm.mmap(null, 8 * PAGE, RW, { populate: true });
      const bond = h.core.sva.bindDevice(dev, mm);
      for (let p = 0; p < 8; p++) expect(dmaWrite(ep, va + p * PAGE, PATTERN, bond.pasid)).toBe("ok");
      const before = syncs(h);
      mm.munmap(va, 8 * PAGE);
      // 9 commands, 3 per slice: 3 syncs, no more, no fewer.
      expect(syncs(h) - before).toBe(3);
      expect(h.unit.debug.checkCaches()).toEqual([]);
      expect([...ep.deviceTlb.entries()].some((e) => e.pasid === bond.pasid)).toBe(false);
      h.core.sva.unbindDevice(bond);
      expect(h.unit.debug.checkStructureCaches()).toEqual([]);
    });

    it("exactly one slice's worth of commands takes one sync, two slices two, and an empty batch is a lone sync", () => {
      const { h } = smallQueue(opts);
      const q = h.drv.hw.cmdq;
      const tlbis = (n: number) => Array.from({ length: n }, (_, i) => tlbiNhAsid(i + 1));
      for (const [n, expected] of [[0, 1], [3, 1], [4, 2], [6, 2], [7, 3]] as const) {
        const before = syncs(h);
        q.submit(tlbis(n));
        expect({ n, syncs: syncs(h) - before }).toEqual({ n, syncs: expected });
      }
    });
  });
}

describe("a freed command queue", () => {
  it("gives its pages back and refuses later submissions with ENODEV", () => {
    const { h } = smallQueue();
    const q = h.drv.hw.cmdq;
    const live = h.pages.stats.livePages;
    q.free();
    expect(h.pages.stats.livePages).toBeLessThan(live);
    expect(q.enabled).toBe(false);
    expect(errnoOf(() => q.submit([]))).toBe(Errno.ENODEV);
    q.free();
  });
});
