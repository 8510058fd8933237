import { describe, expect, it } from "vitest";
import { Prot } from "@vsva/iommu-core";
import { TraceRecorder } from "@vsva/kernel";
import { PATTERN, SmmuTestHost, dmaWrite } from "./testing.js";

const RW = Prot.READ | Prot.WRITE;

describe("SVA binds on a master without a stage-1 domain", () => {
  it("the STE uses CDs while any bind remains and returns to the domain's own config after the last unbind", () => {
    const h = new SmmuTestHost();
    const ep = h.endpoint();
    const dev = h.probe(ep);
    const identity = h.core.domainAlloc(dev, { type: "identity" });
    h.core.attachDevice(identity, dev);
    h.core.enableFeature(dev, "sva");
    const rec = new TraceRecorder(h.kernel.trace);
    const steConfigs = () => rec.ofKind("smmu-drv.ste").map((e) => e.payload.config);
    const mmA = h.newMm("a");
    const mmB = h.newMm("b");
    const va = mmB.mmap(null, 0x1000, RW, { populate: true });
    const a = h.core.sva.bindDevice(dev, mmA);
    expect(steConfigs()).toEqual(["s1"]);
    const b = h.core.sva.bindDevice(dev, mmB);
    h.core.sva.unbindDevice(a);
    // One bind left: the STE keeps its CD table.
    expect(steConfigs()).toEqual(["s1"]);
    expect(dmaWrite(ep, va, PATTERN, b.pasid)).toBe("ok");
    h.core.sva.unbindDevice(b);
    expect(steConfigs()).toEqual(["s1", "bypass"]);
    expect(h.unit.debug.checkStructureCaches()).toEqual([]);
    expect(dmaWrite(ep, 0x70_0000, PATTERN)).toBe("ok");
  });
});
