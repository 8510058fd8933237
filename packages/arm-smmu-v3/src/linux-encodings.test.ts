import { describe, expect, it } from "vitest";
import { IommuProt, type IommuDevice, type PagingDomain } from "@vsva/iommu-core";
import type { SmmuS1Domain } from "./domain.js";
import { PciEndpoint, pciEnableForSva } from "@vsva/iommu-hw";
import { PATTERN, SmmuTestHost, dmaWrite } from "./testing.js";

/**
 * STEs and CDs as Linux v5.10 writes them (arm_smmu_write_strtab_ent(),
 * arm_smmu_write_ctx_desc(), io-pgtable-arm's MAIR), read back from the
 * tables our driver built and compared with the qwords the macros of
 * drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3.h give; each is then used for
 * DMA by the unit, which must accept it.
 */

const RW = IommuProt.READ | IommuProt.WRITE;

function qwords(h: SmmuTestHost, at: number, n: number): bigint[] {
  return Array.from({ length: n }, (_, i) => (BigInt(h.mem.read32(at + 8 * i + 4)) << 32n) | BigInt(h.mem.read32(at + 8 * i)));
}
const ste = (h: SmmuTestHost, dev: IommuDevice): bigint[] => qwords(h, h.drv.hw.strtab.steAddr(h.drv.hw.master(dev).sid), 8);
/** A plain endpoint: no PASID, no ATS, no PRI (Linux would have left ATS off for a bypassed master anyway). */
function plainEndpoint(h: SmmuTestHost): PciEndpoint {
  const ep = new PciEndpoint({ bus: 0, dev: 5, fn: 0, mem: h.mem, id: { vendorId: 0x13b5, deviceId: 0x00fe } });
  pciEnableForSva(ep);
  ep.attach(h.unit);
  h.unit.attachEndpoint(ep);
  return ep;
}
const bit = (q: bigint | undefined, n: number): number => Number(((q ?? 0n) >> BigInt(n)) & 1n);

describe("STEs", () => {
  it("bypass on a unit without ATS: V | Config 0b100, SHCFG = incoming, nothing else; DMA passes untranslated", () => {
    const h = new SmmuTestHost({ unit: { ats: false, pri: false } });
    const ep = plainEndpoint(h);
    const dev = h.probe(ep, "dsa0", 0);
    h.core.attachDevice(h.core.domainAlloc(dev, { type: "identity" }), dev);
    // dw0 = STRTAB_STE_0_V | FIELD_PREP(STRTAB_STE_0_CFG, BYPASS); dw1 = FIELD_PREP(STRTAB_STE_1_SHCFG, INCOMING).
    expect(ste(h, dev)).toEqual([0x9n, 1n << 44n, 0n, 0n, 0n, 0n, 0n, 0n]);
    expect(dmaWrite(ep, 0x70_0000, PATTERN)).toBe("ok");
  });

  it("abort (blocked) carries SHCFG too, as every STE arm_smmu_write_strtab_ent() writes without a domain", () => {
    const h = new SmmuTestHost({ unit: { ats: false, pri: false } });
    const ep = plainEndpoint(h);
    const dev = h.probe(ep, "dsa0", 0);
    h.core.attachDevice(h.core.domainAlloc(dev, { type: "blocked" }), dev);
    expect(ste(h, dev)).toEqual([0x1n, 1n << 44n, 0n, 0n, 0n, 0n, 0n, 0n]);
    expect(dmaWrite(ep, 0x70_0000, PATTERN)).not.toBe("ok");
  });

  it("stage 2 sets S2PTW (dword 2 bit 54) with S2AA64 and S2R; the unit translates through it", () => {
    const h = new SmmuTestHost({ unit: { stage1: false } });
    const ep = h.endpoint();
    const dev = h.probe(ep, "dsa0", 0);
    const dom = h.core.domainAlloc(dev, { type: "unmanaged", nestingParent: false });
    h.core.attachDevice(dom, dev);
    h.core.map(dom, 0x1000, 0x60_0000, 0x1000, RW);
    const dw2 = ste(h, dev)[2];
    expect({ s2aa64: bit(dw2, 51), s2ptw: bit(dw2, 54), s2r: bit(dw2, 58), s2s: bit(dw2, 57) }).toEqual({ s2aa64: 1, s2ptw: 1, s2r: 1, s2s: 0 });
    expect(dmaWrite(ep, 0x1000, PATTERN)).toBe("ok");
    expect(h.mem.read32(0x60_0000)).toBe(0xefbeadde);
  });
});

describe("CDs", () => {
  it("a non-SVA stage-1 CD has ASET = 1 and MAIR 0xf404ff44; its leaves use AttrIndx 1 (IDX_CACHE); DMA works", () => {
    const h = new SmmuTestHost();
    const ep = h.endpoint();
    const dev = h.probe(ep, "dsa0", 0); // no PASID: a single CD at S1ContextPtr
    const dom = h.core.domainAlloc(dev, { type: "unmanaged", nestingParent: false });
    h.core.attachDevice(dom, dev);
    h.core.map(dom, 0x10_0000, 0x30_0000, 0x1000, RW);
    const cdBase = h.drv.hw.master(dev).cd?.base ?? -1;
    const [dw0, , , dw3] = qwords(h, cdBase, 4);
    expect({ v: bit(dw0, 31), aa64: bit(dw0, 41), r: bit(dw0, 45), a: bit(dw0, 46), aset: bit(dw0, 47), epd1: bit(dw0, 30) }).toEqual({ v: 1, aa64: 1, r: 1, a: 1, aset: 1, epd1: 1 });
    expect(dw3).toBe(0xf404ff44n);
    // The leaf: walk the driver's tables from TTB0 down to the 4 KiB entry of 0x10_0000.
    let table = Number((qwords(h, cdBase + 8, 1)[0] ?? 0n) & 0xffff_ffff_fff0n);
    for (let level = ((dom as PagingDomain).driver as SmmuS1Domain).startLevel; level < 3; level++) {
      const idx = Math.floor(0x10_0000 / 2 ** (12 + 9 * (3 - level))) % 512;
      table = Number((qwords(h, table + 8 * idx, 1)[0] ?? 0n) & 0xffff_ffff_f000n);
    }
    const leaf = qwords(h, table + 8 * ((0x10_0000 / 4096) % 512), 1)[0] ?? 0n;
    expect(Number((leaf >> 2n) & 7n)).toBe(1);
    expect(dmaWrite(ep, 0x10_0008, PATTERN)).toBe("ok");
    expect(h.mem.read32(0x30_0008)).toBe(0xefbeadde);
  });
});
