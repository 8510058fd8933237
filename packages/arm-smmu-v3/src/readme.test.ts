import { expect, it } from "vitest";
import { Prot } from "@vsva/iommu-core";
import { PATTERN, SmmuTestHost, dmaWrite } from "./testing.js";

it("runs the README's example", () => {
  const h = new SmmuTestHost();
  const ep = h.endpoint();
  const dev = h.probe(ep);
  h.core.enableFeature(dev, "sva");
  const mm = h.newMm();
  const va = mm.mmap(null, 0x1000, Prot.READ | Prot.WRITE);
  const bond = h.core.sva.bindDevice(dev, mm);
  expect(dmaWrite(ep, va, PATTERN, bond.pasid)).toBe("pageRequestPending");
  h.kernel.scheduler.runUntilIdle();
  expect(ep.dma.trigger()).toBe("ok");
  expect(mm.read(va, 4)).toEqual(PATTERN);
  h.core.sva.unbindDevice(bond);
  expect(dmaWrite(ep, va, PATTERN, bond.pasid)).not.toBe("ok");
});
