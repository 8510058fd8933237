import { describe, expect, it } from "vitest";
import { asHostPasid } from "@vsva/kernel";
import { TableWriter, x86Format } from "@vsva/iommu-hw";
import type { IommuDevice, PageRequestFault } from "@vsva/iommu-core";
import { PATTERN, dmaWrite, endpoint, probe, testHost } from "./test-host.js";

const VA = 0x4000_0000;
const PASID = 9;

/** A host with one native SVA bind at PASID 9 over a process table mapping only VA; page requests go to `faults`. */
function boundHost() {
  const h = testHost();
  const ep = endpoint(h);
  const dev = probe(h, ep);
  const faults: PageRequestFault[] = [];
  h.core.registerDeviceFaultHandler(dev, (_d: IommuDevice, f: PageRequestFault) => (faults.push(f), true));
  let next = 0x60_0000;
  const w = new TableWriter(h.mem, x86Format({ levels: 4 }), { alloc: () => (next += 0x1000) });
  w.map(VA, 0x30_0000, 0x1000, { write: true, user: true });
  const bond = h.drv.svaBind(dev, { pgd: w.root, levels: 4, pasid: asHostPasid(PASID), name: "proc" });
  return { h, ep, dev, faults, w, bond };
}

describe("native SVA unbind drains the PASID's page requests (intel_svm_drain_prq)", () => {
  it("a group reported and not yet answered is answered 'invalid' by the unbind", () => {
    const { h, ep, faults, bond } = boundHost();
    expect(dmaWrite(ep, VA + 0x1000, PATTERN, PASID)).toBe("pageRequestPending");
    expect(h.drv.processPageRequests()).toBe(1);
    expect(faults.map((f) => [f.pasid, f.addr])).toEqual([[PASID, VA + 0x1000]]);
    expect(h.drv.prq.pendingGroups).toBe(1);
    bond.unbind();
    expect(h.drv.prq.pendingGroups).toBe(0);
    expect(ep.dma.result).toBe("pageRequestInvalid");
  });

  it("a request still in the queue is consumed by the unbind, so a later bind of the PASID never sees it", () => {
    const { h, ep, dev, faults, w, bond } = boundHost();
    expect(dmaWrite(ep, VA + 0x1000, PATTERN, PASID)).toBe("pageRequestPending");
    bond.unbind();
    expect(ep.dma.result).toBe("pageRequestInvalid");
    expect(faults).toEqual([]);
    // The PASID is reused for another address space: the old request must not reach it.
    const again = h.drv.svaBind(dev, { pgd: w.root, levels: 4, pasid: asHostPasid(PASID), name: "next" });
    expect(h.drv.processPageRequests()).toBe(0);
    expect(faults).toEqual([]);
    expect(h.drv.prq.pendingGroups).toBe(0);
    again.unbind();
  });

  it("release (the mm exits first) drains too", () => {
    const { h, ep, bond } = boundHost();
    expect(dmaWrite(ep, VA + 0x1000, PATTERN, PASID)).toBe("pageRequestPending");
    h.drv.processPageRequests();
    expect(h.drv.prq.pendingGroups).toBe(1);
    bond.release();
    expect(h.drv.prq.pendingGroups).toBe(0);
    expect(ep.dma.result).toBe("pageRequestInvalid");
  });
});
