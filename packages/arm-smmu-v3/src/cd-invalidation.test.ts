import { describe, expect, it } from "vitest";
import { Mm, Prot } from "@vsva/iommu-core";
import { PATTERN, SmmuTestHost, dmaWrite, type SmmuHostOptions } from "./testing.js";

const RW = Prot.READ | Prot.WRITE;

/** A master with a stage-1 paging domain (CD 0) and an SVA bind (CD n) at once. */
function s1PlusSva(opts: SmmuHostOptions = {}) {
  const h = new SmmuTestHost(opts);
  const ep = h.endpoint();
  const dev = h.probe(ep);
  h.core.enableFeature(dev, "sva");
  const dom = h.core.domainAlloc(dev, { type: "unmanaged", nestingParent: false });
  h.core.attachDevice(dom, dev);
  h.core.map(dom, 0x1000, 0x30_0000, 0x1000, RW);
  const mm: Mm = h.newMm();
  const va = mm.mmap(null, 0x1000, RW, { populate: true });
  const bond = h.core.sva.bindDevice(dev, mm);
  return { h, ep, dev, dom, mm, va, bond };
}

describe("a cleared CD is invalidated in the unit before the driver returns (CFGI_CD + CMD_SYNC)", () => {
  it("stage-1 detach while SVA binds remain: CD 0 leaves the unit's cache, DMA without PASID aborts, the PASID keeps working", () => {
    const { h, ep, dev, dom, mm, va, bond } = s1PlusSva();
    // Both CDs are now cached in the unit.
    expect(dmaWrite(ep, 0x1000, PATTERN)).toBe("ok");
    expect(dmaWrite(ep, va, PATTERN, bond.pasid)).toBe("ok");
    h.core.detachDevice(dom, dev);
    // The STE stays (CDs are in use), so only CFGI_CD can drop the cached CD 0.
    expect(h.unit.debug.checkStructureCaches()).toEqual([]);
    expect(h.unit.debug.checkCaches()).toEqual([]);
    expect(dmaWrite(ep, va + 4, PATTERN, bond.pasid)).toBe("ok");
    expect(mm.read(va + 4, 4)).toEqual(PATTERN);
    // Last: a faulting DMA without PASID leaves the endpoint waiting for its page request.
    expect(dmaWrite(ep, 0x1000, PATTERN)).not.toBe("ok");
    h.core.sva.unbindDevice(bond);
    expect(h.unit.debug.checkStructureCaches()).toEqual([]);
    expect(dmaWrite(ep, va, PATTERN, bond.pasid)).not.toBe("ok");
  });

  it("SVA unbind while the stage-1 domain stays: the PASID's CD leaves the cache, CD 0 keeps translating", () => {
    const { h, ep, va, bond } = s1PlusSva();
    expect(dmaWrite(ep, va, PATTERN, bond.pasid)).toBe("ok");
    expect(dmaWrite(ep, 0x1000, PATTERN)).toBe("ok");
    h.core.sva.unbindDevice(bond);
    expect(h.unit.debug.checkStructureCaches()).toEqual([]);
    expect(dmaWrite(ep, 0x1000, Uint8Array.of(1, 2, 3, 4))).toBe("ok");
    expect(h.mem.read32(0x30_0000)).toBe(0x0403_0201);
    expect(dmaWrite(ep, va, PATTERN, bond.pasid)).not.toBe("ok");
  });

  describe("deferred command queue (the unit consumes commands from a work item)", () => {
    const deferred: SmmuHostOptions = { unit: { msi: false }, deferredCommands: true };

    it("no stale CD once unbind returns, before the scheduler runs anything", () => {
      const { h, ep, va, bond } = s1PlusSva(deferred);
      h.kernel.scheduler.drain();
      expect(dmaWrite(ep, va, PATTERN, bond.pasid)).toBe("ok");
      h.core.sva.unbindDevice(bond);
      // Nothing drained: the driver must have waited for its CMD_SYNC.
      expect(h.unit.debug.checkStructureCaches()).toEqual([]);
      expect(h.unit.debug.checkCaches()).toEqual([]);
      expect(dmaWrite(ep, va, PATTERN, bond.pasid)).not.toBe("ok");
    });

    it("no stale CD 0 once a stage-1 detach returns with SVA binds remaining", () => {
      const { h, ep, dev, dom, va, bond } = s1PlusSva(deferred);
      h.kernel.scheduler.drain();
      expect(dmaWrite(ep, 0x1000, PATTERN)).toBe("ok");
      h.core.detachDevice(dom, dev);
      expect(h.unit.debug.checkStructureCaches()).toEqual([]);
      expect(dmaWrite(ep, va, PATTERN, bond.pasid)).toBe("ok");
      expect(dmaWrite(ep, 0x1000, PATTERN)).not.toBe("ok");
    });
  });
});
