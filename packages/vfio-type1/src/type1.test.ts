import { Errno, sourceId } from "@vsva/kernel";
import { FaultCoverage, errnoOf } from "@vsva/kernel/testing";
import { IOASID_FAULT_POINTS } from "@vsva/ioasid";
import { IOMMU_CORE_FAULT_POINTS } from "@vsva/iommu-core";
import { VFIO_FAULT_POINTS } from "./fault-points.js";
import { MOCK_FAULT_POINTS, mockHost } from "@vsva/iommu-core/testing";
import { describe, expect, it } from "vitest";
import { FakeUserPages, configOnlyOps, vfioUapi as U } from "./testing/index.js";
import { VfioExtension, VfioIoctl } from "./uapi/ioctl.js";
import { DmaUnmapFlag, DmaUnmapLayout, GroupFlag, GroupStatusLayout, IommuInfoCap, IommuType1InfoLayout, IovaRangeLayout, CapDmaAvailLayout } from "./uapi/structs.js";
import { walkCapChain } from "./uapi/info-caps.js";
import { Vfio } from "./vfio.js";
import { VfioUser } from "./user.js";

const MiB = 1 << 20;
const VA = 0x7f00_0000_0000;

function rig(opts: { memlock?: number; dmaEntryLimit?: number; isolation?: string; twoDevices?: boolean } = {}) {
  const h = mockHost({ defaultDomain: "dma" });
  const vfio = new Vfio({ kernel: h.kernel, core: h.core, ioasid: h.core.ioasid, ...(opts.dmaEntryLimit === undefined ? {} : { dmaEntryLimit: opts.dmaEntryLimit }) });
  const iso = opts.isolation ?? "bus0";
  const dev = h.core.probeDevice(h.iommu, { name: "nic0", sid: sourceId(0, 2, 0), pasidWidth: 20, isolation: iso });
  const dev2 = opts.twoDevices === true ? h.core.probeDevice(h.iommu, { name: "nic1", sid: sourceId(0, 2, 1), pasidWidth: 20, isolation: iso }) : null;
  const vdev = vfio.bindPciDevice(dev, configOnlyOps());
  const pages = new FakeUserPages({ base: VA, size: 16 * MiB, hostBase: 0x2_0000_0000, layout: "scattered" });
  const user = new VfioUser({ name: "qemu", mm: {}, pages, memlockLimit: opts.memlock ?? 64 * MiB });
  const group = dev.group?.id ?? -1;
  return { h, vfio, dev, dev2, vdev, pages, user, group };
}

/** open container + group, SET_CONTAINER, SET_IOMMU(type1v2 by default). */
function opened(r: ReturnType<typeof rig>, type: number = VfioExtension.TYPE1v2_IOMMU) {
  const c = r.vfio.openContainer(r.user);
  const g = r.vfio.openGroup(r.user, r.group);
  g.ioctl(VfioIoctl.GROUP_SET_CONTAINER, U.fdArg(c.fd));
  c.ioctl(VfioIoctl.SET_IOMMU, type);
  return { c, g };
}

describe("container and group files (drivers/vfio/vfio.c)", () => {
  it("answers the API version and the type1 extensions", () => {
    const r = rig();
    const c = r.vfio.openContainer(r.user);
    expect(c.ioctl(VfioIoctl.GET_API_VERSION)).toBe(0);
    expect(c.ioctl(VfioIoctl.CHECK_EXTENSION, VfioExtension.TYPE1v2_IOMMU)).toBe(1);
    expect(c.ioctl(VfioIoctl.CHECK_EXTENSION, VfioExtension.TYPE1_NESTING_IOMMU)).toBe(1);
    expect(c.ioctl(VfioIoctl.CHECK_EXTENSION, VfioExtension.SPAPR_TCE_IOMMU)).toBe(0);
    expect(c.ioctl(VfioIoctl.CHECK_EXTENSION, VfioExtension.DMA_CC_IOMMU)).toBe(0);
  });

  it("refuses SET_IOMMU without a group, IOMMU ioctls before SET_IOMMU, and unknown requests", () => {
    const r = rig();
    const c = r.vfio.openContainer(r.user);
    expect(errnoOf(() => c.ioctl(VfioIoctl.SET_IOMMU, VfioExtension.TYPE1v2_IOMMU))).toBe(Errno.EINVAL);
    expect(errnoOf(() => c.ioctl(VfioIoctl.IOMMU_MAP_DMA, U.dmaMap({ vaddr: VA, iova: 0, size: 4096 })))).toBe(Errno.EINVAL);
    expect(errnoOf(() => c.ioctl(0x3b7f, null))).toBe(Errno.ENOTTY);
  });

  it("a group is viable only when every device of its IOMMU group is bound to VFIO", () => {
    const r = rig({ twoDevices: true });
    const g = r.vfio.openGroup(r.user, r.group);
    const st = new Uint8Array(8);
    GroupStatusLayout.set(st, "argsz", 8);
    g.ioctl(VfioIoctl.GROUP_GET_STATUS, st);
    expect(GroupStatusLayout.get(st, "flags") & GroupFlag.VIABLE).toBe(0);
    const c = r.vfio.openContainer(r.user);
    expect(errnoOf(() => g.ioctl(VfioIoctl.GROUP_SET_CONTAINER, U.fdArg(c.fd)))).toBe(Errno.EINVAL);
    if (r.dev2 === null) throw new Error("rig");
    r.vfio.bindPciDevice(r.dev2, configOnlyOps());
    g.ioctl(VfioIoctl.GROUP_GET_STATUS, st);
    expect(GroupStatusLayout.get(st, "flags")).toBe(GroupFlag.VIABLE);
    g.ioctl(VfioIoctl.GROUP_SET_CONTAINER, U.fdArg(c.fd));
    g.ioctl(VfioIoctl.GROUP_GET_STATUS, st);
    expect(GroupStatusLayout.get(st, "flags")).toBe(GroupFlag.VIABLE | GroupFlag.CONTAINER_SET);
  });

  it("a group opens once; SET_CONTAINER needs an open container descriptor", () => {
    const r = rig();
    const g = r.vfio.openGroup(r.user, r.group);
    expect(errnoOf(() => r.vfio.openGroup(r.user, r.group))).toBe(Errno.EBUSY);
    expect(errnoOf(() => r.vfio.openGroup(r.user, 999))).toBe(Errno.ENOENT);
    expect(errnoOf(() => g.ioctl(VfioIoctl.GROUP_SET_CONTAINER, U.fdArg(42)))).toBe(Errno.EBADF);
    expect(errnoOf(() => g.ioctl(VfioIoctl.GROUP_SET_CONTAINER, U.fdArg(g.fd)))).toBe(Errno.EINVAL);
    expect(errnoOf(() => g.ioctl(VfioIoctl.GROUP_SET_CONTAINER, new Uint8Array(2)))).toBe(Errno.EFAULT);
    expect(errnoOf(() => g.ioctl(VfioIoctl.GROUP_UNSET_CONTAINER))).toBe(Errno.EINVAL);
  });

  it("device files come from the group once an IOMMU is set, and hold the container", () => {
    const r = rig();
    const c = r.vfio.openContainer(r.user);
    const g = r.vfio.openGroup(r.user, r.group);
    g.ioctl(VfioIoctl.GROUP_SET_CONTAINER, U.fdArg(c.fd));
    expect(errnoOf(() => g.ioctl(VfioIoctl.GROUP_GET_DEVICE_FD, U.cString("nic0")))).toBe(Errno.EINVAL);
    c.ioctl(VfioIoctl.SET_IOMMU, VfioExtension.TYPE1v2_IOMMU);
    expect(errnoOf(() => g.ioctl(VfioIoctl.GROUP_GET_DEVICE_FD, U.cString("nope")))).toBe(Errno.ENODEV);
    expect(errnoOf(() => g.ioctl(VfioIoctl.GROUP_GET_DEVICE_FD, new TextEncoder().encode("nic0")))).toBe(Errno.EFAULT);
    const fd = g.ioctl(VfioIoctl.GROUP_GET_DEVICE_FD, U.cString("nic0"));
    expect(r.user.file(fd).fd).toBe(fd);
    expect(errnoOf(() => g.ioctl(VfioIoctl.GROUP_UNSET_CONTAINER))).toBe(Errno.EBUSY);
    r.user.file(fd).close();
    g.ioctl(VfioIoctl.GROUP_UNSET_CONTAINER);
    expect(c.container.iommuType).toBeNull();
  });

  it("a closed file is EBADF, and closing twice is EBADF", () => {
    const r = rig();
    const c = r.vfio.openContainer(r.user);
    c.close();
    expect(errnoOf(() => c.ioctl(VfioIoctl.GET_API_VERSION))).toBe(Errno.EBADF);
    expect(errnoOf(() => c.close())).toBe(Errno.EBADF);
    expect(errnoOf(() => r.user.file(c.fd))).toBe(Errno.EBADF);
  });
});

describe("VFIO_IOMMU_GET_INFO", () => {
  it("reports page sizes and a chain of DMA_AVAIL then IOVA_RANGE, with the MSI window cut out", () => {
    const r = rig({ dmaEntryLimit: 7 });
    const { c } = opened(r);
    const small = U.iommuInfo(24);
    c.ioctl(VfioIoctl.IOMMU_GET_INFO, small);
    const need = IommuType1InfoLayout.get(small, "argsz");
    expect(need).toBeGreaterThan(24);
    expect(IommuType1InfoLayout.get(small, "cap_offset")).toBe(0);
    const info = U.iommuInfo(need);
    c.ioctl(VfioIoctl.IOMMU_GET_INFO, info);
    expect(IommuType1InfoLayout.get(info, "iova_pgsizes")).toBe(0x4020_1000n);
    expect(IommuType1InfoLayout.get(info, "flags")).toBe(3);
    const caps = walkCapChain(info, IommuType1InfoLayout.get(info, "cap_offset"));
    expect(caps.map((x) => x.id)).toEqual([IommuInfoCap.DMA_AVAIL, IommuInfoCap.IOVA_RANGE]);
    expect(CapDmaAvailLayout.get(info, "avail", caps[0]?.offset ?? 0)).toBe(7);
    const at = (caps[1]?.offset ?? 0) + 16;
    expect([IovaRangeLayout.get(info, "start", at), IovaRangeLayout.get(info, "end", at)]).toEqual([0n, 0xfedf_ffffn]);
    expect(IovaRangeLayout.get(info, "start", at + 16)).toBe(0xfef0_0000n);
  });

  it("an old user's 16-byte struct gets page sizes only", () => {
    const r = rig();
    const { c } = opened(r);
    const old = U.iommuInfo(16);
    c.ioctl(VfioIoctl.IOMMU_GET_INFO, old.subarray(0, 16));
    expect(IommuType1InfoLayout.get(old, "flags")).toBe(1);
    const short = U.iommuInfo(16);
    IommuType1InfoLayout.set(short, "argsz", 12);
    expect(errnoOf(() => c.ioctl(VfioIoctl.IOMMU_GET_INFO, short))).toBe(Errno.EINVAL);
    expect(errnoOf(() => c.ioctl(VfioIoctl.IOMMU_GET_INFO, U.iommuInfo(12)))).toBe(Errno.EFAULT);
  });
});

describe("MAP_DMA / UNMAP_DMA (vfio_dma_do_map, vfio_dma_do_unmap)", () => {
  it("pins the user's pages, charges them, maps them into the domain, and undoes it all on unmap", () => {
    const r = rig();
    const { c } = opened(r);
    c.ioctl(VfioIoctl.IOMMU_MAP_DMA, U.dmaMap({ vaddr: VA, iova: 0x10_0000, size: 2 * MiB }));
    expect(r.pages.pinned).toBe(512);
    expect(r.user.lockedBytes).toBe(2 * MiB);
    const domain = c.container.domains[0];
    if (domain === undefined) throw new Error("no domain");
    expect(r.h.core.iovaToPhys(domain, 0x10_0000 + 0x3000)).toBe(r.pages.hostAddr(VA + 0x3000));
    const un = U.dmaUnmap({ iova: 0x10_0000, size: 2 * MiB });
    c.ioctl(VfioIoctl.IOMMU_UNMAP_DMA, un);
    expect(DmaUnmapLayout.get(un, "size")).toBe(BigInt(2 * MiB));
    expect([r.pages.pinned, r.user.lockedBytes, r.h.core.iovaToPhys(domain, 0x10_0000)]).toEqual([0, 0, null]);
  });

  it("every field wrong in turn gets the upstream errno and changes nothing", () => {
    const r = rig({ memlock: 1 * MiB });
    const { c } = opened(r);
    const cases: [string, Uint8Array, Errno][] = [
      ["short argsz", U.dmaMap({ vaddr: VA, iova: 0, size: 4096, argsz: 31 }), Errno.EINVAL],
      ["unknown flag", U.dmaMap({ vaddr: VA, iova: 0, size: 4096, flags: 1 << 5 | 3 }), Errno.EINVAL],
      ["no permission", U.dmaMap({ vaddr: VA, iova: 0, size: 4096, flags: 0 }), Errno.EINVAL],
      ["size 0", U.dmaMap({ vaddr: VA, iova: 0, size: 0 }), Errno.EINVAL],
      ["unaligned iova", U.dmaMap({ vaddr: VA, iova: 0x800, size: 4096 }), Errno.EINVAL],
      ["wrapping iova", U.dmaMap({ vaddr: VA, iova: 0xffff_ffff_ffff_f000n, size: 0x2000 }), Errno.EINVAL],
      ["MSI window", U.dmaMap({ vaddr: VA, iova: 0xfee0_0000, size: 4096 }), Errno.EINVAL],
      ["unmapped vaddr", U.dmaMap({ vaddr: 0x1000, iova: 0, size: 4096 }), Errno.EFAULT],
      ["past RLIMIT_MEMLOCK", U.dmaMap({ vaddr: VA, iova: 0, size: 2 * MiB }), Errno.ENOMEM],
    ];
    for (const [what, arg, errno] of cases) expect([what, errnoOf(() => c.ioctl(VfioIoctl.IOMMU_MAP_DMA, arg))]).toEqual([what, errno]);
    expect(errnoOf(() => c.ioctl(VfioIoctl.IOMMU_MAP_DMA, new Uint8Array(16)))).toBe(Errno.EFAULT);
    expect(errnoOf(() => c.ioctl(VfioIoctl.IOMMU_MAP_DMA, null))).toBe(Errno.EFAULT);
    expect([c.container.mappings.length, r.pages.pinned, r.user.lockedBytes]).toEqual([0, 0, 0]);
  });

  it("overlap is EEXIST and the entry limit ENOSPC", () => {
    const r = rig({ dmaEntryLimit: 2 });
    const { c } = opened(r);
    c.ioctl(VfioIoctl.IOMMU_MAP_DMA, U.dmaMap({ vaddr: VA, iova: 0x10000, size: 0x2000 }));
    expect(errnoOf(() => c.ioctl(VfioIoctl.IOMMU_MAP_DMA, U.dmaMap({ vaddr: VA, iova: 0x11000, size: 0x2000 })))).toBe(Errno.EEXIST);
    c.ioctl(VfioIoctl.IOMMU_MAP_DMA, U.dmaMap({ vaddr: VA, iova: 0x20000, size: 0x1000 }));
    expect(errnoOf(() => c.ioctl(VfioIoctl.IOMMU_MAP_DMA, U.dmaMap({ vaddr: VA, iova: 0x30000, size: 0x1000 })))).toBe(Errno.ENOSPC);
    expect(r.pages.pinned).toBe(3);
  });

  it("a v2 unmap never splits a mapping; v1 unmaps whole mappings", () => {
    const r = rig();
    const { c } = opened(r);
    c.ioctl(VfioIoctl.IOMMU_MAP_DMA, U.dmaMap({ vaddr: VA, iova: 0x10000, size: 0x4000 }));
    expect(errnoOf(() => c.ioctl(VfioIoctl.IOMMU_UNMAP_DMA, U.dmaUnmap({ iova: 0x11000, size: 0x1000 })))).toBe(Errno.EINVAL);
    expect(errnoOf(() => c.ioctl(VfioIoctl.IOMMU_UNMAP_DMA, U.dmaUnmap({ iova: 0x10000, size: 0x1000 })))).toBe(Errno.EINVAL);
    expect(c.container.mappings).toHaveLength(1);
    const r1 = rig();
    const v1 = opened(r1, VfioExtension.TYPE1_IOMMU);
    v1.c.ioctl(VfioIoctl.IOMMU_MAP_DMA, U.dmaMap({ vaddr: VA, iova: 0x10000, size: 0x4000 }));
    const un = U.dmaUnmap({ iova: 0x10000, size: 0x1000 });
    v1.c.ioctl(VfioIoctl.IOMMU_UNMAP_DMA, un);
    expect(DmaUnmapLayout.get(un, "size")).toBe(0x4000n);
  });

  it("UNMAP_ALL takes every mapping; with it iova and size must be 0", () => {
    const r = rig();
    const { c } = opened(r);
    for (const iova of [0x10000, 0x40000, 0x80000]) c.ioctl(VfioIoctl.IOMMU_MAP_DMA, U.dmaMap({ vaddr: VA + iova, iova, size: 0x2000 }));
    expect(errnoOf(() => c.ioctl(VfioIoctl.IOMMU_UNMAP_DMA, U.dmaUnmap({ iova: 0x1000, size: 0, flags: DmaUnmapFlag.ALL })))).toBe(Errno.EINVAL);
    expect(errnoOf(() => c.ioctl(VfioIoctl.IOMMU_UNMAP_DMA, U.dmaUnmap({ iova: 0, size: 0, flags: DmaUnmapFlag.GET_DIRTY_BITMAP })))).toBe(Errno.EINVAL);
    const un = U.dmaUnmap({ iova: 0, size: 0, flags: DmaUnmapFlag.ALL });
    c.ioctl(VfioIoctl.IOMMU_UNMAP_DMA, un);
    expect([DmaUnmapLayout.get(un, "size"), r.pages.pinned, c.container.dmaAvail]).toEqual([0x6000n, 0, 65535]);
  });

  it("a fault injected at any step of MAP_DMA leaves nothing mapped, pinned or charged; every VFIO point fails in some run", () => {
    const cov = new FaultCoverage(VFIO_FAULT_POINTS, [IOMMU_CORE_FAULT_POINTS, MOCK_FAULT_POINTS, IOASID_FAULT_POINTS]);
    for (let nth = 1; ; nth++) {
      const r = rig();
      const { c } = opened(r);
      r.h.kernel.faults.failNth(nth);
      const e = errnoOf(() => c.ioctl(VfioIoctl.IOMMU_MAP_DMA, U.dmaMap({ vaddr: VA, iova: 0x20_0000, size: 64 * 1024 })));
      cov.record(r.h.kernel.faults);
      r.h.kernel.faults.disarm();
      if (e === 0) {
        expect(nth).toBeGreaterThan(1);
        expect(cov.missing()).toEqual([]);
        expect(cov.undeclared()).toEqual([]);
        break;
      }
      expect([c.container.mappings.length, r.pages.pinned, r.user.lockedBytes]).toEqual([0, 0, 0]);
      const domain = c.container.domains[0];
      if (domain !== undefined) expect(r.h.core.iovaToPhys(domain, 0x20_0000)).toBeNull();
    }
  });
});

describe("release", () => {
  it("the process exiting closes its files: mappings unmapped, pages unpinned, the domain freed", () => {
    const r = rig();
    const { c, g } = opened(r);
    g.ioctl(VfioIoctl.GROUP_GET_DEVICE_FD, U.cString("nic0"));
    c.ioctl(VfioIoctl.IOMMU_MAP_DMA, U.dmaMap({ vaddr: VA, iova: 0x10_0000, size: 4 * MiB }));
    const domains = r.h.core.liveDomains;
    r.user.exit();
    expect([r.pages.pinned, r.user.lockedBytes, r.user.openFiles]).toEqual([0, 0, 0]);
    expect(r.h.core.liveDomains).toBe(domains - 1);
    expect(r.vfio.group(r.group)?.container).toBeNull();
  });

  it("closing only the container keeps it alive while a group holds it", () => {
    const r = rig();
    const { c, g } = opened(r);
    c.ioctl(VfioIoctl.IOMMU_MAP_DMA, U.dmaMap({ vaddr: VA, iova: 0x10_0000, size: 0x1000 }));
    c.close();
    expect(r.pages.pinned).toBe(1);
    g.close();
    expect(r.pages.pinned).toBe(0);
  });
});
