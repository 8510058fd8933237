import { Errno, asHostPasid, sourceId } from "@vsva/kernel";
import { errnoOf } from "@vsva/kernel/testing";
import { IommuFaultLayout, decodeIommuFault, encodePageResponse } from "@vsva/iommu-core";
import { mockHost } from "@vsva/iommu-core/testing";
import { describe, expect, it } from "vitest";
import { DmaFaultHeaderLayout, DmaFaultResponseHeaderLayout, VFIO_REGION_TYPE_NESTED } from "./fault-region.js";
import { regionOffset } from "./region.js";
import { FakeUserPages, configOnlyOps, vfioUapi as U } from "./testing/index.js";
import { VfioExtension, VfioIoctl } from "./uapi/ioctl.js";
import { RegionFlag, RegionInfoLayout } from "./uapi/structs.js";
import { VfioUser } from "./user.js";
import { Vfio } from "./vfio.js";
import { VfioDeviceFile } from "./files/device-file.js";

const u32 = (v: number) => new Uint8Array(new Uint32Array([v]).buffer);

/** A device file on a nesting container; `onRelease` runs in the device's own release (after VFIO's part of the last close). */
function rig(onRelease?: (h: ReturnType<typeof mockHost>) => void) {
  const h = mockHost({ defaultDomain: "dma" });
  const vfio = new Vfio({ kernel: h.kernel, core: h.core, ioasid: h.core.ioasid });
  const dev = h.core.probeDevice(h.iommu, { name: "dsa0", sid: sourceId(0, 3, 0), pasidWidth: 20 });
  const vdev = vfio.bindPciDevice(dev, onRelease === undefined ? configOnlyOps() : { ...configOnlyOps(), release: () => onRelease(h) });
  const user = new VfioUser({ name: "qemu", mm: {}, pages: new FakeUserPages({ base: 0, size: 1 << 20, hostBase: 0x1_0000_0000 }), memlockLimit: 1 << 30 });
  const c = vfio.openContainer(user);
  const g = vfio.openGroup(user, dev.group?.id ?? -1);
  g.ioctl(VfioIoctl.GROUP_SET_CONTAINER, U.fdArg(c.fd));
  c.ioctl(VfioIoctl.SET_IOMMU, VfioExtension.TYPE1_NESTING_IOMMU);
  const f = user.file(g.ioctl(VfioIoctl.GROUP_GET_DEVICE_FD, U.cString("dsa0")));
  if (!(f instanceof VfioDeviceFile)) throw new Error("not a device file");
  const report = (grpid: number, last = true) => {
    if (h.mock.uplink === null) throw new Error("not registered");
    return h.mock.uplink.reportDeviceFault(dev, { pasid: asHostPasid(7), addr: 0x4000_0000, read: true, write: true, exec: false, priv: false, grpid, last });
  };
  return { h, dev, vdev, user, g, f, report };
}

describe("the nested DMA fault region and its response region", () => {
  it("are regions 9 and 10 of a vfio-pci device, typed NESTED by their capability", () => {
    const { f } = rig();
    for (const [index, subtype] of [[9, 1], [10, 2]] as const) {
      const info = new Uint8Array(64);
      RegionInfoLayout.set(info, "argsz", 64);
      RegionInfoLayout.set(info, "index", index);
      f.ioctl(VfioIoctl.DEVICE_GET_REGION_INFO, info);
      expect(RegionInfoLayout.get(info, "flags") & RegionFlag.CAPS).toBe(RegionFlag.CAPS);
      const cap = RegionInfoLayout.get(info, "cap_offset");
      const dv = new DataView(info.buffer);
      expect([dv.getUint16(cap, true), dv.getUint32(cap + 8, true), dv.getUint32(cap + 12, true)]).toEqual([1, VFIO_REGION_TYPE_NESTED, subtype]);
    }
  });

  it("carry a guest's page request to the VMM as an iommu_fault, and its response back to the device", () => {
    const { h, f, report } = rig();
    expect(report(3)).toBe(true);
    const hdr = f.pread(regionOffset(9), DmaFaultHeaderLayout.size);
    expect([DmaFaultHeaderLayout.get(hdr, "head"), DmaFaultHeaderLayout.get(hdr, "entry_size"), DmaFaultHeaderLayout.get(hdr, "nb_entries")]).toEqual([1, 64, 512]);
    const rec = decodeIommuFault(f.pread(regionOffset(9) + DmaFaultHeaderLayout.get(hdr, "offset"), IommuFaultLayout.size));
    expect(rec).toMatchObject({ type: "page-request", prm: { pasid: 7, grpid: 3, last: true } });
    f.pwrite(regionOffset(9), u32(1));
    const ring = regionOffset(10) + 4096;
    f.pwrite(ring, encodePageResponse({ pasid: asHostPasid(7), grpid: 3, code: "success" }));
    f.pwrite(regionOffset(10) + DmaFaultResponseHeaderLayout.offsetOf("head"), u32(1));
    expect(h.mock.responses.map((r) => r.response)).toEqual([{ pasid: 7, grpid: 3, code: "success" }]);
  });

  it("a response to a fault the device never had is EINVAL and reaches no device", () => {
    const { h, f } = rig();
    f.pwrite(regionOffset(10) + 4096, encodePageResponse({ pasid: asHostPasid(7), grpid: 9, code: "success" }));
    expect(errnoOf(() => f.pwrite(regionOffset(10), u32(1)))).toBe(Errno.EINVAL);
    expect(h.mock.responses).toHaveLength(0);
    expect(errnoOf(() => f.pwrite(regionOffset(10), u32(600)))).toBe(Errno.EINVAL);
    expect(errnoOf(() => f.pwrite(regionOffset(9), u32(512)))).toBe(Errno.EINVAL);
  });

  it("a full ring refuses the fault, so the driver answers it", () => {
    const { vdev, report } = rig();
    for (let i = 0; i < 511; i++) expect(report(i % 512)).toBe(true);
    expect(report(1)).toBe(false);
    expect(vdev.faults?.dropped).toBe(1);
  });

  it("the device file's last close answers invalid every group the VMM took and never answered, before the device's own release runs", () => {
    // What the device's release sees: a device draining on release needs its faults answered first.
    const seenAtRelease: number[] = [];
    const { h, vdev, user, g, f, report } = rig((host) => seenAtRelease.push(host.mock.responses.length));
    // Group 1 read by the VMM (tail moved) and unanswered; group 2 still in the ring; group 3 answered by the VMM; group 4 not complete (no last request).
    for (const grpid of [1, 2, 3]) expect(report(grpid)).toBe(true);
    expect(report(4, false)).toBe(true);
    f.pwrite(regionOffset(9), u32(1));
    f.pwrite(regionOffset(10) + 4096, encodePageResponse({ pasid: asHostPasid(7), grpid: 3, code: "success" }));
    f.pwrite(regionOffset(10), u32(1));
    expect(vdev.faults?.outstandingGroups).toBe(2);
    f.close();
    expect(h.mock.responses.map((r) => r.response)).toEqual([
      { pasid: 7, grpid: 3, code: "success" },
      { pasid: 7, grpid: 1, code: "invalid" },
      { pasid: 7, grpid: 2, code: "invalid" },
    ]);
    expect(seenAtRelease).toEqual([3]);
    expect(vdev.faults?.outstandingGroups).toBe(0);
    expect(vdev.faults?.pendingFaults).toBe(0);
    // No reader until the next open: a new fault is refused, so the driver answers it at once.
    expect(report(5)).toBe(false);
    user.file(g.ioctl(VfioIoctl.GROUP_GET_DEVICE_FD, U.cString("dsa0")));
    expect(report(6)).toBe(true);
    expect(vdev.faults?.outstandingGroups).toBe(1);
  });

  it("the VMM dying unregisters the handler and answers invalid what it never answered", () => {
    const { h, f, report } = rig();
    report(4);
    f.user.exit();
    expect(h.mock.responses.map((r) => r.response)).toEqual([{ pasid: 7, grpid: 4, code: "invalid" }]);
    expect(report(5)).toBe(false);
  });
});
