import { describe, expect, it } from "vitest";
import { Errno } from "@vsva/kernel";
import { errnoOf } from "@vsva/kernel/testing";
import { IommuProt, PagingDomain } from "@vsva/iommu-core";
import { PasidEntry, Pgtt } from "@vsva/iommu-hw";
import { PATTERN, dmaWrite, endpoint, probe, testHost } from "./test-host.js";
import { VtdPagingDomain } from "./domain.js";

const RW = IommuProt.READ | IommuProt.WRITE;

function dmaHost() {
  const h = testHost();
  const ep = endpoint(h);
  const dev = probe(h, ep);
  const domain = h.core.domainAlloc(dev, { type: "unmanaged", nestingParent: false });
  h.core.attachDevice(domain, dev);
  return { ...h, ep, dev, domain };
}

describe("paging domains: second-level tables and RID_PASID", () => {
  it("maps an IOVA and the device's DMA without PASID lands at the physical page", () => {
    const { core, domain, ep, mem } = dmaHost();
    core.map(domain, 0x10_0000, 0x40_0000, 0x2000, RW);
    expect(dmaWrite(ep, 0x10_1008, PATTERN)).toBe("ok");
    expect(mem.read32(0x40_1008)).toBe(0xefbeadde);
    expect(core.iovaToPhys(domain, 0x10_1010)).toBe(0x40_1010);
  });

  it("programs PASID 0 as second-level only with the domain's DID", () => {
    const { drv, domain, dev } = dmaHost();
    const d = drv.hw.device(dev);
    const e = d.table.read(0);
    const vd = (domain as PagingDomain).driver as VtdPagingDomain;
    expect(e === null ? null : [PasidEntry.get(e, "P"), PasidEntry.get(e, "PGTT"), PasidEntry.get(e, "DID")]).toEqual([1, Pgtt.SECOND_LEVEL, vd.did]);
    expect(vd.did).toBeGreaterThanOrEqual(2);
  });

  it("unmap flushes the IOTLB and device TLB: the stale translation is not served afterwards", () => {
    const { core, domain, ep, unit } = dmaHost();
    core.map(domain, 0x10_0000, 0x40_0000, 0x1000, RW);
    expect(dmaWrite(ep, 0x10_0000, PATTERN)).toBe("ok");
    expect([...unit.debug.cachedTranslations()].length).toBeGreaterThan(0);
    expect(core.unmap(domain, 0x10_0000, 0x1000)).toBe(0x1000);
    expect(unit.debug.checkCaches()).toEqual([]);
    expect(dmaWrite(ep, 0x10_0000, PATTERN)).toBe("translationFault");
  });

  it("a domain freed after detach gives back its table pages and DID", () => {
    const { core, domain, dev, pages, drv } = dmaHost();
    core.map(domain, 0x10_0000, 0x40_0000, 0x20_0000, RW);
    const before = pages.stats.livePages;
    const dids = drv.hw.dids.inUse;
    core.detachDevice(domain, dev);
    core.domainFree(domain);
    expect(pages.stats.livePages).toBeLessThan(before);
    expect(drv.hw.dids.inUse).toBe(dids - 1);
  });

  it("a device attached to a blocked domain faults every request without PASID", () => {
    const { core, dev, ep, domain } = dmaHost();
    core.map(domain, 0, 0x40_0000, 0x1000, RW);
    core.detachDevice(domain, dev);
    const blocked = core.domainAlloc(dev, { type: "blocked" });
    core.attachDevice(blocked, dev);
    expect(dmaWrite(ep, 0, PATTERN)).toBe("translationFault");
  });
});

describe("aux domains: a default PASID per domain for IOMMU-backed mdevs", () => {
  it("gives the aux domain a host PASID and a second-level-only entry; the mdev's DMA with it is translated", () => {
    const h = testHost();
    const ep = endpoint(h);
    const pdev = probe(h, ep);
    h.core.enableFeature(pdev, "aux");
    const mdev = h.core.addSubDevice(pdev, "wq0");
    const aux = h.core.domainAlloc(pdev, { type: "unmanaged", nestingParent: false });
    h.core.attachSubDevice(aux, mdev);
    const vd = (aux as PagingDomain).driver as VtdPagingDomain;
    const pasid = vd.auxPasid;
    expect(pasid).not.toBeNull();
    expect(h.ioasid.state(pasid ?? 0 as never)).toBe("ACTIVE");
    // What the mdev's vendor driver asks for to program its queue (iommu_aux_get_pasid); only for an attached sub-device.
    expect(h.core.auxGetPasid(aux, mdev)).toBe(pasid);
    expect(errnoOf(() => h.core.auxGetPasid(aux, pdev))).toBe(Errno.EINVAL);
    h.core.map(aux, 0x20_0000, 0x50_0000, 0x1000, RW);
    expect(dmaWrite(ep, 0x20_0010, PATTERN, pasid ?? 0)).toBe("ok");
    expect(h.mem.read32(0x50_0010)).toBe(0xefbeadde);
    const e = h.drv.hw.device(pdev).table.read(pasid ?? 0);
    expect(e === null ? null : [PasidEntry.get(e, "PGTT"), PasidEntry.get(e, "SRE")]).toEqual([Pgtt.SECOND_LEVEL, 1]);
    // The last sub-device leaving clears the entry; freeing the domain gives the PASID back.
    h.core.detachSubDevice(aux, mdev);
    expect(dmaWrite(ep, 0x20_0010, PATTERN, pasid ?? 0)).toBe("translationFault");
    h.core.domainFree(aux);
    expect(h.ioasid.state(pasid ?? 0 as never)).toBe("IDLE");
  });
});
