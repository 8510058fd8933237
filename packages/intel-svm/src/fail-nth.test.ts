import { describe, expect, it } from "vitest";
import { isKernelError } from "@vsva/kernel";
import { FaultCoverage, sourceFaultPoints } from "@vsva/kernel/testing";
import { IOASID_FAULT_POINTS } from "@vsva/ioasid";
import { IOMMU_CORE_FAULT_POINTS, type IommuDevice, type IommuDomain, IommuProt, Mm, Prot, type SvaBond } from "@vsva/iommu-core";
import { fileURLToPath } from "node:url";
import { VTD_FAULT_POINTS } from "./fault-points.js";
import { GUEST_HPA, GUEST_RAM } from "./nested-host.js";
import { bindBytes, endpoint, guestRam, guestTable, testHost } from "./test-host.js";

/**
 * iommufd_fail_nth in spirit: run bring-up, probe, attach, aux attach, map
 * and bind with the n-th fallible step failing, for every n until a run
 * passes untouched; after each run tear down whatever was made and check
 * that every page the driver allocated is back and the IOASID holds only
 * its owner's reference.
 */
function scenario(n: number | null) {
  const h = testHost({}, false);
  const ep = endpoint(h);
  const ep2 = endpoint(h, 5);
  const set = h.ioasid.allocSet({ vm: 1 }, 8, "mm");
  const hpasid = h.ioasid.alloc(set, 1, 0xfffff);
  const gpgd = guestTable(guestRam(h, GUEST_HPA, GUEST_RAM), 0x7000_0000, 0x10_0000);
  let dev: IommuDevice | null = null;
  let parent: IommuDomain | null = null;
  let aux: IommuDomain | null = null;
  let sva: IommuDevice | null = null;
  let mm: Mm | null = null;
  let bond: SvaBond | null = null;
  let failed: unknown = null;
  if (n !== null) h.kernel.faults.failNth(n);
  try {
    h.drv.init();
    dev = h.core.probeDevice(h.iommu, { name: "dsa0", sid: ep.sid, pasidWidth: 20 });
    h.core.enableFeature(dev, "sva");
    h.core.enableFeature(dev, "aux");
    parent = h.core.domainAlloc(dev, { type: "unmanaged", nestingParent: true, ioasidSet: set });
    h.core.attachDevice(parent, dev);
    h.core.map(parent, 0, GUEST_HPA, GUEST_RAM, IommuProt.READ | IommuProt.WRITE);
    const mdev = h.core.addSubDevice(dev, "wq0");
    aux = h.core.domainAlloc(dev, { type: "unmanaged", nestingParent: false });
    h.core.attachSubDevice(aux, mdev);
    h.core.bindGpasid(parent, dev, bindBytes(hpasid, { gpgd, gpasid: 5 }));
    // Native SVA of a host process on a second device (its own PASID table: the core's SVA PASIDs come
    // from the core's namespace in this test host, which would meet the aux domain's PASID on dsa0).
    sva = h.core.probeDevice(h.iommu, { name: "dsa1", sid: ep2.sid, pasidWidth: 20 });
    h.core.enableFeature(sva, "sva");
    mm = new Mm({ kernel: h.kernel, mem: h.mem, pages: h.pages, name: "proc", arch: "x86-64" });
    mm.mmap(null, 0x2000, Prot.READ | Prot.WRITE, { populate: true });
    bond = h.core.sva.bindDevice(sva, mm);
  } catch (e) {
    if (!isKernelError(e)) throw e;
    failed = e;
  }
  h.kernel.faults.disarm();
  const injected = [...h.kernel.faults.injected];
  // Teardown of whatever exists, as the owners would.
  if (bond !== null) h.core.sva.unbindDevice(bond);
  mm?.exit();
  if (sva !== null) h.core.releaseDevice(sva);
  if (dev !== null) h.core.releaseDevice(dev);
  if (parent !== null) h.core.domainFree(parent);
  if (aux !== null) h.core.domainFree(aux);
  h.drv.shutdown();
  return { h, hpasid, failed, injected, faults: h.kernel.faults };
}

describe("fail-nth sweep over init, probe, attach, map and bind", () => {
  it("every failure rolls back; every page the driver allocated is freed; the IOASID keeps only its owner's reference", () => {
    const clean = scenario(null);
    expect(clean.failed).toBeNull();
    expect(clean.h.pages.live()).toEqual([]);
    const cov = new FaultCoverage(VTD_FAULT_POINTS, [IOMMU_CORE_FAULT_POINTS, IOASID_FAULT_POINTS]);
    let n = 1;
    for (; n < 500; n++) {
      const r = scenario(n);
      cov.record(r.faults);
      if (r.failed === null && r.injected.length === 0) break;
      expect({ n, live: r.h.pages.live() }).toEqual({ n, live: [] });
      expect({ n, refs: r.h.ioasid.refcount(r.hpasid), state: r.h.ioasid.state(r.hpasid) }).toEqual({ n, refs: 1, state: "ACTIVE" });
      expect(r.h.core.liveDomains).toBe(0);
    }
    expect(n).toBeLessThan(500);
    // Dozens of fallible steps: page allocations for every table, IOASID steps, driver points.
    expect(n).toBeGreaterThan(20);
    // Every point the driver declares is failed somewhere in this sweep, and every point it meets is declared by someone.
    expect(cov.missing()).toEqual([]);
    expect(cov.undeclared()).toEqual([]);
  });

  it("declares every point its code injects by name", () => {
    const named = sourceFaultPoints(fileURLToPath(new URL(".", import.meta.url)));
    expect(named.length).toBeGreaterThan(0);
    expect(named.filter((p) => !VTD_FAULT_POINTS.has(p))).toEqual([]);
  });
});
