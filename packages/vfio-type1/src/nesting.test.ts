import { Errno, sourceId } from "@vsva/kernel";
import { errnoOf } from "@vsva/kernel/testing";
import { CacheInvType, IOMMU_SVA_GPASID_VAL, InvGranularity, encodeCacheInvalidateInfo, encodeGpasidBindData } from "@vsva/iommu-core";
import { mockHost } from "@vsva/iommu-core/testing";
import { describe, expect, it } from "vitest";
import { FakeUserPages, configOnlyOps, vfioUapi as U } from "./testing/index.js";
import { walkCapChain } from "./uapi/info-caps.js";
import { VfioExtension, VfioIoctl } from "./uapi/ioctl.js";
import { IommuInfoCap, IommuType1InfoLayout, NestingOp } from "./uapi/structs.js";
import { VfioUser } from "./user.js";
import { Vfio } from "./vfio.js";

const MiB = 1 << 20;
const VA = 0x7f00_0000_0000;

function host(opts: { pasidQuota?: number } = {}) {
  const h = mockHost({ defaultDomain: "dma" });
  const vfio = new Vfio({ kernel: h.kernel, core: h.core, ioasid: h.core.ioasid, ...(opts.pasidQuota === undefined ? {} : { pasidQuota: opts.pasidQuota }) });
  return { h, vfio };
}

function vm(vfio: Vfio, name: string) {
  const pages = new FakeUserPages({ base: VA, size: 4 * MiB, hostBase: 0x3_0000_0000 });
  return new VfioUser({ name, mm: { name }, pages, memlockLimit: 64 * MiB });
}

/** A nesting container holding `group`, opened by `user`. */
function nestingContainer(vfio: Vfio, user: VfioUser, group: number) {
  const c = vfio.openContainer(user);
  const g = vfio.openGroup(user, group);
  g.ioctl(VfioIoctl.GROUP_SET_CONTAINER, U.fdArg(c.fd));
  c.ioctl(VfioIoctl.SET_IOMMU, VfioExtension.TYPE1_NESTING_IOMMU);
  return { c, g };
}

const bind = (hpasid: number, gpasid?: number) =>
  U.nestingOp(NestingOp.BIND_PGTBL, encodeGpasidBindData({ hpasid: BigInt(hpasid), gpgd: 0x10_0000n, addrWidth: 48, ...(gpasid === undefined ? {} : { gpasid: BigInt(gpasid), flags: BigInt(IOMMU_SVA_GPASID_VAL) }) }));
const unbind = (hpasid: number) => U.nestingOp(NestingOp.UNBIND_PGTBL, encodeGpasidBindData({ hpasid: BigInt(hpasid), addrWidth: 48 }));

describe("the nesting type (vSVA series v7)", () => {
  it("creates the VM's IOASID set on SET_IOMMU, reports nesting info, and takes one group", () => {
    const { h, vfio } = host();
    const a = h.core.probeDevice(h.iommu, { name: "a", sid: sourceId(0, 3, 0), pasidWidth: 20 });
    const b = h.core.probeDevice(h.iommu, { name: "b", sid: sourceId(0, 4, 0), pasidWidth: 20 });
    vfio.bindPciDevice(a, configOnlyOps());
    vfio.bindPciDevice(b, configOnlyOps());
    const user = vm(vfio, "vm1");
    const { c } = nestingContainer(vfio, user, a.group?.id ?? -1);
    expect(h.core.ioasid.findSetByToken(user.mm)).not.toBeNull();
    const g2 = vfio.openGroup(user, b.group?.id ?? -1);
    expect(errnoOf(() => g2.ioctl(VfioIoctl.GROUP_SET_CONTAINER, U.fdArg(c.fd)))).toBe(Errno.EINVAL);
    const info = U.iommuInfo(512);
    c.ioctl(VfioIoctl.IOMMU_GET_INFO, info);
    const caps = walkCapChain(info, IommuType1InfoLayout.get(info, "cap_offset"));
    expect(caps.map((x) => x.id)).toEqual([IommuInfoCap.DMA_AVAIL, IommuInfoCap.IOVA_RANGE, IommuInfoCap.NESTING]);
  });

  it("PASID_REQUEST allocates from the VM's set, frees a range, and checks its flags", () => {
    const { h, vfio } = host();
    const a = h.core.probeDevice(h.iommu, { name: "a", sid: sourceId(0, 3, 0), pasidWidth: 20 });
    vfio.bindPciDevice(a, configOnlyOps());
    const user = vm(vfio, "vm1");
    const { c } = nestingContainer(vfio, user, a.group?.id ?? -1);
    const p = c.ioctl(VfioIoctl.IOMMU_PASID_REQUEST, U.pasidRequest({ alloc: true, min: 100, max: 200 }));
    expect(p).toBeGreaterThanOrEqual(100);
    expect(errnoOf(() => c.ioctl(VfioIoctl.IOMMU_PASID_REQUEST, U.pasidRequest({ alloc: true, free: true, min: 1, max: 2 })))).toBe(Errno.EINVAL);
    expect(errnoOf(() => c.ioctl(VfioIoctl.IOMMU_PASID_REQUEST, U.pasidRequest({ min: 1, max: 2 })))).toBe(Errno.EINVAL);
    expect(errnoOf(() => c.ioctl(VfioIoctl.IOMMU_PASID_REQUEST, U.pasidRequest({ alloc: true, min: 9, max: 2 })))).toBe(Errno.EINVAL);
    expect(errnoOf(() => c.ioctl(VfioIoctl.IOMMU_PASID_REQUEST, U.pasidRequest({ alloc: true, min: 1, max: 2, flags: 1 | 4 })))).toBe(Errno.EINVAL);
    expect(c.ioctl(VfioIoctl.IOMMU_PASID_REQUEST, U.pasidRequest({ free: true, min: 0, max: 1000 }))).toBe(0);
    expect(h.core.ioasid.refcount(p as never)).toBe(0);
  });

  it("a VM that uses up its quota gets ENOSPC; another VM is unaffected", () => {
    const { h, vfio } = host({ pasidQuota: 3 });
    const a = h.core.probeDevice(h.iommu, { name: "a", sid: sourceId(0, 3, 0), pasidWidth: 20 });
    const b = h.core.probeDevice(h.iommu, { name: "b", sid: sourceId(0, 4, 0), pasidWidth: 20 });
    vfio.bindPciDevice(a, configOnlyOps());
    vfio.bindPciDevice(b, configOnlyOps());
    const vm1 = nestingContainer(vfio, vm(vfio, "vm1"), a.group?.id ?? -1).c;
    const vm2 = nestingContainer(vfio, vm(vfio, "vm2"), b.group?.id ?? -1).c;
    for (let i = 0; i < 3; i++) vm1.ioctl(VfioIoctl.IOMMU_PASID_REQUEST, U.pasidRequest({ alloc: true, min: 1, max: 1000 }));
    expect(errnoOf(() => vm1.ioctl(VfioIoctl.IOMMU_PASID_REQUEST, U.pasidRequest({ alloc: true, min: 1, max: 1000 })))).toBe(Errno.ENOSPC);
    expect(vm2.ioctl(VfioIoctl.IOMMU_PASID_REQUEST, U.pasidRequest({ alloc: true, min: 1, max: 1000 }))).toBeGreaterThan(0);
  });

  it("PASID_REQUEST and NESTING_OP on a type1v2 container are EOPNOTSUPP", () => {
    const { h, vfio } = host();
    const a = h.core.probeDevice(h.iommu, { name: "a", sid: sourceId(0, 3, 0), pasidWidth: 20 });
    vfio.bindPciDevice(a, configOnlyOps());
    const user = vm(vfio, "vm1");
    const c = vfio.openContainer(user);
    const g = vfio.openGroup(user, a.group?.id ?? -1);
    g.ioctl(VfioIoctl.GROUP_SET_CONTAINER, U.fdArg(c.fd));
    c.ioctl(VfioIoctl.SET_IOMMU, VfioExtension.TYPE1v2_IOMMU);
    expect(errnoOf(() => c.ioctl(VfioIoctl.IOMMU_PASID_REQUEST, U.pasidRequest({ alloc: true, min: 1, max: 9 })))).toBe(Errno.EOPNOTSUPP);
    expect(errnoOf(() => c.ioctl(VfioIoctl.IOMMU_NESTING_OP, bind(5)))).toBe(Errno.EOPNOTSUPP);
  });

  it("NESTING_OP binds, invalidates and unbinds a PASID of the VM's set on its device, and refuses another VM's PASID", () => {
    const { h, vfio } = host();
    const a = h.core.probeDevice(h.iommu, { name: "a", sid: sourceId(0, 3, 0), pasidWidth: 20 });
    const b = h.core.probeDevice(h.iommu, { name: "b", sid: sourceId(0, 4, 0), pasidWidth: 20 });
    vfio.bindPciDevice(a, configOnlyOps());
    vfio.bindPciDevice(b, configOnlyOps());
    const c1 = nestingContainer(vfio, vm(vfio, "vm1"), a.group?.id ?? -1).c;
    const c2 = nestingContainer(vfio, vm(vfio, "vm2"), b.group?.id ?? -1).c;
    const p1 = c1.ioctl(VfioIoctl.IOMMU_PASID_REQUEST, U.pasidRequest({ alloc: true, min: 1, max: 1000 }));
    const p2 = c2.ioctl(VfioIoctl.IOMMU_PASID_REQUEST, U.pasidRequest({ alloc: true, min: 1, max: 1000 }));
    c1.ioctl(VfioIoctl.IOMMU_NESTING_OP, bind(p1, 101));
    expect([...h.mock.pasidEntries.keys()]).toEqual([`a/${p1}`]);
    expect(errnoOf(() => c1.ioctl(VfioIoctl.IOMMU_NESTING_OP, bind(p2)))).not.toBe(0);
    expect(h.mock.pasidEntries.size).toBe(1);
    const inv = encodeCacheInvalidateInfo({ cache: CacheInvType.IOTLB, granularity: InvGranularity.PASID, pasidInfo: { flags: 1, pasid: BigInt(p1) } });
    c1.ioctl(VfioIoctl.IOMMU_NESTING_OP, U.nestingOp(NestingOp.CACHE_INVLD, inv));
    expect(h.mock.invalidations).toHaveLength(1);
    expect(errnoOf(() => c1.ioctl(VfioIoctl.IOMMU_NESTING_OP, U.nestingOp(7, new Uint8Array(0))))).toBe(Errno.EINVAL);
    expect(errnoOf(() => c1.ioctl(VfioIoctl.IOMMU_NESTING_OP, U.nestingOp(NestingOp.BIND_PGTBL | 0x1_0000, new Uint8Array(0))))).toBe(Errno.EINVAL);
    c1.ioctl(VfioIoctl.IOMMU_NESTING_OP, unbind(p1));
    expect(h.mock.pasidEntries.size).toBe(0);
  });

  it("every nesting op on an mdev with no IOMMU backing is EINVAL and reaches no driver", () => {
    const { h, vfio } = host();
    const mdev = vfio.addMdev("mdev-sw", null, configOnlyOps());
    const user = vm(vfio, "vm1");
    const { c } = nestingContainer(vfio, user, mdev.group?.id ?? -1);
    const p = c.ioctl(VfioIoctl.IOMMU_PASID_REQUEST, U.pasidRequest({ alloc: true, min: 1, max: 1000 }));
    for (const op of [bind(p), unbind(p), U.nestingOp(NestingOp.CACHE_INVLD, encodeCacheInvalidateInfo({ cache: CacheInvType.IOTLB }))]) {
      expect(errnoOf(() => c.ioctl(VfioIoctl.IOMMU_NESTING_OP, op))).toBe(Errno.EINVAL);
    }
    expect([h.mock.pasidEntries.size, h.mock.invalidations.length]).toEqual([0, 0]);
    c.ioctl(VfioIoctl.IOMMU_MAP_DMA, U.dmaMap({ vaddr: VA, iova: 0, size: 0x1000 }));
    expect(c.container.mappings).toHaveLength(1);
  });

  it("two IOMMU-backed mdevs of one parent bound to one PASID: the first bind programs, the last unbind clears", () => {
    const { h, vfio } = host();
    const parent = h.core.probeDevice(h.iommu, { name: "dsa0", sid: sourceId(0, 5, 0), pasidWidth: 20 });
    h.core.enableFeature(parent, "aux");
    h.core.enableFeature(parent, "sva"); // the parent's driver (the VDCM) owns its features
    const m1 = vfio.addMdev("mdev1", h.core.addSubDevice(parent, "mdev1"), configOnlyOps());
    const m2 = vfio.addMdev("mdev2", h.core.addSubDevice(parent, "mdev2"), configOnlyOps());
    const user = vm(vfio, "vm1");
    const c1 = nestingContainer(vfio, user, m1.group?.id ?? -1).c;
    const c2 = nestingContainer(vfio, user, m2.group?.id ?? -1).c;
    const p = c1.ioctl(VfioIoctl.IOMMU_PASID_REQUEST, U.pasidRequest({ alloc: true, min: 1, max: 1000 }));
    c1.ioctl(VfioIoctl.IOMMU_NESTING_OP, bind(p));
    c2.ioctl(VfioIoctl.IOMMU_NESTING_OP, bind(p));
    expect([...h.mock.pasidEntries.keys()]).toEqual([`dsa0/${p}`]);
    c1.ioctl(VfioIoctl.IOMMU_NESTING_OP, unbind(p));
    expect(h.mock.pasidEntries.size).toBe(1);
    c2.ioctl(VfioIoctl.IOMMU_NESTING_OP, unbind(p));
    expect(h.mock.pasidEntries.size).toBe(0);
  });

  it("the first sibling's container going away hands the entry to the sibling still bound, which clears it last", () => {
    const { h, vfio } = host();
    const parent = h.core.probeDevice(h.iommu, { name: "dsa0", sid: sourceId(0, 5, 0), pasidWidth: 20 });
    h.core.enableFeature(parent, "aux");
    h.core.enableFeature(parent, "sva");
    const m1 = vfio.addMdev("mdev1", h.core.addSubDevice(parent, "mdev1"), configOnlyOps());
    const m2 = vfio.addMdev("mdev2", h.core.addSubDevice(parent, "mdev2"), configOnlyOps());
    const user = vm(vfio, "vm1");
    const first = nestingContainer(vfio, user, m1.group?.id ?? -1);
    const c2 = nestingContainer(vfio, user, m2.group?.id ?? -1).c;
    const p = first.c.ioctl(VfioIoctl.IOMMU_PASID_REQUEST, U.pasidRequest({ alloc: true, min: 1, max: 1000 }));
    first.c.ioctl(VfioIoctl.IOMMU_NESTING_OP, bind(p));
    c2.ioctl(VfioIoctl.IOMMU_NESTING_OP, bind(p));
    const before = h.mock.pasidEntries.get(`dsa0/${p}`);
    first.g.close();
    first.c.close();
    const after = h.mock.pasidEntries.get(`dsa0/${p}`);
    expect(after).toBeDefined();
    expect(after).not.toBe(before); // programmed again, over the surviving sibling's domain
    c2.ioctl(VfioIoctl.IOMMU_NESTING_OP, unbind(p));
    expect(h.mock.pasidEntries.size).toBe(0);
  });

  it("the VMM dying with live binds and mappings unbinds, frees the VM's PASIDs and unpins everything", () => {
    const { h, vfio } = host();
    const a = h.core.probeDevice(h.iommu, { name: "a", sid: sourceId(0, 3, 0), pasidWidth: 20 });
    vfio.bindPciDevice(a, configOnlyOps());
    const user = vm(vfio, "vm1");
    const { c, g } = nestingContainer(vfio, user, a.group?.id ?? -1);
    g.ioctl(VfioIoctl.GROUP_GET_DEVICE_FD, U.cString("a"));
    c.ioctl(VfioIoctl.IOMMU_MAP_DMA, U.dmaMap({ vaddr: VA, iova: 0, size: 2 * MiB }));
    const p = c.ioctl(VfioIoctl.IOMMU_PASID_REQUEST, U.pasidRequest({ alloc: true, min: 1, max: 1000 }));
    c.ioctl(VfioIoctl.IOMMU_NESTING_OP, bind(p));
    user.exit();
    h.kernel.scheduler.runUntilIdle();
    expect([h.mock.pasidEntries.size, user.lockedBytes, vfio.liveMms]).toEqual([0, 0, 0]);
    expect(h.core.ioasid.findSetByToken(user.mm)).toBeNull();
    expect(h.core.ioasid.state(p as never)).toBe("IDLE");
  });
});
