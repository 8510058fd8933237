import { describe, expect, it } from "vitest";
import { buildCapChain, walkCapChain } from "./info-caps.js";
import { VfioExtension, VfioIoctl, ioctlName } from "./ioctl.js";
import {
  CapDmaAvailLayout, CapIovaRangeLayout, DeviceInfoLayout, DmaMapLayout, DmaUnmapLayout, GroupStatusLayout, InfoCapHeaderLayout,
  IommuType1InfoLayout, IovaRangeLayout, NestingOpLayout, PasidRequestLayout, RegionInfoLayout,
} from "./structs.js";

describe("VFIO UAPI numbers (include/uapi/linux/vfio.h)", () => {
  it("are _IO(';', 100 + n) with no size or direction bits", () => {
    expect(VfioIoctl.GET_API_VERSION).toBe(0x3b64);
    expect(VfioIoctl.SET_IOMMU).toBe(0x3b66);
    expect(VfioIoctl.GROUP_GET_DEVICE_FD).toBe(0x3b6a);
    expect(VfioIoctl.IOMMU_GET_INFO).toBe(0x3b70);
    expect(VfioIoctl.IOMMU_MAP_DMA).toBe(0x3b71);
    expect(VfioIoctl.IOMMU_UNMAP_DMA).toBe(0x3b72);
    expect(VfioIoctl.IOMMU_PASID_REQUEST).toBe(0x3b76);
    expect(VfioIoctl.IOMMU_NESTING_OP).toBe(0x3b77);
    expect(ioctlName(0x3b71)).toBe("VFIO_IOMMU_MAP_DMA");
    expect(ioctlName(0x1234)).toBe("0x1234");
  });

  it("extension IDs share SET_IOMMU's number space", () => {
    expect([VfioExtension.TYPE1_IOMMU, VfioExtension.TYPE1v2_IOMMU, VfioExtension.TYPE1_NESTING_IOMMU, VfioExtension.UNMAP_ALL]).toEqual([1, 3, 6, 9]);
  });

  it("struct sizes are the C sizeof", () => {
    expect([GroupStatusLayout, DeviceInfoLayout, RegionInfoLayout, InfoCapHeaderLayout, IommuType1InfoLayout, CapIovaRangeLayout, IovaRangeLayout, CapDmaAvailLayout, DmaMapLayout, DmaUnmapLayout, PasidRequestLayout, NestingOpLayout].map((l) => l.size)).toEqual([
      8, 20, 32, 8, 24, 16, 16, 12, 32, 24, 16, 8,
    ]);
    expect(DmaMapLayout.offsetOf("iova")).toBe(16);
    expect(IommuType1InfoLayout.offsetOf("cap_offset")).toBe(16);
  });
});

describe("capability chains (vfio_info_cap_add, vfio_info_cap_shift)", () => {
  it("link each capability to the next by offset from the INFO buffer's start, 0 on the last", () => {
    const chain = buildCapChain([{ id: 3, version: 1, body: new Uint8Array(4) }, { id: 1, version: 1, body: new Uint8Array(24) }], 24);
    const buf = new Uint8Array(24 + chain.length);
    buf.set(chain, 24);
    expect(walkCapChain(buf, 24)).toEqual([{ id: 3, version: 1, offset: 24 }, { id: 1, version: 1, offset: 36 }]);
    expect(InfoCapHeaderLayout.get(buf, "next", 36)).toBe(0);
  });

  it("a VMM walking a looping or truncated chain stops", () => {
    const buf = new Uint8Array(32);
    InfoCapHeaderLayout.set(buf, "next", 8, 8);
    expect(walkCapChain(buf, 8)).toHaveLength(1);
    expect(walkCapChain(buf, 30)).toEqual([]);
  });
});
