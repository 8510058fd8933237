import { expect, it } from "vitest";
import {
  ArmTableWriter, Cd, Cr0Reg, PagePool, SmmuReg, SmmuUnit, SparseMemory, Ste, SteConfig, StrtabBaseCfgReg, StrtabBaseReg, TG0_4K, joinDwords, sourceId,
} from "./index.js";

// The SMMUv3 example of README.md, line for line (imports from "./index.js" instead of "@vsva/iommu-hw").
it("runs the README's SMMUv3 example", () => {
  const mem = new SparseMemory({ addrBits: 48, regions: [{ base: 0, size: 64 << 20 }] });
  const pool = new PagePool(mem, 0x10_0000, 1 << 20);
  const smmu = new SmmuUnit({ mem, oas: 48, ssidBits: 20 }); // options are named after IDR fields; an unknown key is EINVAL
  const sid = sourceId(0, 2, 0);
  // A stage-1 table (VMSAv8-64, 4 KiB granule, 48-bit VA): VA 0x12_3456_7000 -> PA 0x20_0000.
  const s1 = ArmTableWriter.stage1(mem, { alloc: pool.alloc });
  s1.map(0x12_3456_7000, 0x20_0000, 4096, { write: true });
  // One CD (AArch64, TTB0 only, ASID 1) and the stream's STE (stage 1 translates, stage 2 bypassed).
  const [cdAddr, strtab] = [pool.alloc() ?? 0, pool.alloc() ?? 0];
  const cd = Cd.alloc();
  for (const [f, v] of [["T0SZ", 16], ["TG0", TG0_4K], ["EPD1", 1], ["V", 1], ["IPS", 5], ["AA64", 1], ["R", 1], ["A", 1], ["ASID", 1]] as const) Cd.set(cd, f, v);
  Cd.setAddr(cd, "TTB0", s1.root);
  Cd.write(mem, cdAddr, cd);
  const ste = Ste.alloc();
  Ste.set(ste, "V", 1);
  Ste.set(ste, "CONFIG", SteConfig.S1_TRANS);
  Ste.setAddr(ste, "S1CONTEXTPTR", cdAddr);
  Ste.write(mem, strtab + 64 * sid, ste);
  // The driver's part: STRTAB_BASE, STRTAB_BASE_CFG (linear, 2^6 STEs: one page), then CR0.SMMUEN.
  const [blo, bhi] = StrtabBaseReg.encode({ ADDR: strtab / 64 });
  smmu.mmioWrite64(SmmuReg.STRTAB_BASE, joinDwords(blo ?? 0, bhi ?? 0)); // 64-bit register values are bigints
  smmu.mmioWrite32(SmmuReg.STRTAB_BASE_CFG, StrtabBaseCfgReg.encode({ LOG2SIZE: 6 })[0] ?? 0);
  smmu.mmioWrite32(SmmuReg.CR0, Cr0Reg.bit("SMMUEN").mask);
  // A DMA read without SubstreamID, as a platform device would send it.
  const r = smmu.translate({ sid, addr: 0x12_3456_7abc, write: false });
  expect(r).toMatchObject({ ok: true, pa: 0x20_0abc, size: 4096 });
  expect(smmu.debug.lastRequest).toMatchObject({ walkReads: 4, structureReads: 16 });
});
