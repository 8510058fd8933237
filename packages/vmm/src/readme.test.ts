import { expect, it } from "vitest";
import { Board } from "@vsva/machine";
import { vtdPlatform } from "@vsva/intel-svm";
import { Prot } from "@vsva/iommu-core";
import { Vfio, vfioPciOps } from "@vsva/vfio-type1";
import { Guest, Vm } from "./index.js";

// The example of README.md, line for line (imports from "./index.js" instead of "@vsva/vmm").
it("runs the README example", () => {
  const host = new Board({ platform: vtdPlatform() });
  const vfio = new Vfio({ kernel: host.kernel, core: host.core, ioasid: host.ioasid });
  const slot = host.addDevice("dsa0", { bus: 0, dev: 4, fn: 0 });
    const cfg = slot.ep.config.space;
  vfio.bindPciDevice(slot.dev, vfioPciOps({ size: 4096, read: (o, s) => cfg.read(o, s), write: (o, s, v) => cfg.write(o, s, v) }));

  const vm = new Vm({ host, vfio, id: 1, ramBytes: 4 << 20, device: { group: slot.dev.group?.id ?? 0, name: "dsa0", endpoint: slot.ep } });
  const guest = new Guest(vm);
  const p = guest.newProcess("P");
  const buf = p.mmap(0x7000_0000_0000, 0x1000, Prot.READ | Prot.WRITE, { populate: true });
  const bond = guest.core.sva.bindDevice(guest.device, p);
  expect(guest.dma({ pasid: bond.pasid, addr: buf, length: 4, direction: "write", pattern: Uint8Array.of(1, 2, 3, 4) })).toBe("ok");
  expect([...p.read(buf, 4)]).toEqual([1, 2, 3, 4]);
  vm.kill();
  host.settle();
  expect(host.ioasid.allocated).toBe(0);
});
