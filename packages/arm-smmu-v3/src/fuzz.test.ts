import { SmmuReg } from "@vsva/iommu-hw";
import { type DriverFuzzTarget, fuzzDriver, misbehavingUnit } from "@vsva/iommu-core/testing";
import { describe, expect, it } from "vitest";
import { PATTERN, SmmuTestHost, dmaWrite } from "./testing.js";

/** A low poll limit keeps a wedged unit's timeouts cheap; the bound it gives is what is checked. */
const POLL_LIMIT = 200;
const REGISTERS = Object.values(SmmuReg);
/** The queues: memory the unit writes (CONS moves, MSI sync words, event and PRI records) and the driver reads. */
const QUEUE_TAGS: readonly string[] = ["smmu.cmdq", "smmu.evtq", "smmu.priq"];
const BASE_REGISTERS: readonly number[] = [SmmuReg.STRTAB_BASE, SmmuReg.CMDQ_BASE, SmmuReg.EVENTQ_BASE, SmmuReg.PRIQ_BASE];

/**
 * The SMMUv3 driver on a unit that misbehaves: random values written to its
 * registers (queue bases and pointers, CR0, GERROR(N), IRQ_CTRL, …) and to
 * words of its command, event and PRI queues, between the driver's calls.
 */
function smmuTarget(): DriverFuzzTarget & { readonly h: SmmuTestHost } {
  const h = new SmmuTestHost({ cmdqPollLimit: POLL_LIMIT });
  const eps = [h.endpoint(4), h.endpoint(5)];
  const misbehaving = misbehavingUnit({ unit: h.unit, mem: h.mem, pages: h.pages, registers: REGISTERS, wide: BASE_REGISTERS, queueTags: QUEUE_TAGS, wideLow: (w) => (w & ~0xfff) | (w & 0x1f) });
  return {
    h,
    kernel: h.kernel,
    core: h.core,
    iommu: h.iommu,
    endpoints: eps.length,
    probe: (i, name) => {
      const ep = eps[i];
      if (ep === undefined) throw new RangeError(`no endpoint ${i}`);
      return h.probe(ep, name);
    },
    newMm: (name) => h.newMm(name),
    dma: (i, addr, pasid) => {
      const ep = eps[i];
      if (ep !== undefined) dmaWrite(ep, addr, PATTERN, pasid);
    },
    ...misbehaving,
  };
}

describe("arm-smmu-v3 against a misbehaving unit (fuzz)", () => {
  // Each command-queue wait is bounded by POLL_LIMIT polls of a few registers each; a teardown call
  // (a device release with its bonds) makes a few dozen waits. A wait bounded by the unit's goodwill would blow this.
  const maxAccessesPerCall = 500 * POLL_LIMIT;
  for (const seed of [1, 2, 3, 4]) {
    it(`every driver call returns or fails with an errno, and returns (seed ${seed})`, () => {
      const t = smmuTarget();
      const r = fuzzDriver(t, { seed, steps: 400, maxAccessesPerCall });
      expect(r.failures).toEqual([]);
      expect(r.calls).toBeGreaterThan(100);
    });
  }

  it("makes the calls it claims: a clean unit refuses few of them", () => {
    const t = smmuTarget();
    const r = fuzzDriver(t, { seed: 9, steps: 150, corruptionsPerStep: 0, maxAccessesPerCall });
    expect(r.failures).toEqual([]);
    expect(r.refused).toBeLessThan(r.calls / 2);
    t.h.drv.shutdown();
    expect(t.h.pages.live()).toEqual([]);
  });
});
