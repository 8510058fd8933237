import { type FaultInjector, isKernelError } from "@vsva/kernel";
import { FaultCoverage, sourceFaultPoints } from "@vsva/kernel/testing";
import { IOASID_FAULT_POINTS, type IoasidSet } from "@vsva/ioasid";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import {
  IOMMU_CORE_FAULT_POINTS,
  IOMMU_SVA_GPASID_VAL,
  type IommuDevice,
  type IommuDomain,
  IommuProt,
  type Mm,
  Prot,
  type SvaBond,
  encodeGpasidBindData,
} from "@vsva/iommu-core";
import { MOCK_FAULT_POINTS, svaHost } from "@vsva/iommu-core/testing";

const VA = 0x10_0000_0000;
const bindData = encodeGpasidBindData({ hpasid: 0x40n, gpasid: 101n, flags: BigInt(IOMMU_SVA_GPASID_VAL), gpgd: 0x5000n });

/**
 * iommufd_fail_nth over everything the core does on a device's behalf:
 * probe (group, default domain), a nesting parent with a mapping, an mdev,
 * a guest PASID bind, a process with mappings, an SVA bind, and a page
 * request, with the n-th fallible step failing. Whatever failed, the owners
 * then undo what they got and nothing may be left: no page beyond the mock
 * driver's device contexts, no PASID, no domain, no bond.
 */
function scenario(n: number | null): { failed: boolean; faults: FaultInjector; leftovers: object } {
  const h = svaHost();
  let dev: IommuDevice | null = null;
  let parent: IommuDomain | null = null;
  let gpasid = false;
  let mm: Mm | null = null;
  let bond: SvaBond | null = null;
  let set: IoasidSet | null = null;
  let failed = false;
  if (n !== null) h.kernel.faults.failNth(n);
  try {
    dev = h.svaDevice("dsa", 0);
    const d = dev;
    h.core.enableFeature(d, "aux");
    // The VM's set owns the guest's host PASID (the nesting parent is given it at allocation).
    set = h.ioasid.allocSet({ vm: 1 }, 8, "mm");
    h.ioasid.alloc(set, 0x40, 0x40);
    parent = h.core.domainAlloc(d, { type: "unmanaged", nestingParent: true, ioasidSet: set });
    h.core.attachDevice(parent, d);
    h.core.map(parent, 0, 0x30_0000, 0x4000, IommuProt.READ | IommuProt.WRITE);
    h.core.addSubDevice(d, "wq0");
    h.core.bindGpasid(parent, d, bindData);
    gpasid = true;
    mm = h.newMm("proc");
    mm.mmap(VA, 4 * 0x1000, Prot.READ | Prot.WRITE, { populate: true });
    // A protection change in the middle of the mapping splits it: a second VMA.
    mm.mprotect(VA + 0x1000, 0x1000, Prot.READ);
    bond = h.core.sva.bindDevice(d, mm);
    h.core.reportPageRequest(d, { pasid: bond.pasid, addr: VA, read: true, write: false, exec: false, priv: false, grpid: 1, last: true });
    h.kernel.scheduler.runUntilIdle();
  } catch (e) {
    if (!isKernelError(e)) throw e;
    failed = true;
  }
  h.kernel.faults.disarm();
  h.kernel.scheduler.runUntilIdle();
  if (bond !== null) h.core.sva.unbindDevice(bond);
  if (gpasid && parent !== null && dev !== null) h.core.unbindGpasid(parent, dev, bindData);
  mm?.exit();
  if (dev !== null) h.core.releaseDevice(dev);
  if (parent !== null) h.core.domainFree(parent);
  if (set !== null) {
    h.ioasid.freeSet(set);
    h.ioasid.setPut(set);
  }
  h.kernel.scheduler.runUntilIdle();
  const leftovers = {
    pages: h.pages.live().filter((p) => !p.tag.startsWith("mock.")),
    pasids: h.ioasid.allocated,
    domains: h.core.liveDomains,
    bonds: h.core.sva.liveBonds,
    pending: h.kernel.scheduler.pending(),
  };
  return { failed, faults: h.kernel.faults, leftovers };
}

const NOTHING = { pages: [], pasids: 0, domains: 0, bonds: 0, pending: 0 };

describe("fail-nth sweep of the IOMMU core", () => {
  it("rolls back every failure: nothing is left once the owners undo what they got; every declared point fails in some run", () => {
    const clean = scenario(null);
    expect(clean.failed).toBe(false);
    expect(clean.leftovers).toEqual(NOTHING);
    const cov = new FaultCoverage(IOMMU_CORE_FAULT_POINTS, [MOCK_FAULT_POINTS, IOASID_FAULT_POINTS]);
    const mock = new FaultCoverage(MOCK_FAULT_POINTS);
    let n = 1;
    for (; n < 300; n++) {
      const r = scenario(n);
      cov.record(r.faults);
      mock.record(r.faults);
      expect({ n, ...r.leftovers }).toEqual({ n, ...NOTHING });
      if (r.faults.injected.length === 0) break;
    }
    expect(n).toBeLessThan(300);
    expect(cov.missing()).toEqual([]);
    expect(mock.missing()).toEqual([]);
    expect(cov.undeclared()).toEqual([]);
  });

  it("declares every point its code injects by name", () => {
    const named = sourceFaultPoints(fileURLToPath(new URL(".", import.meta.url)));
    expect(named.length).toBeGreaterThan(0);
    expect(named.filter((p) => !IOMMU_CORE_FAULT_POINTS.has(p) && !MOCK_FAULT_POINTS.has(p))).toEqual([]);
  });
});
