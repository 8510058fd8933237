import { SmmuReg } from "@vsva/iommu-hw";
import { type DriverFuzzTarget, fuzzDriver } from "@vsva/iommu-core/testing";
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
  let onAccess = (): void => undefined;
  const unit = h.unit;
  const read32 = unit.mmioRead32.bind(unit);
  const read64 = unit.mmioRead64.bind(unit);
  const write32 = unit.mmioWrite32.bind(unit);
  const write64 = unit.mmioWrite64.bind(unit);
  // Counted on the driver's path only: the corruptions below call the saved originals.
  unit.mmioRead32 = (o) => {
    onAccess();
    return read32(o);
  };
  unit.mmioRead64 = (o) => {
    onAccess();
    return read64(o);
  };
  unit.mmioWrite32 = (o, v) => {
    onAccess();
    write32(o, v);
  };
  unit.mmioWrite64 = (o, v) => {
    onAccess();
    write64(o, v);
  };
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
    corrupt: (rand) => {
      const word = Math.floor(rand() * 2 ** 32);
      if (rand() < 0.5) {
        const reg = REGISTERS[Math.floor(rand() * REGISTERS.length)] ?? SmmuReg.CR0;
        if (BASE_REGISTERS.includes(reg)) write64(reg, (BigInt(Math.floor(rand() * 0x10)) << 32n) | BigInt(((word & ~0xfff) | (word & 0x1f)) >>> 0));
        else write32(reg, word);
        return;
      }
      const pages = h.pages.live().filter((p) => QUEUE_TAGS.includes(p.tag));
      const page = pages[Math.floor(rand() * pages.length)];
      if (page !== undefined) h.mem.write32(page.pa + 4 * Math.floor(rand() * 1024 * 2 ** page.order), word);
    },
    watchAccesses: (f) => {
      onAccess = f;
    },
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
