import { KernelError, sourceId } from "@vsva/kernel";
import { mockHost } from "@vsva/iommu-core/testing";
import { Vfio, VfioExtension, VfioIoctl, VfioUser } from "./index.js";
import { FakeUserPages, configOnlyOps, vfioUapi as U } from "./testing/index.js";
import { expect, it } from "vitest";

// The example of README.md, line for line (imports from "./index.js" instead of "@vsva/vfio-type1").
it("runs the README example", () => {
  const h = mockHost({ defaultDomain: "dma" }); // a kernel, an IOMMU core and a mock IOMMU
  const dev = h.core.probeDevice(h.iommu, { name: "nic0", sid: sourceId(0, 2, 0), pasidWidth: 20 });
  const vfio = new Vfio({ kernel: h.kernel, core: h.core, ioasid: h.core.ioasid });
  vfio.bindPciDevice(dev, configOnlyOps()); // vfio-pci takes the function
  const pages = new FakeUserPages({ base: 0x7f00_0000_0000, size: 1 << 20, hostBase: 0x2_0000_0000 });
  const qemu = new VfioUser({ name: "qemu", mm: {}, pages, memlockLimit: 64 << 20 });
  const container = vfio.openContainer(qemu); // open("/dev/vfio/vfio")
  const group = vfio.openGroup(qemu, dev.group?.id ?? -1); // open("/dev/vfio/$GROUP")
  group.ioctl(VfioIoctl.GROUP_SET_CONTAINER, U.fdArg(container.fd));
  container.ioctl(VfioIoctl.SET_IOMMU, VfioExtension.TYPE1v2_IOMMU);
  container.ioctl(VfioIoctl.IOMMU_MAP_DMA, U.dmaMap({ vaddr: 0x7f00_0000_0000, iova: 0x10_0000, size: 0x4000 }));
  try {
    container.ioctl(VfioIoctl.IOMMU_UNMAP_DMA, U.dmaUnmap({ iova: 0x10_1000, size: 0x1000 }));
  } catch (e) {
    if (!(e instanceof KernelError)) throw e; // EINVAL: a type1v2 unmap never splits a mapping
  }
  qemu.exit(); // the VMM dies: mappings unmapped, pages unpinned, the domain freed
  expect([pages.pinned, qemu.lockedBytes, qemu.openFiles, h.core.liveDomains]).toEqual([0, 0, 0, 1]);
});
