import { describe, expect, it } from "vitest";
import { Prot } from "@vsva/iommu-core";
import { Host } from "./host.js";
import { InvariantChecker, checkQuiescent } from "./invariants.js";
import { dmaWrite } from "../scenarios/sva-common.js";

function boundHost() {
  const h = new Host();
  const slot = h.addDevice("dsa0", 4);
  h.enableSva(slot);
  const mm = h.newMm("P");
  const buf = mm.mmap(null, 0x2000, Prot.READ | Prot.WRITE, { populate: true });
  const bond = h.core.sva.bindDevice(slot.dev, mm);
  const checker = new InvariantChecker(h);
  return { h, slot, mm, buf, bond, checker };
}

describe("InvariantChecker", () => {
  it("finds DMA that reached a page its address space does not map there", () => {
    const { h, slot, buf, bond, checker } = boundHost();
    checker.bind(bond.pasid, () => 0x1234_5000); // a lie about where the buffer lives
    expect(dmaWrite(h, slot, bond.pasid, buf, Uint8Array.of(1))).toBe("ok");
    expect(checker.check().join("\n")).toMatch(/reached 0x[0-9a-f]+, but the bound address space maps it to 0x12345000/);
  });

  it("finds translations and device-TLB entries for a PASID nobody has bound", () => {
    const { h, slot, buf, bond, checker } = boundHost();
    expect(dmaWrite(h, slot, bond.pasid, buf, Uint8Array.of(1))).toBe("ok");
    const found = checker.check().join("\n");
    expect(found).toMatch(/translated although no address space is bound/);
    expect(found).toMatch(/device TLB still holds .* for PASID \d+, which is not bound/);
  });

  it("finds a cached translation that a missing flush left stale", () => {
    const { h, slot, mm, buf, bond, checker } = boundHost();
    checker.bind(bond.pasid, (va) => {
      const m = mm.lookup(va);
      return m === null ? null : m.pa + (va - m.va);
    });
    expect(dmaWrite(h, slot, bond.pasid, buf, Uint8Array.of(1))).toBe("ok");
    expect(checker.check()).toEqual([]);
    // A driver bug: the PASID table page is rewritten behind the unit's back, with no PASID-cache flush.
    const pasidTables = h.pages.live().filter((p) => p.tag === "vtd.pasid-table");
    for (const p of pasidTables) h.mem.writeBytes(p.pa, new Uint8Array(4096));
    expect(checker.check().join("\n")).toMatch(/IOMMU (pasid cache entry|cache serves a stale translation)/);
  });

  it("reports leaks at quiescence", () => {
    const { h } = boundHost();
    expect(checkQuiescent(h).join("\n")).toMatch(/kernel pages leaked.*IOASID \d+ not reclaimed|IOASID \d+ not reclaimed/s);
  });
});
