import { Errno, KernelError, sourceId } from "@vsva/kernel";
import { describe, expect, it } from "vitest";
import type { PagingDomain } from "./domain.js";
import { IommuProt } from "./ops.js";
import { mockHost } from "./testing/mock-host.js";
import { errnoOf } from "@vsva/kernel/testing";

const K4 = 0x1000;
const M2 = 0x20_0000;
const G1 = 0x4000_0000;
const RW = IommuProt.READ | IommuProt.WRITE;

function bench() {
  const h = mockHost();
  const dev = h.core.probeDevice(h.iommu, { name: "nic", sid: sourceId(0, 2, 0) });
  const domain = h.core.domainAlloc(dev, { type: "unmanaged", nestingParent: false }) as PagingDomain;
  return { ...h, dev, domain };
}

describe("map splits a range into the page sizes the domain supports", () => {
  it("uses 4 KiB pages up to a 2 MiB boundary, 2 MiB pages while they fit, and 4 KiB for the tail", () => {
    const { core, mock, domain } = bench();
    const iova = M2 - 2 * K4;
    core.map(domain, iova, iova + 0x4000_0000, 2 * K4 + 2 * M2 + K4, RW);
    const sizes = [...mock.mappings(domain.driver).entries()].sort((a, b) => a[0] - b[0]).map(([va, m]) => [va, m.pgsize]);
    expect(sizes).toEqual([
      [M2 - 2 * K4, K4],
      [M2 - K4, K4],
      [M2, M2],
      [2 * M2, M2],
      [3 * M2, K4],
    ]);
    expect(core.iovaToPhys(domain, M2 + 0x1234)).toBe(M2 + 0x4000_0000 + 0x1234);
  });

  it("maps a whole gigabyte with one 1 GiB page when aligned", () => {
    const { core, mock, domain } = bench();
    core.map(domain, G1, 2 * G1, G1, RW);
    expect([...mock.mappings(domain.driver).values()].map((m) => m.pgsize)).toEqual([G1]);
  });

  it("unmap returns the bytes unmapped and stops at the first hole", () => {
    const { core, domain } = bench();
    core.map(domain, 0, 0x10_0000, 4 * K4, RW);
    core.map(domain, 5 * K4, 0x20_0000, K4, RW);
    expect(core.unmap(domain, 0, 8 * K4)).toBe(4 * K4);
    expect(core.iovaToPhys(domain, 0)).toBeNull();
    expect(core.iovaToPhys(domain, 5 * K4)).toBe(0x20_0000);
    expect(core.unmap(domain, 0, K4)).toBe(0);
  });

  it("unmapping a range mapped with small pages through large-page-aligned calls removes every page", () => {
    const { core, mock, domain, pages } = bench();
    const before = pages.stats.livePages;
    // iova and paddr offset differently within 2 MiB: all 4 KiB pages.
    core.map(domain, 0, K4, M2, RW);
    expect(mock.mappings(domain.driver).size).toBe(512);
    expect(core.unmap(domain, 0, M2)).toBe(M2);
    expect(mock.mappings(domain.driver).size).toBe(0);
    expect(pages.stats.livePages).toBe(before);
  });

  it.each<[string, number, number, number, number]>([
    ["zero size", 0, 0, 0, RW],
    ["a misaligned iova", 0x800, 0, K4, RW],
    ["a misaligned paddr", 0, 0x10, K4, RW],
    ["a size that is not a whole page", 0, 0, K4 + 1, RW],
    ["a range past the aperture", 2 ** 48 - K4, 0, 2 * K4, RW],
    ["a negative iova", -K4, 0, K4, RW],
    ["unknown prot bits", 0, 0, K4, 0x40],
    ["neither read nor write", 0, 0, K4, IommuProt.CACHE],
  ])("refuses %s with EINVAL and maps nothing", (_what, iova, paddr, size, prot) => {
    const { core, mock, domain } = bench();
    expect(errnoOf(() => core.map(domain, iova, paddr, size, prot))).toBe(Errno.EINVAL);
    expect(mock.mappings(domain.driver).size).toBe(0);
  });

  it("refuses to map over an existing mapping (EEXIST) and leaves the original", () => {
    const { core, domain } = bench();
    core.map(domain, M2, 0x8000_0000, M2, RW);
    expect(errnoOf(() => core.map(domain, M2 - K4, 0x1000, 2 * K4, RW))).toBe(Errno.EEXIST);
    expect(core.iovaToPhys(domain, M2 - K4)).toBeNull();
    expect(core.iovaToPhys(domain, M2)).toBe(0x8000_0000);
  });

  it("refuses map and unmap on identity and blocked domains", () => {
    const { core, dev } = bench();
    const id = core.domainAlloc(dev, { type: "identity" });
    expect(errnoOf(() => core.map(id, 0, 0, K4, RW))).toBe(Errno.EINVAL);
    expect(errnoOf(() => core.unmap(id, 0, K4))).toBe(Errno.EINVAL);
    expect(core.iovaToPhys(id, 0x1234)).toBe(0x1234);
    expect(core.iovaToPhys(core.domainAlloc(dev, { type: "blocked" }), 0x1234)).toBeNull();
  });
});

describe("a map that fails part way leaves nothing mapped and no page leaked (fail-nth sweep)", () => {
  // A range that needs table pages at two levels and several page sizes.
  const iova = G1 - 3 * K4;
  const size = 3 * K4 + 2 * M2 + 5 * K4;

  it("unwinds at every injection point the path reaches", () => {
    let n = 1;
    let completed = false;
    const seen = new Set<string>();
    for (; n < 200 && !completed; n++) {
      const { core, mock, domain, pages, kernel } = bench();
      const livePages = pages.stats.livePages;
      kernel.faults.resetCounters();
      kernel.faults.failNth(n);
      try {
        core.map(domain, iova, iova, size, RW);
        completed = true;
      } catch (e) {
        expect(e).toBeInstanceOf(KernelError);
        seen.add(kernel.faults.injected[0] ?? "");
        expect(mock.mappings(domain.driver).size).toBe(0);
        expect(mock.tablePages(domain.driver)).toBe(0);
        expect(pages.stats.livePages).toBe(livePages);
        for (let va = iova; va < iova + size; va += K4) expect(core.iovaToPhys(domain, va)).toBeNull();
      }
      kernel.faults.disarm();
      if (completed) {
        expect(core.iovaToPhys(domain, iova + size - K4)).toBe(iova + size - K4);
        expect(core.unmap(domain, iova, size)).toBe(size);
        expect(pages.stats.livePages).toBe(livePages);
      }
    }
    expect(completed).toBe(true);
    expect(seen).toEqual(new Set(["iommu.page-alloc", "mock.map-page"]));
    // 10 pages + 3 table pages (two 2 MiB-level tables and one 1 GiB-level table).
    expect(n - 1).toBeGreaterThan(12);
  });
});

describe("domain teardown", () => {
  it("frees every table page when a domain with live mappings is freed", () => {
    const { core, domain, pages, dev } = bench();
    core.map(domain, 0, 0, 3 * M2 + K4, RW);
    core.domainFree(domain);
    core.releaseDevice(dev);
    expect(pages.live()).toEqual([]);
    expect(core.liveDomains).toBe(0);
  });
});
