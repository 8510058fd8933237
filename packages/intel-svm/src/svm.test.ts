import { describe, expect, it } from "vitest";
import { asHostPasid } from "@vsva/kernel";
import { TableWriter, x86Format } from "@vsva/iommu-hw";
import { PATTERN, dmaWrite, endpoint, probe, testHost } from "./test-host.js";

/** A process page table in host memory (what iommu-core's Mm builds), mapping one page. */
function processTables(h: ReturnType<typeof testHost>, va: number, pa: number) {
  let next = 0x60_0000;
  const w = new TableWriter(h.mem, x86Format({ levels: 4 }), { alloc: () => (next += 0x1000) });
  w.map(va, pa, 0x1000, { write: true, user: true });
  return w;
}

describe("native SVA (first level = the process's page table)", () => {
  it("binds an mm at its PASID: the device's DMA walks the CPU tables; unbind clears with the full flush", () => {
    const h = testHost();
    const ep = endpoint(h);
    const dev = probe(h, ep);
    const w = processTables(h, 0x4000_0000, 0x30_0000);
    const bond = h.drv.svaBind(dev, { pgd: w.root, levels: 4, pasid: asHostPasid(9), name: "proc" });
    expect(dmaWrite(ep, 0x4000_0010, PATTERN, 9)).toBe("ok");
    expect(h.mem.read32(0x30_0010)).toBe(0xefbeadde);
    bond.unbind();
    expect(h.unit.debug.checkCaches()).toEqual([]);
    expect([...ep.deviceTlb.entries()].some((e) => e.pasid === 9)).toBe(false);
    expect(dmaWrite(ep, 0x4000_0010, PATTERN, 9)).toBe("translationFault");
  });

  it("an mmu-notifier invalidation removes the cached translation of the changed range", () => {
    const h = testHost();
    const ep = endpoint(h);
    const dev = probe(h, ep);
    const w = processTables(h, 0x4000_0000, 0x30_0000);
    const bond = h.drv.svaBind(dev, { pgd: w.root, levels: 4, pasid: asHostPasid(9), name: "proc" });
    expect(dmaWrite(ep, 0x4000_0000, PATTERN, 9)).toBe("ok");
    w.unmap(0x4000_0000, 0x1000);
    bond.invalidateRange(0x4000_0000, 0x4000_1000);
    expect(h.unit.debug.checkCaches()).toEqual([]);
    // Not served from a cache: the page is missing now, so the device asks for it (PRI).
    expect(dmaWrite(ep, 0x4000_0000, PATTERN, 9)).toBe("pageRequestPending");
  });

  it("release (the mm exits first) leaves FPD set so DMA still in flight faults without being recorded", () => {
    const h = testHost();
    const ep = endpoint(h);
    const dev = probe(h, ep);
    const w = processTables(h, 0x4000_0000, 0x30_0000);
    const bond = h.drv.svaBind(dev, { pgd: w.root, levels: 4, pasid: asHostPasid(9), name: "proc" });
    bond.release();
    const recorded: boolean[] = [];
    h.kernel.trace.subscribe((e) => {
      if (e.kind === "vtd.fault") recorded.push(e.payload.recorded);
    });
    ep.configWrite(ep.config.offsets.ats + 6, 2, 0); // no ATS: the request reaches the unit's fault path
    expect(dmaWrite(ep, 0x4000_0000, PATTERN, 9)).toBe("translationFault");
    expect(recorded).toEqual([false]);
  });
});

describe("queued invalidation errors", () => {
  it("a descriptor the unit refuses fails the submission with EIO, and the queue keeps working", () => {
    const h = testHost({ deviceTlb: false });
    // A device-TLB descriptor on a unit without ECAP.DT is an invalid type (IQE).
    const bad = new Uint32Array([3, 0, 0, 0]);
    let msg = "";
    try {
      h.drv.hw.qi.submit([bad]);
    } catch (e) {
      msg = String(e);
    }
    expect(msg).toMatch(/EIO.*invalid descriptor type/);
    expect(() => h.drv.hw.qi.submit([])).not.toThrow();
  });
});

describe("native SVA refuses what VT-d cannot walk", () => {
  it("an AArch64 mm is EINVAL, and nothing is programmed", () => {
    const h = testHost();
    const ep = endpoint(h);
    const dev = probe(h, ep);
    const arm = { pgd: 0x60_0000, levels: 4 as const, pasid: asHostPasid(9), name: "arm", format: { arch: "aarch64" as const, granule: 4096 as const, t0sz: 16 } };
    expect(() => h.drv.svaBind(dev, arm)).toThrow(/-EINVAL: arm: VT-d's first level walks x86-64 tables, not aarch64/);
    expect(dmaWrite(ep, 0x4000_0010, PATTERN, 9)).not.toBe("ok");
  });
});
