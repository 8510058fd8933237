import { Kernel, sourceId } from "@vsva/kernel";
import { expect, it } from "vitest";
import { IommuCore, IommuProt, PageAllocator, encodeGpasidBindData } from "./index.js";
import { MockIommu, NullBacking } from "./testing/index.js";

it("runs the README example", () => {
  const kernel = new Kernel();
  const pages = new PageAllocator({ base: 0x1000_0000, size: 1 << 24, backing: new NullBacking(), faults: kernel.faults });
  const core = new IommuCore({ kernel });
  const iommu = core.registerIommu("mock0", new MockIommu({ faults: kernel.faults, pages }));
  const dev = core.probeDevice(iommu, { name: "dsa", sid: sourceId(0x6a, 1, 0), pasidWidth: 20 });
  core.enableFeature(dev, "sva");
  const vmSet = core.ioasid.allocSet({ vm: 1 }, 16, "mm"); // the VM's IOASID set: it owns the PASIDs bound below
  const hpasid = core.ioasid.alloc(vmSet, 0x40, 0x40);
  const s2 = core.domainAlloc(dev, { type: "unmanaged", nestingParent: true, ioasidSet: vmSet });
  core.attachDevice(s2, dev);
  core.map(s2, 0, 0x8000_0000, 0x20_0000, IommuProt.READ | IommuProt.WRITE);
  const nested = core.bindGpasid(s2, dev, encodeGpasidBindData({ hpasid: BigInt(hpasid), gpgd: 0x5000n }));
  expect(core.iovaToPhys(nested, 0x1234)).toBe(0x8000_1234);
});
