import { describe, expect, it } from "vitest";
import { isKernelError } from "@vsva/kernel";
import { type IommuDevice, type IommuDomain, IommuProt, type Mm, Prot, type SvaBond } from "@vsva/iommu-core";
import { PATTERN, SmmuTestHost, dmaWrite } from "./testing.js";

/**
 * iommufd_fail_nth in spirit: bring-up, probe, stage-1 and stage-2 attach,
 * map and SVA bind with the n-th fallible step failing, for every n until a
 * run passes untouched; after each run, tear down whatever was made and
 * check that every page is back, no ASID/VMID or PASID is held, and what
 * did get set up still works.
 */
function scenario(n: number | null) {
  const h = new SmmuTestHost({ init: false });
  const ep = h.endpoint();
  let dev: IommuDevice | null = null;
  let s1: IommuDomain | null = null;
  let s2: IommuDomain | null = null;
  let mm: Mm | null = null;
  let bond: SvaBond | null = null;
  let failed: unknown = null;
  const vmSet = h.ioasid.allocSet({ vm: 1 }, 4, "mm");
  if (n !== null) h.kernel.faults.failNth(n);
  try {
    h.drv.init();
    dev = h.probe(ep);
    h.core.enableFeature(dev, "sva");
    s2 = h.core.domainAlloc(dev, { type: "unmanaged", nestingParent: true, ioasidSet: vmSet });
    h.core.attachDevice(s2, dev);
    h.core.map(s2, 0x1000, 0x30_0000, 0x1000, IommuProt.READ | IommuProt.WRITE);
    h.core.detachDevice(s2, dev);
    s1 = h.core.domainAlloc(dev, { type: "unmanaged", nestingParent: false });
    h.core.attachDevice(s1, dev);
    h.core.map(s1, 0x1000, 0x30_0000, 0x1000, IommuProt.READ | IommuProt.WRITE);
    mm = h.newMm();
    const va = mm.mmap(null, 0x1000, Prot.READ | Prot.WRITE, { populate: true });
    bond = h.core.sva.bindDevice(dev, mm);
    h.kernel.faults.disarm();
    // MAP_POPULATE is best effort: a page it could not have is faulted in through PRI.
    let r = dmaWrite(ep, va, PATTERN, bond.pasid);
    if (r === "pageRequestPending") {
      h.kernel.scheduler.runUntilIdle();
      r = ep.dma.trigger();
    }
    expect(r).toBe("ok");
    expect(dmaWrite(ep, 0x1000, PATTERN)).toBe("ok");
  } catch (e) {
    if (!isKernelError(e)) throw e;
    failed = e;
  }
  h.kernel.faults.disarm();
  const injected = [...h.kernel.faults.injected];
  if (bond !== null) h.core.sva.unbindDevice(bond);
  mm?.exit();
  if (dev !== null) h.core.releaseDevice(dev);
  if (s1 !== null) h.core.domainFree(s1);
  if (s2 !== null) h.core.domainFree(s2);
  h.drv.shutdown();
  return { h, failed, injected };
}

describe("fail-nth sweep over bring-up, probe, attach, map and SVA bind", () => {
  it("every failure rolls back; every page the driver and the mm allocated is freed; no ASID, VMID or PASID is left", () => {
    const clean = scenario(null);
    expect(clean.failed).toBeNull();
    expect(clean.h.pages.live()).toEqual([]);
    const points = new Set<string>();
    let n = 1;
    for (; n < 300; n++) {
      const r = scenario(n);
      if (r.failed === null && r.injected.length === 0) break;
      for (const p of r.injected) points.add(p);
      expect({ n, live: r.h.pages.live() }).toEqual({ n, live: [] });
      expect({ n, asids: r.h.drv.hw.asids.inUse, vmids: r.h.drv.hw.vmids.inUse, pasids: r.h.ioasid.allocated }).toEqual({ n, asids: 0, vmids: 0, pasids: 0 });
      expect(r.h.core.liveDomains).toBe(0);
    }
    expect(n).toBeLessThan(300);
    expect(n).toBeGreaterThan(15);
    for (const p of ["smmu.init", "iommu.page-alloc", "smmu.probe-device", "smmu.attach", "smmu.map", "smmu.asid-alloc", "smmu.vmid-alloc", "smmu.sva-bind"]) {
      expect(points).toContain(p);
    }
  });
});
