import { describe, expect, it } from "vitest";
import { Errno, sourceId } from "@vsva/kernel";
import { errnoOf } from "@vsva/kernel/testing";
import { PagingDomain } from "@vsva/iommu-core";
import { mockHost } from "@vsva/iommu-core/testing";
import { GuestMemoryView, type GuestMemoryOptions } from "@vsva/machine";
import { GuestRamPages } from "./guest-ram-pages.js";
import { Vfio, VfioExtension, VfioIoctl, VfioUser } from "./index.js";
import { configOnlyOps, vfioUapi as U } from "./testing/index.js";

const BASE = 0x7f00_0000_0000;

function ram(): GuestMemoryView {
  // Pinning never reads or writes the bytes behind a page (nor does the mock IOMMU), so host memory here is
  // only asked whether a page exists (vfio-type1 does not use pgtable's memories); any access would throw.
  const host = { isPopulated: (pa: number) => pa < 0x10_0000 } as unknown as GuestMemoryOptions["host"];
  const g = new GuestMemoryView({ host, addrBits: 32 });
  // Guest pages 0 and 1 backed by host pages out of order; page 2 a hole; page 3 backed.
  g.map(0, 0x9000, 0x1000);
  g.map(0x1000, 0x3000, 0x1000);
  g.map(0x3000, 0x5000, 0x1000);
  return g;
}

describe("GuestRamPages", () => {
  it("pins the guest pages at base + gpa and returns their host pages", () => {
    const g = ram();
    const p = new GuestRamPages(g, BASE);
    expect(p.pin(BASE, 2)).toEqual([0x9000, 0x3000]);
    expect(p.pin(p.vaddr(0x3000), 1)).toEqual([0x5000]);
    expect([g.pinCount(0), g.pinCount(0x1000), g.pinCount(0x3000)]).toEqual([1, 1, 1]);
    p.unpin(BASE, 2);
    expect(g.pinStats.pinnedPages).toBe(1);
  });

  it("is EFAULT below the base, past the guest space and over a hole, pinning nothing", () => {
    const g = ram();
    const p = new GuestRamPages(g, BASE);
    expect(errnoOf(() => p.pin(BASE - 0x1000, 2))).toBe(Errno.EFAULT);
    expect(errnoOf(() => p.pin(BASE + 2 ** 32 - 0x1000, 2))).toBe(Errno.EFAULT);
    expect(errnoOf(() => p.pin(BASE + 0x1000, 3))).toBe(Errno.EFAULT);
    expect(g.pinStats).toEqual({ pinnedPages: 0, pins: 0, unpins: 0 });
  });

  it("refuses a misaligned base and an empty range", () => {
    expect(errnoOf(() => new GuestRamPages(ram(), BASE + 1))).toBe(Errno.EINVAL);
    expect(errnoOf(() => new GuestRamPages(ram(), BASE).pin(BASE, 0))).toBe(Errno.EINVAL);
  });

  it("backs a VMM's MAP_DMA: the IOMMU maps each IOVA to the guest page's host page, and unmap unpins", () => {
    const h = mockHost({ defaultDomain: "dma" });
    const dev = h.core.probeDevice(h.iommu, { name: "nic0", sid: sourceId(0, 2, 0), pasidWidth: 20 });
    const vfio = new Vfio({ kernel: h.kernel, core: h.core, ioasid: h.core.ioasid });
    vfio.bindPciDevice(dev, configOnlyOps());
    const g = ram();
    const qemu = new VfioUser({ name: "qemu", mm: {}, pages: new GuestRamPages(g, BASE), memlockLimit: 1 << 20 });
    const c = vfio.openContainer(qemu);
    vfio.openGroup(qemu, dev.group?.id ?? -1).ioctl(VfioIoctl.GROUP_SET_CONTAINER, U.fdArg(c.fd));
    c.ioctl(VfioIoctl.SET_IOMMU, VfioExtension.TYPE1v2_IOMMU);
    c.ioctl(VfioIoctl.IOMMU_MAP_DMA, U.dmaMap({ vaddr: BASE, iova: 0x10_0000, size: 0x2000 }));
    const dom = c.container.domains[0];
    const mapped = dom instanceof PagingDomain ? [...h.mock.mappings(dom.driver)].map(([iova, m]) => [iova, m.paddr]) : [];
    expect(mapped).toEqual([[0x10_0000, 0x9000], [0x10_1000, 0x3000]]);
    expect([g.pinCount(0), g.pinCount(0x1000)]).toEqual([1, 1]);
    expect(qemu.lockedBytes).toBe(0x2000);
    expect(errnoOf(() => c.ioctl(VfioIoctl.IOMMU_MAP_DMA, U.dmaMap({ vaddr: BASE + 0x2000, iova: 0x20_0000, size: 0x2000 })))).toBe(Errno.EFAULT);
    expect(qemu.lockedBytes).toBe(0x2000);
    c.ioctl(VfioIoctl.IOMMU_UNMAP_DMA, U.dmaUnmap({ iova: 0x10_0000, size: 0x2000 }));
    expect(g.pinStats.pinnedPages).toBe(0);
    expect(qemu.lockedBytes).toBe(0);
    qemu.exit();
  });
});
