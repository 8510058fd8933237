import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { Errno, TraceBus, TraceRecorder, isKernelError, sourceId } from "@vsva/kernel";
import { SparseMemory } from "@vsva/pgtable";
import { PciEndpoint, normaliseRange } from "./endpoint.js";
import { makeRig } from "./testing/rig.js";

const PAGE = 0x1000;
const one = Uint8Array.of(0x5c);

/** Writes one byte at `addr` through the engine; the translation used is what the device TLB (or IOMMU) said. */
function poke(ep: PciEndpoint, pasid: number | undefined, addr: number): string {
  ep.dma.setProgram({ ...(pasid === undefined ? {} : { pasid }), addr, length: 1, direction: "write", pattern: one });
  return ep.dma.trigger();
}

describe("device TLB staleness until invalidation", () => {
  it("keeps serving an unmapped page until the IOMMU invalidates it", () => {
    const { iommu, ep, mem } = makeRig();
    iommu.map(3, 0x1000, { pa: 0x8000 });
    expect(poke(ep, 3, 0x1000)).toBe("ok");
    iommu.unmap(3, 0x1000);
    iommu.map(3, 0x1000, { pa: 0x9000 }); // remapped elsewhere, no flush yet
    expect(poke(ep, 3, 0x1010)).toBe("ok");
    expect(mem.read8(0x8010)).toBe(0x5c); // the stale translation was used
    expect(mem.read8(0x9010)).toBe(0);
    iommu.invalidate(ep.sid, { pasid: 3, addr: 0x1000, size: PAGE });
    expect(poke(ep, 3, 0x1020)).toBe("ok");
    expect(mem.read8(0x9020)).toBe(0x5c);
  });

  it("a ranged invalidation removes the range and nothing else", () => {
    const { iommu, ep } = makeRig();
    for (let p = 0; p < 8; p++) iommu.map(3, p * PAGE, { pa: 0x10_0000 + p * PAGE });
    for (let p = 0; p < 8; p++) poke(ep, 3, p * PAGE);
    iommu.invalidate(ep.sid, { pasid: 3, addr: 0x4000, size: 0x4000 });
    const cached = [...ep.deviceTlb.entries()].map((e) => e.entry.base).sort((a, b) => a - b);
    expect(cached).toEqual([0x0, 0x1000, 0x2000, 0x3000]);
  });

  it("a PASID invalidation leaves other PASIDs and requests without PASID alone", () => {
    const { iommu, ep } = makeRig();
    for (const pasid of [1, 2, undefined]) {
      iommu.map(pasid, 0x1000, { pa: 0x8000 });
      poke(ep, pasid, 0x1000);
    }
    iommu.invalidate(ep.sid, { pasid: 1, addr: 0, size: 2 ** 48 });
    expect([...ep.deviceTlb.entries()].map((e) => e.pasid).sort()).toEqual([2, undefined]);
  });

  it("a global invalidation removes every PASID's entries", () => {
    const { iommu, ep } = makeRig();
    for (const pasid of [1, 2, undefined]) {
      iommu.map(pasid, 0x1000, { pa: 0x8000 });
      poke(ep, pasid, 0x1000);
    }
    iommu.invalidate(ep.sid, { global: true, addr: 0, size: 2 ** 48 });
    expect([...ep.deviceTlb.entries()].map((e) => e.pasid)).toEqual([undefined]);
  });

  it("widens an invalidation to the Smallest Translation Unit", () => {
    const { iommu, ep } = makeRig();
    ep.configWrite(ep.config.offsets.ats + 6, 2, 0x8000 | 1); // STU = 8 KiB
    iommu.map(3, 0x2000, { pa: 0x8000 });
    iommu.map(3, 0x3000, { pa: 0x9000 });
    poke(ep, 3, 0x2000);
    poke(ep, 3, 0x3000);
    iommu.invalidate(ep.sid, { pasid: 3, addr: 0x2000, size: PAGE });
    expect(ep.deviceTlb.size).toBe(0);
  });

  it("keeps entries across ATS disable and re-enable: only an invalidation removes them", () => {
    const { iommu, ep, mem } = makeRig();
    const atsCtl = ep.config.offsets.ats + 6;
    iommu.map(3, 0x1000, { pa: 0x8000 });
    poke(ep, 3, 0x1000);
    ep.configWrite(atsCtl, 2, 0);
    iommu.map(3, 0x1000, { pa: 0x9000 });
    expect(poke(ep, 3, 0x1001)).toBe("ok"); // untranslated: the IOMMU's current answer
    expect(mem.read8(0x9001)).toBe(0x5c);
    ep.configWrite(atsCtl, 2, 0x8000);
    poke(ep, 3, 0x1002);
    expect(mem.read8(0x8002)).toBe(0x5c); // stale entry is back in use
  });

  it("traces each invalidation with what it removed", () => {
    const trace = new TraceBus({ now: () => 0 });
    const rec = new TraceRecorder(trace);
    const { iommu, ep } = makeRig({ trace });
    iommu.map(3, 0x1000, { pa: 0x8000 });
    poke(ep, 3, 0x1000);
    iommu.invalidate(ep.sid, { pasid: 3, addr: 0x1000, size: PAGE });
    expect(rec.ofKind("pci.devtlb-invalidate").map((e) => [e.ids, e.payload])).toEqual([
      [{ device: "00:04.0", hpasid: 3 }, { addr: 0x1000, size: PAGE, global: false, removed: 1 }],
    ]);
  });

  it("after the right invalidations, every cached translation agrees with the IOMMU (property)", () => {
    type Op =
      | { kind: "dma"; pasid: number | undefined; page: number }
      | { kind: "remap"; pasid: number | undefined; page: number; frame: number | null; inv: "page" | "block" | "pasid" | "global" };
    const pasidArb = fc.constantFrom<number | undefined>(1, 2, undefined);
    const op: fc.Arbitrary<Op> = fc.oneof(
      fc.record({ kind: fc.constant("dma" as const), pasid: pasidArb, page: fc.nat({ max: 15 }) }),
      fc.record({
        kind: fc.constant("remap" as const),
        pasid: pasidArb,
        page: fc.nat({ max: 15 }),
        frame: fc.option(fc.nat({ max: 63 }), { nil: null }),
        inv: fc.constantFrom("page" as const, "block" as const, "pasid" as const, "global" as const),
      }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), fc.nat({ max: 2 }), (ops, stu) => {
        const { iommu, ep } = makeRig({ enable: { pri: false }, deviceTlbEntries: 24 });
        ep.configWrite(ep.config.offsets.ats + 6, 2, 0x8000 | stu);
        for (const pasid of [1, 2, undefined]) for (let p = 0; p < 16; p++) iommu.map(pasid, p * PAGE, { pa: 0x20_0000 + p * PAGE });
        for (const o of ops) {
          if (o.kind === "dma") {
            poke(ep, o.pasid, o.page * PAGE + 7);
            continue;
          }
          iommu.unmap(o.pasid, o.page * PAGE);
          if (o.frame !== null) iommu.map(o.pasid, o.page * PAGE, { pa: 0x40_0000 + o.frame * PAGE });
          const pasidPart = o.pasid === undefined ? {} : { pasid: o.pasid };
          if (o.inv === "page") iommu.invalidate(ep.sid, { ...pasidPart, addr: o.page * PAGE, size: PAGE });
          else if (o.inv === "block") iommu.invalidate(ep.sid, { ...pasidPart, addr: (o.page & ~3) * PAGE, size: 4 * PAGE });
          else if (o.inv === "global" && o.pasid !== undefined) iommu.invalidate(ep.sid, { global: true, addr: o.page * PAGE, size: PAGE });
          else iommu.invalidate(ep.sid, { ...pasidPart, addr: 0, size: 16 * PAGE });
          for (const { pasid, entry } of ep.deviceTlb.entries()) {
            const m = iommu.lookup(pasid, entry.base);
            expect(m, `stale entry for PASID ${pasid} at ${entry.base}`).toBeDefined();
            expect(m?.pa).toBe(entry.paBase);
          }
        }
      }),
      { numRuns: 150 },
    );
  });

  it("without the invalidation the device TLB disagrees with the IOMMU (the property's control)", () => {
    const { iommu, ep } = makeRig();
    iommu.map(1, 0x1000, { pa: 0x8000 });
    poke(ep, 1, 0x1000);
    iommu.unmap(1, 0x1000);
    const stale = [...ep.deviceTlb.entries()].filter(({ pasid, entry }) => iommu.lookup(pasid, entry.base) === undefined);
    expect(stale).toHaveLength(1);
  });
});

describe("normaliseRange", () => {
  it("covers the requested range with an aligned power of two of at least the minimum", () => {
    fc.assert(
      fc.property(fc.nat({ max: 2 ** 40 }), fc.integer({ min: 1, max: 2 ** 30 }), fc.integer({ min: 12, max: 20 }), (addr, size, minShift) => {
        const r = normaliseRange(addr, size, 2 ** minShift);
        expect(r.size >= 2 ** minShift).toBe(true);
        expect(Number.isInteger(Math.log2(r.size))).toBe(true);
        expect(r.addr % r.size).toBe(0);
        expect(r.addr <= addr && r.addr + r.size >= addr + size).toBe(true);
      }),
    );
  });

  it("keeps an aligned power-of-two range as it is", () => {
    expect(normaliseRange(0x20_0000, 0x20_0000, 0x1000)).toEqual({ addr: 0x20_0000, size: 0x20_0000 });
    expect(normaliseRange(Number.NaN, -5, 0x1000)).toEqual({ addr: 0, size: 0x1000 });
  });
});

describe("PciEndpoint", () => {
  it("derives its source ID from bus/device/function", () => {
    const { ep } = makeRig();
    expect(ep.sid).toBe(sourceId(0, 4, 0));
    expect(ep.name).toBe("00:04.0");
  });

  it("refuses an impossible BDF or device TLB size with EINVAL", () => {
    const mem = new SparseMemory();
    const base = { id: { vendorId: 1, deviceId: 2 }, mem, bus: 0, dev: 0, fn: 0 };
    const einval = (f: () => unknown) => {
      try {
        f();
        return false;
      } catch (e) {
        return isKernelError(e, Errno.EINVAL);
      }
    };
    expect(einval(() => new PciEndpoint({ ...base, dev: 32 }))).toBe(true);
    expect(einval(() => new PciEndpoint({ ...base, fn: 8 }))).toBe(true);
    expect(einval(() => new PciEndpoint({ ...base, deviceTlbEntries: 0 }))).toBe(true);
  });

  it("ignores invalidations without an ATS capability, and responses addressed to another function", () => {
    const { iommu, ep } = makeRig({ without: ["ats", "pri"] });
    expect(() => iommu.invalidate(ep.sid, { addr: 0, size: PAGE })).not.toThrow();
    const r = makeRig();
    r.ep.pageResponse({ sid: sourceId(0, 5, 0), groupIndex: 0, code: "success" });
    expect(r.ep.pri?.stats.unexpected).toBe(0);
  });

  it("detached from its IOMMU, a DMA gets no completion", () => {
    const { ep } = makeRig();
    ep.detach();
    expect(poke(ep, undefined, 0x1000)).toBe("memoryAbort");
  });

  it("Initiate FLR resets config registers, empties the device TLB, abandons PRI and idles the engine", () => {
    const { iommu, ep } = makeRig();
    iommu.map(3, 0x1000, { pa: 0x8000 });
    poke(ep, 3, 0x1000);
    ep.dma.setProgram({ pasid: 3, addr: 0x40_0000, length: 1, direction: "write", pattern: one });
    expect(ep.dma.trigger()).toBe("pageRequestPending");
    ep.configWrite(0x48, 2, 0x8000); // PCIe Device Control: Initiate FLR
    expect(ep.flrCount).toBe(1);
    expect(ep.busMasterEnabled).toBe(false);
    expect(ep.atsEnabled).toBe(false);
    expect(ep.pasidEnabled).toBe(false);
    expect(ep.deviceTlb.size).toBe(0);
    expect(ep.pri?.outstanding).toBe(0);
    expect(ep.pri?.enabled).toBe(false);
    expect(ep.configRead(ep.config.offsets.pri + 6, 2) & 0x100).toBe(0x100);
    expect(ep.dma.result).toBe("idle");
    expect(ep.configRead(0x00, 4)).toBe(0x0b25_8086);
    // The late response for the abandoned group is unexpected to the reset function.
    iommu.respond({ sid: ep.sid, pasid: 3, groupIndex: 0 }, "success");
    expect(ep.dma.result).toBe("idle");
  });

  it("does not reset when FLR is not supported", () => {
    const { ep } = makeRig({ flr: false });
    ep.configWrite(0x48, 2, 0x8000);
    expect(ep.flrCount).toBe(0);
    expect(ep.busMasterEnabled).toBe(true);
  });
});
