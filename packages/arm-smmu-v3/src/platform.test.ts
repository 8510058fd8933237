import { expect, it } from "vitest";
import { Prot } from "@vsva/iommu-core";
import { Board } from "@vsva/machine";
import { smmuPlatform } from "./platform.js";

it("runs SVA DMA on a board with the SMMUv3 platform, from endpoints beyond bus 0 (StreamID = RID)", () => {
  const board = new Board({ platform: smmuPlatform(), addrBits: 48 });
  const slots = Array.from({ length: 40 }, (_, i) => board.addDevice(`dsa${i}`)); // past 32 devices: bus 1 too
  const far = board.addDevice("far", { bus: 0x80, dev: 31, fn: 7 });
  for (const s of [slots[39]!, far]) {
    board.enableSva(s);
    const mm = board.newMm(`app-${s.dev.name}`); // an AArch64 process: the SMMU walks its tables
    const buf = mm.mmap(null, 4096, Prot.READ | Prot.WRITE, { populate: true });
    const bond = board.core.sva.bindDevice(s.dev, mm);
    s.ep.dma.setProgram({ pasid: bond.pasid, addr: buf, length: 2, direction: "write", pattern: Uint8Array.of(0xab, 0xcd) });
    expect(s.ep.dma.trigger()).toBe("ok");
    expect([...mm.read(buf, 2)]).toEqual([0xab, 0xcd]);
  }
  expect(board.platform.cacheViolations()).toEqual([]);
});
