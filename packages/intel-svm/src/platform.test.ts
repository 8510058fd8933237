import { expect, it } from "vitest";
import { Prot } from "@vsva/iommu-core";
import { Board } from "@vsva/machine";
import { vtdPlatform } from "./platform.js";

// The example of packages/machine/README.md ("A host on a board"), on this driver's platform.
it("runs SVA DMA on a board with the VT-d platform, from an endpoint off bus 0", () => {
  const board = new Board({ platform: vtdPlatform() }); // RAM, VT-d + this driver, page pool, IOASID and IOMMU cores
  const dsa = board.addDevice("dsa0", { bus: 0x3a, dev: 2, fn: 1 }); // any bus/device/function
  board.enableSva(dsa);
  const app = board.newMm("app"); // an x86-64 process: the unit walks its tables
  const buf = app.mmap(null, 4096, Prot.READ | Prot.WRITE, { populate: true });
  const bond = board.core.sva.bindDevice(dsa.dev, app);
  dsa.ep.dma.setProgram({ pasid: bond.pasid, addr: buf + 8, length: 4, direction: "write", pattern: Uint8Array.of(1, 2, 3, 4) });
  expect(dsa.ep.dma.trigger()).toBe("ok");
  expect([...app.read(buf + 8, 4)]).toEqual([1, 2, 3, 4]);
  board.core.sva.unbindDevice(bond);
  expect(board.platform.cacheViolations()).toEqual([]);
});
