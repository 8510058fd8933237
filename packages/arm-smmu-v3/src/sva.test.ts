import { describe, expect, it } from "vitest";
import { Errno } from "@vsva/kernel";
import { Mm, Prot } from "@vsva/iommu-core";
import { PATTERN, SmmuTestHost, dmaWrite } from "./testing.js";
import { errnoOf } from "@vsva/kernel/testing";

const RW = Prot.READ | Prot.WRITE;

function svaHost() {
  const h = new SmmuTestHost();
  const ep = h.endpoint();
  const dev = h.probe(ep);
  h.core.enableFeature(dev, "sva");
  h.core.enableFeature(dev, "iopf");
  return { h, ep, dev };
}

describe("native SVA: a CD per PASID over the process's AArch64 tables", () => {
  it("DMA with the mm's PASID reaches the page the CPU sees; munmap flushes TLB and ATC; unbind leaves nothing to translate", () => {
    const { h, ep, dev } = svaHost();
    const mm = h.newMm();
    const va = mm.mmap(null, 0x2000, RW, { populate: true });
    const bond = h.core.sva.bindDevice(dev, mm);
    expect(dmaWrite(ep, va + 0x10, PATTERN, bond.pasid)).toBe("ok");
    expect(mm.read(va + 0x10, 4)).toEqual(PATTERN);
    // The translation is cached in the unit and in the device's ATC; munmap must remove both.
    expect([...ep.deviceTlb.entries()].some((e) => e.pasid === bond.pasid)).toBe(true);
    mm.munmap(va, 0x1000);
    expect(h.unit.debug.checkCaches()).toEqual([]);
    expect([...ep.deviceTlb.entries()].some((e) => e.pasid === bond.pasid && e.entry.base === va)).toBe(false);
    expect(dmaWrite(ep, va + 0x1010, PATTERN, bond.pasid)).toBe("ok");
    h.core.sva.unbindDevice(bond);
    expect(h.unit.debug.checkCaches()).toEqual([]);
    expect(h.unit.debug.checkStructureCaches()).toEqual([]);
    expect([...ep.deviceTlb.entries()].some((e) => e.pasid === bond.pasid)).toBe(false);
    expect(dmaWrite(ep, va + 0x1010, PATTERN, bond.pasid)).not.toBe("ok");
    expect(h.drv.sva.asidsHeld).toBe(0);
  });

  it("one ASID per mm, shared by the devices it is bound to and held while bound", () => {
    const h = new SmmuTestHost();
    const ep0 = h.endpoint(4);
    const ep1 = h.endpoint(5);
    const d0 = h.probe(ep0, "dsa0");
    const d1 = h.probe(ep1, "dsa1");
    for (const d of [d0, d1]) h.core.enableFeature(d, "sva");
    const mm = h.newMm();
    const b0 = h.core.sva.bindDevice(d0, mm);
    const b1 = h.core.sva.bindDevice(d1, mm);
    expect(h.drv.sva.asidsHeld).toBe(1);
    const asids = new Set<number>();
    h.kernel.trace.subscribe((e) => {
      if (e.kind === "smmu-drv.cd") asids.add(e.payload.asid);
    });
    h.core.sva.unbindDevice(b0);
    expect(h.drv.sva.asidsHeld).toBe(1);
    h.core.sva.unbindDevice(b1);
    expect(asids.size).toBe(1);
    expect(h.drv.sva.asidsHeld).toBe(0);
  });

  it("refuses an mm whose tables it cannot walk (x86-64) with EINVAL, leaving nothing behind", () => {
    const { h, dev } = svaHost();
    const x86 = new Mm({ kernel: h.kernel, mem: h.mem, pages: h.pages, name: "x86" });
    const live = h.pages.stats.livePages;
    expect(errnoOf(() => h.core.sva.bindDevice(dev, x86))).toBe(Errno.EINVAL);
    expect(h.pages.stats.livePages).toBe(live);
    expect(h.ioasid.allocated).toBe(0);
  });

  it("exit before unbind: release leaves a quiet CD (EPD0, R=0) so DMA still in flight aborts unrecorded; the late unbind does nothing", () => {
    const { h, ep, dev } = svaHost();
    const mm = h.newMm();
    const va = mm.mmap(null, 0x1000, RW, { populate: true });
    const bond = h.core.sva.bindDevice(dev, mm);
    expect(dmaWrite(ep, va, PATTERN, bond.pasid)).toBe("ok");
    const events: { name: string; recorded: boolean }[] = [];
    h.kernel.trace.subscribe((e) => {
      if (e.kind === "smmu.event") events.push({ name: e.payload.name, recorded: e.payload.recorded });
    });
    mm.exit();
    expect(bond.bondState).toBe("released");
    expect(h.unit.debug.checkCaches()).toEqual([]);
    ep.configWrite(ep.config.offsets.ats + 6, 2, 0); // no ATS: the request reaches the unit's fault path
    expect(dmaWrite(ep, va, PATTERN, bond.pasid)).not.toBe("ok");
    expect(events).toEqual([{ name: "F_TRANSLATION", recorded: false }]);
    h.core.sva.unbindDevice(bond);
    expect(h.drv.sva.asidsHeld).toBe(0);
    // The quiet CD is reused by the next bind of that SubstreamID.
    const mm2 = h.newMm("proc2");
    const va2 = mm2.mmap(null, 0x1000, RW, { populate: true });
    const b2 = h.core.sva.bindDevice(dev, mm2);
    expect(dmaWrite(ep, va2, PATTERN, b2.pasid)).toBe("ok");
    expect(mm2.read(va2, 4)).toEqual(PATTERN);
  });

  it("a PRI round trip: DMA to a page not yet faulted in, page request to the core's fault queue, PRI_RESP success, the retry succeeds", () => {
    const { h, ep, dev } = svaHost();
    const mm = h.newMm();
    const va = mm.mmap(null, 0x1000, RW);
    const bond = h.core.sva.bindDevice(dev, mm);
    expect(dmaWrite(ep, va + 8, PATTERN, bond.pasid)).toBe("pageRequestPending");
    h.kernel.scheduler.runUntilIdle();
    expect(h.drv.prq.stats.reported).toBe(1);
    expect(h.drv.prq.pendingGroups).toBe(0);
    expect(mm.residentPages).toBe(1);
    expect(ep.dma.trigger()).toBe("ok");
    expect(mm.read(va + 8, 4)).toEqual(PATTERN);
    h.core.sva.unbindDevice(bond);
  });

  it("a page request for a PASID nobody bound is denied by the driver at once", () => {
    const { h, ep } = svaHost();
    expect(dmaWrite(ep, 0x5000, PATTERN, 77)).not.toBe("ok");
    h.kernel.scheduler.runUntilIdle();
    expect(h.drv.prq.stats.reported).toBe(0);
  });
});
