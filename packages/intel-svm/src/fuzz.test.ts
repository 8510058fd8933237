import { Mm } from "@vsva/iommu-core";
import { type DriverFuzzTarget, fuzzDriver, misbehavingUnit } from "@vsva/iommu-core/testing";
import { RegOffset } from "@vsva/iommu-hw";
import { describe, expect, it } from "vitest";
import { PATTERN, type TestHost, dmaWrite, endpoint, probe, testHost } from "./test-host.js";

/** A low poll count keeps a wedged unit's timeouts cheap; the bound it gives is what is checked. */
const POLLS = 200;
const REGISTERS = Object.values(RegOffset);
/** Registers the driver writes as 64-bit values (table and queue addresses, queue pointers). */
const WIDE: readonly number[] = [RegOffset.RTADDR, RegOffset.CCMD, RegOffset.IQH, RegOffset.IQT, RegOffset.IQA, RegOffset.IQERCD, RegOffset.IRTA, RegOffset.PQH, RegOffset.PQT, RegOffset.PQA];
/** Memory the unit writes and the driver reads: the invalidation queue and its status words, the page request queue. */
const QUEUE_TAGS: readonly string[] = ["vtd.inv-queue", "vtd.inv-status", "vtd.prq"];

/**
 * The VT-d driver on a unit that misbehaves: random values written to its
 * registers (GCMD, RTADDR, the invalidation and page request queue
 * registers, FSTS, …) and to words of its queues, between the driver's calls.
 */
function vtdTarget(): DriverFuzzTarget & { readonly h: TestHost } {
  const h = testHost({}, true, { qiPolls: POLLS });
  const eps = [endpoint(h, 4), endpoint(h, 5)];
  const misbehaving = misbehavingUnit({ unit: h.unit, mem: h.mem, pages: h.pages, registers: REGISTERS, wide: WIDE, queueTags: QUEUE_TAGS });
  return {
    h,
    kernel: h.kernel,
    core: h.core,
    iommu: h.iommu,
    endpoints: eps.length,
    probe: (i, name) => {
      const ep = eps[i];
      if (ep === undefined) throw new RangeError(`no endpoint ${i}`);
      return probe(h, ep, 20, name);
    },
    newMm: (name) => new Mm({ kernel: h.kernel, mem: h.mem, pages: h.pages, name, arch: "x86-64" }),
    dma: (i, addr, pasid) => {
      const ep = eps[i];
      if (ep !== undefined) dmaWrite(ep, addr, PATTERN, pasid);
    },
    ...misbehaving,
  };
}

describe("intel-svm against a misbehaving unit (fuzz)", () => {
  // A submission reads at most POLLS status words, a few registers each; a teardown call makes a few dozen submissions.
  // A wait bounded by the unit's goodwill would blow this.
  const maxAccessesPerCall = 500 * POLLS;
  for (const seed of [1, 2, 3, 4]) {
    it(`every driver call returns or fails with an errno, and returns (seed ${seed})`, () => {
      const t = vtdTarget();
      const r = fuzzDriver(t, { seed, steps: 400, maxAccessesPerCall });
      expect(r.failures).toEqual([]);
      expect(r.calls).toBeGreaterThan(100);
    });
  }

  it("makes the calls it claims: a clean unit refuses few of them", () => {
    const t = vtdTarget();
    const r = fuzzDriver(t, { seed: 9, steps: 150, corruptionsPerStep: 0, maxAccessesPerCall });
    expect(r.failures).toEqual([]);
    expect(r.refused).toBeLessThan(r.calls / 2);
    t.h.drv.shutdown();
    expect(t.h.pages.live()).toEqual([]);
  });
});
