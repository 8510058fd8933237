import { describe, expect, it } from "vitest";
import { isKernelError } from "@vsva/kernel";
import { type IommuDevice, type IommuDomain, IommuProt } from "@vsva/iommu-core";
import { GUEST_HPA, GUEST_RAM } from "./nested-host.js";
import { bindBytes, endpoint, guestTable, testHost } from "./test-host.js";

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
  const set = h.ioasid.allocSet({ vm: 1 }, 8, "mm");
  const hpasid = h.ioasid.alloc(set, 1, 0xfffff);
  const gpgd = guestTable(h.mem, GUEST_HPA, 0x7000_0000, 0x10_0000);
  let dev: IommuDevice | null = null;
  let parent: IommuDomain | null = null;
  let aux: IommuDomain | null = null;
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
  } catch (e) {
    if (!isKernelError(e)) throw e;
    failed = e;
  }
  h.kernel.faults.disarm();
  const injected = [...h.kernel.faults.injected];
  // Teardown of whatever exists, as the owners would.
  if (dev !== null) h.core.releaseDevice(dev);
  if (parent !== null) h.core.domainFree(parent);
  if (aux !== null) h.core.domainFree(aux);
  h.drv.shutdown();
  return { h, hpasid, failed, injected };
}

describe("fail-nth sweep over init, probe, attach, map and bind", () => {
  it("every failure rolls back; every page the driver allocated is freed; the IOASID keeps only its owner's reference", () => {
    const clean = scenario(null);
    expect(clean.failed).toBeNull();
    expect(clean.h.pages.live()).toEqual([]);
    const points = new Set<string>();
    let n = 1;
    for (; n < 500; n++) {
      const r = scenario(n);
      if (r.failed === null && r.injected.length === 0) break;
      for (const p of r.injected) points.add(p);
      expect({ n, live: r.h.pages.live() }).toEqual({ n, live: [] });
      expect({ n, refs: r.h.ioasid.refcount(r.hpasid), state: r.h.ioasid.state(r.hpasid) }).toEqual({ n, refs: 1, state: "ACTIVE" });
      expect(r.h.core.liveDomains).toBe(0);
    }
    expect(n).toBeLessThan(500);
    // Dozens of fallible steps: page allocations for every table, IOASID steps, driver points.
    expect(n).toBeGreaterThan(20);
    for (const p of ["vtd.init", "iommu.page-alloc", "vtd.probe-device", "vtd.attach", "vtd.map", "vtd.svm-alloc", "vtd.sdev-alloc", "ioasid.attach_spid"]) {
      expect(points).toContain(p);
    }
  });
});
