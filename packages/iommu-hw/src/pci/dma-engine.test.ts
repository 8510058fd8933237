import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { makeRig } from "./testing/rig.js";

const PAGE = 0x1000;
const pattern = Uint8Array.from({ length: 7 }, (_, i) => 0x30 + i);

function bytesAt(mem: { readBytes(pa: number, d: Uint8Array): boolean }, pa: number, n: number): Uint8Array {
  const out = new Uint8Array(n);
  expect(mem.readBytes(pa, out)).toBe(true);
  return out;
}

function expectedPattern(n: number): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => pattern[i % pattern.length] ?? 0);
}

describe("DMA engine: writes and reads across page boundaries", () => {
  it("writes a pattern through scattered pages with ATS, one translation request per page", () => {
    const { iommu, ep, mem } = makeRig();
    // Virtual pages 0x10..0x12 map to physical pages in reverse order.
    iommu.map(42, 0x10_000, { pa: 0x32_000 });
    iommu.map(42, 0x11_000, { pa: 0x31_000 });
    iommu.map(42, 0x12_000, { pa: 0x30_000 });
    ep.dma.setProgram({ pasid: 42, addr: 0x10_800, length: 2 * PAGE, direction: "write", pattern });
    expect(ep.dma.trigger()).toBe("ok");
    const all = expectedPattern(2 * PAGE);
    expect(bytesAt(mem, 0x32_800, 0x800)).toEqual(all.subarray(0, 0x800));
    expect(bytesAt(mem, 0x31_000, PAGE)).toEqual(all.subarray(0x800, 0x1800));
    expect(bytesAt(mem, 0x30_000, 0x800)).toEqual(all.subarray(0x1800));
    expect(ep.dma.stats).toMatchObject({ bytesMoved: 2 * PAGE, atsTranslations: 3, translationsRequested: 3, deviceTlbHits: 0 });
    expect(iommu.translations.every((t) => t.ats === true && t.addr % PAGE === 0)).toBe(true);
  });

  it("hits the device TLB on a second transfer over the same pages", () => {
    const { iommu, ep } = makeRig();
    iommu.map(42, 0x10_000, { pa: 0x30_000 });
    iommu.map(42, 0x11_000, { pa: 0x31_000 });
    ep.dma.setProgram({ pasid: 42, addr: 0x10_000, length: 2 * PAGE, direction: "write", pattern });
    ep.dma.trigger();
    const before = iommu.translations.length;
    expect(ep.dma.trigger()).toBe("ok");
    expect(iommu.translations.length).toBe(before);
    expect(ep.dma.stats.deviceTlbHits).toBe(2);
  });

  it("reads into the destination buffer across pages", () => {
    const { iommu, ep, mem } = makeRig();
    iommu.map(undefined, 0x5000, { pa: 0x9000 });
    iommu.map(undefined, 0x6000, { pa: 0x4000 });
    mem.writeBytes(0x9f00, Uint8Array.from({ length: 0x100 }, (_, i) => i));
    mem.writeBytes(0x4000, Uint8Array.from({ length: 0x100 }, (_, i) => 255 - i));
    const buffer = new Uint8Array(0x200);
    ep.dma.setProgram({ addr: 0x5f00, length: 0x200, direction: "read", buffer });
    expect(ep.dma.trigger()).toBe("ok");
    expect(buffer[0]).toBe(0);
    expect(buffer[0xff]).toBe(0xff);
    expect(buffer[0x100]).toBe(0xff);
    expect(buffer[0x1ff]).toBe(0);
  });

  it("without ATS sends untranslated requests for every page and caches nothing", () => {
    const { iommu, ep, mem } = makeRig({ enable: { ats: false } });
    iommu.map(42, 0x10_000, { pa: 0x30_000 });
    iommu.map(42, 0x11_000, { pa: 0x31_000 });
    ep.dma.setProgram({ pasid: 42, addr: 0x10_ffe, length: 4, direction: "write", pattern });
    expect(ep.dma.trigger()).toBe("ok");
    expect(ep.dma.trigger()).toBe("ok");
    expect(iommu.translations.map((t) => [t.addr, t.ats ?? false])).toEqual([
      [0x10_ffe, false],
      [0x11_000, false],
      [0x10_ffe, false],
      [0x11_000, false],
    ]);
    expect(ep.deviceTlb.size).toBe(0);
    expect(bytesAt(mem, 0x30_ffe, 2)).toEqual(expectedPattern(2));
    expect(bytesAt(mem, 0x31_000, 2)).toEqual(expectedPattern(4).subarray(2));
  });

  it("lands every byte exactly where the mapping says (property)", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 8 * PAGE - 1 }),
        fc.integer({ min: 1, max: 3 * PAGE }),
        fc.shuffledSubarray([...Array(12).keys()], { minLength: 12, maxLength: 12 }),
        fc.boolean(),
        (offset, length, frames, ats) => {
          const { iommu, ep, mem } = makeRig({ enable: { ats } });
          frames.forEach((f, i) => iommu.map(9, 0x100_000 + i * PAGE, { pa: 0x200_000 + f * PAGE }));
          ep.dma.setProgram({ pasid: 9, addr: 0x100_000 + offset, length, direction: "write", pattern });
          expect(ep.dma.trigger()).toBe("ok");
          for (let i = 0; i < length; i += 97) {
            const va = offset + i;
            const pa = 0x200_000 + (frames[Math.floor(va / PAGE)] ?? 0) * PAGE + (va % PAGE);
            expect(mem.read8(pa)).toBe(pattern[i % pattern.length]);
          }
          const buffer = new Uint8Array(length);
          ep.dma.setProgram({ pasid: 9, addr: 0x100_000 + offset, length, direction: "read", buffer });
          expect(ep.dma.trigger()).toBe("ok");
          expect(buffer).toEqual(expectedPattern(length));
        },
      ),
      { numRuns: 60 },
    );
  });
});

describe("DMA engine: what hardware refuses", () => {
  it("does nothing with Bus Master Enable clear", () => {
    const { iommu, ep, mem } = makeRig({ enable: { busMaster: false } });
    iommu.map(undefined, 0x1000, { pa: 0x2000 });
    ep.dma.setProgram({ addr: 0x1000, length: 16, direction: "write", pattern });
    expect(ep.dma.trigger()).toBe("busMasterDisabled");
    expect(iommu.translations).toHaveLength(0);
    expect(mem.stats.writes).toBe(0);
  });

  it("stops a transfer at the page where Bus Master Enable is cleared", () => {
    const { iommu, ep } = makeRig({ dma: { mode: "stepwise" } });
    iommu.map(undefined, 0x1000, { pa: 0x2000 });
    iommu.map(undefined, 0x2000, { pa: 0x3000 });
    ep.dma.setProgram({ addr: 0x1000, length: 2 * PAGE, direction: "write", pattern });
    expect(ep.dma.trigger()).toBe("running");
    expect(ep.dma.step()).toBe(true);
    ep.configWrite(0x04, 2, 0);
    ep.dma.step();
    expect(ep.dma.result).toBe("busMasterDisabled");
    expect(ep.dma.bytesDone).toBe(PAGE);
  });

  it("in stepwise mode, checks Bus Master Enable again at the first step: software may clear it after the trigger", () => {
    const { iommu, ep, mem } = makeRig({ dma: { mode: "stepwise" } });
    iommu.map(undefined, 0x1000, { pa: 0x2000 });
    ep.dma.setProgram({ addr: 0x1000, length: 16, direction: "write", pattern });
    expect(ep.dma.trigger()).toBe("running");
    ep.configWrite(0x04, 2, 0);
    ep.dma.step();
    expect(ep.dma.result).toBe("busMasterDisabled");
    expect(mem.stats.writes).toBe(0);
  });

  it("resumed after a page response, checks PASID Enable again: it may have been cleared during the wait", () => {
    const { iommu, ep, mem } = makeRig();
    ep.dma.setProgram({ pasid: 7, addr: 0x40_0000, length: 16, direction: "write", pattern });
    expect(ep.dma.trigger()).toBe("pageRequestPending");
    iommu.map(7, 0x40_0000, { pa: 0x8000 });
    ep.configWrite(ep.config.offsets.pasid + 6, 2, 0);
    iommu.respond({ sid: ep.sid, pasid: 7, groupIndex: 0 }, "success");
    expect(ep.dma.result).toBe("pasidDisabled");
    expect(mem.read8(0x8000)).toBe(0);
  });

  it("cannot tag a request with a PASID while the PASID capability is disabled", () => {
    const { iommu, ep } = makeRig({ enable: { pasid: false } });
    iommu.map(5, 0x1000, { pa: 0x2000 });
    ep.dma.setProgram({ pasid: 5, addr: 0x1000, length: 16, direction: "write", pattern });
    expect(ep.dma.trigger()).toBe("pasidDisabled");
    expect(iommu.translations).toHaveLength(0);
  });

  it("cannot tag a request with a PASID without a PASID capability", () => {
    const { iommu, ep } = makeRig({ without: ["pasid"] });
    iommu.map(5, 0x1000, { pa: 0x2000 });
    ep.dma.setProgram({ pasid: 5, addr: 0x1000, length: 16, direction: "write", pattern });
    expect(ep.dma.trigger()).toBe("pasidDisabled");
    expect(iommu.translations).toHaveLength(0);
  });

  it("refuses privileged or execute requests the PASID control has not enabled", () => {
    const { iommu, ep } = makeRig();
    ep.configWrite(ep.config.offsets.pasid + 6, 2, 0x1); // PASID enable only
    iommu.map(5, 0x1000, { pa: 0x2000 });
    ep.dma.setProgram({ pasid: 5, priv: true, addr: 0x1000, length: 16, direction: "write", pattern });
    expect(ep.dma.trigger()).toBe("pasidDisabled");
    ep.dma.setProgram({ pasid: 5, exec: true, addr: 0x1000, length: 16, direction: "read", buffer: new Uint8Array(16) });
    expect(ep.dma.trigger()).toBe("pasidDisabled");
  });

  it("reports bad programming without touching the bus", () => {
    const { iommu, ep } = makeRig();
    const cases = [
      { addr: 0x1000, length: 0, direction: "write" as const, pattern },
      { addr: -1, length: 4, direction: "write" as const, pattern },
      { addr: 0x1000, length: 4, direction: "write" as const },
      { addr: 0x1000, length: 4, direction: "read" as const, buffer: new Uint8Array(2) },
      { addr: 0x1000, length: 4, direction: "write" as const, pattern, priv: true },
      { pasid: 1 << 20, addr: 0x1000, length: 4, direction: "write" as const, pattern },
    ];
    for (const c of cases) {
      ep.dma.setProgram(c);
      expect(ep.dma.trigger()).toBe("badProgramming");
    }
    expect(iommu.translations).toHaveLength(0);
    const fresh = makeRig();
    expect(fresh.ep.dma.trigger()).toBe("badProgramming"); // never programmed
  });

  it("reports a translation fault when the IOMMU has no mapping and PRI cannot help", () => {
    const { ep, iommu } = makeRig({ enable: { pri: false } });
    ep.dma.setProgram({ pasid: 3, addr: 0x7000, length: 8, direction: "write", pattern });
    expect(ep.dma.trigger()).toBe("translationFault");
    expect(iommu.allPageRequests).toHaveLength(0);
  });

  it("sets Received Master Abort when an untranslated read is refused", () => {
    const { ep } = makeRig({ enable: { ats: false } });
    ep.dma.setProgram({ addr: 0x7000, length: 8, direction: "read", buffer: new Uint8Array(8) });
    expect(ep.dma.trigger()).toBe("translationFault");
    expect(ep.configRead(0x06, 2) & 0x2000).toBe(0x2000);
  });

  it("reports a memory abort when the translated address is not backed", () => {
    const { ep, iommu } = makeRig();
    iommu.map(undefined, 0x1000, { pa: 0x4000_0000 });
    ep.dma.setProgram({ addr: 0x1000, length: 8, direction: "write", pattern });
    expect(ep.dma.trigger()).toBe("memoryAbort");
  });

  it("ignores a trigger while busy and a reprogram while busy", () => {
    const { ep, iommu } = makeRig({ dma: { mode: "stepwise" } });
    iommu.map(undefined, 0x1000, { pa: 0x2000 });
    ep.dma.setProgram({ addr: 0x1000, length: 8, direction: "write", pattern });
    ep.dma.trigger();
    expect(ep.dma.setProgram({ addr: 0x9000, length: 8, direction: "write", pattern })).toBe(false);
    expect(ep.dma.trigger()).toBe("running");
    ep.dma.run();
    expect(ep.dma.result).toBe("ok");
    expect(ep.dma.program?.addr).toBe(0x1000);
  });
});

describe("DMA engine: the requests it sends upstream", () => {
  // The request is built field by field (no spread): it must carry exactly the fields, in the order,
  // that the PASID TLP prefix and the request kind call for, and nothing else.
  const cases = [
    { ats: true, prog: { pasid: 42, priv: true, exec: true }, want: ["sid", "pasid", "priv", "exec", "addr", "write", "ats"] },
    { ats: true, prog: { pasid: 42 }, want: ["sid", "pasid", "priv", "exec", "addr", "write", "ats"] },
    { ats: true, prog: {}, want: ["sid", "addr", "write", "ats"] },
    { ats: false, prog: { pasid: 42, priv: true }, want: ["sid", "pasid", "priv", "exec", "addr", "write"] },
    { ats: false, prog: {}, want: ["sid", "addr", "write"] },
  ] as const;
  for (const c of cases) {
    it(`${c.ats ? "ATS translation request" : "untranslated request"}${"pasid" in c.prog ? " with a PASID" : " without PASID"}${"priv" in c.prog ? " (privileged)" : ""}: fields ${c.want.join(", ")}`, () => {
      const { iommu, ep } = makeRig(c.ats ? {} : { without: ["ats", "pri"] });
      iommu.map("pasid" in c.prog ? 42 : undefined, 0x10_000, { pa: 0x30_000 });
      ep.dma.setProgram({ ...c.prog, addr: 0x10_123, length: 8, direction: "write", pattern });
      ep.dma.trigger();
      const req = iommu.translations[0];
      expect(req === undefined ? [] : Object.keys(req)).toEqual(c.want);
      const pasidPart = "pasid" in c.prog ? { pasid: 42, priv: "priv" in c.prog, exec: "exec" in c.prog } : {};
      expect(req).toEqual({ sid: ep.sid, ...pasidPart, addr: c.ats ? 0x10_000 : 0x10_123, write: true, ...(c.ats ? { ats: true } : {}) });
    });
  }
});
