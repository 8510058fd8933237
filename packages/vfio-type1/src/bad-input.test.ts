import { Errno, KernelError, sourceId } from "@vsva/kernel";
import { errnoOf } from "@vsva/kernel/testing";
import { encodeCacheInvalidateInfo, encodeGpasidBindData } from "@vsva/iommu-core";
import { mockHost } from "@vsva/iommu-core/testing";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { VfioDeviceFile } from "./files/device-file.js";
import type { VfioFile } from "./files/file.js";
import { FakeUserPages, configOnlyOps, vfioUapi as U } from "./testing/index.js";
import { VfioExtension, VfioIoctl } from "./uapi/ioctl.js";
import { DeviceInfoLayout, DmaMapLayout, DmaUnmapLayout, GroupStatusLayout, IommuType1InfoLayout, NestingOp, NestingOpLayout, PasidRequestLayout, RegionInfoLayout } from "./uapi/structs.js";
import { VfioUser } from "./user.js";
import { Vfio } from "./vfio.js";

const VA = 0x7f00_0000_0000;

/** A nesting container with one device, one mapping, one PASID bound: a VM in use. */
function live() {
  const h = mockHost({ defaultDomain: "dma" });
  const vfio = new Vfio({ kernel: h.kernel, core: h.core, ioasid: h.core.ioasid });
  const dev = h.core.probeDevice(h.iommu, { name: "nic0", sid: sourceId(0, 2, 0), pasidWidth: 20 });
  vfio.bindPciDevice(dev, configOnlyOps());
  const pages = new FakeUserPages({ base: VA, size: 1 << 20, hostBase: 0x2_0000_0000 });
  const user = new VfioUser({ name: "qemu", mm: {}, pages, memlockLimit: 1 << 30 });
  const c = vfio.openContainer(user);
  const g = vfio.openGroup(user, dev.group?.id ?? -1);
  g.ioctl(VfioIoctl.GROUP_SET_CONTAINER, U.fdArg(c.fd));
  c.ioctl(VfioIoctl.SET_IOMMU, VfioExtension.TYPE1_NESTING_IOMMU);
  c.ioctl(VfioIoctl.IOMMU_MAP_DMA, U.dmaMap({ vaddr: VA, iova: 0x10_0000, size: 0x4000 }));
  const p = c.ioctl(VfioIoctl.IOMMU_PASID_REQUEST, U.pasidRequest({ alloc: true, min: 1, max: 100 }));
  c.ioctl(VfioIoctl.IOMMU_NESTING_OP, U.nestingOp(NestingOp.BIND_PGTBL, encodeGpasidBindData({ hpasid: BigInt(p), gpgd: 0x1000n })));
  const fd = g.ioctl(VfioIoctl.GROUP_GET_DEVICE_FD, U.cString("nic0"));
  const d = user.file(fd);
  if (!(d instanceof VfioDeviceFile)) throw new Error("device file");
  /** Everything a refused call must leave as it was. */
  const state = () => ({
    mappings: c.container.mappings.map((m) => `${m.iova}+${m.size}`),
    avail: c.container.dmaAvail,
    pinned: pages.pinned,
    locked: user.lockedBytes,
    pasids: h.core.ioasid.snapshot().ids.length,
    entries: [...h.mock.pasidEntries.keys()],
    invalidations: h.mock.invalidations.length,
    files: user.openFiles,
    group: c.container.groups.size,
  });
  return { h, c, g, d, user, p, state };
}

type Case = readonly [name: string, file: "c" | "g" | "d", cmd: number, arg: Uint8Array | number | null, errno: Errno];

function withArgsz(b: Uint8Array, argsz: number): Uint8Array {
  const out = b.slice();
  new DataView(out.buffer).setUint32(0, argsz, true);
  return out;
}
function withFlags(b: Uint8Array, flags: number): Uint8Array {
  const out = b.slice();
  new DataView(out.buffer).setUint32(4, flags >>> 0, true);
  return out;
}

describe("every VFIO ioctl refuses bad input with the upstream errno and changes nothing", () => {
  const map = U.dmaMap({ vaddr: VA + 0x8000, iova: 0x20_0000, size: 0x1000 });
  const unmap = U.dmaUnmap({ iova: 0x10_0000, size: 0x4000 });
  const info = U.iommuInfo(IommuType1InfoLayout.size);
  const preq = U.pasidRequest({ alloc: true, min: 1, max: 100 });
  const status = new Uint8Array(GroupStatusLayout.size);
  GroupStatusLayout.set(status, "argsz", GroupStatusLayout.size);
  const dinfo = new Uint8Array(DeviceInfoLayout.size);
  DeviceInfoLayout.set(dinfo, "argsz", DeviceInfoLayout.size);
  const rinfo = new Uint8Array(RegionInfoLayout.size);
  RegionInfoLayout.set(rinfo, "argsz", RegionInfoLayout.size);
  const structs: [string, "c" | "g" | "d", number, Uint8Array, number, number | null][] = [
    ["IOMMU_GET_INFO", "c", VfioIoctl.IOMMU_GET_INFO, info, IommuType1InfoLayout.offsetOfEnd("iova_pgsizes"), null],
    ["IOMMU_MAP_DMA", "c", VfioIoctl.IOMMU_MAP_DMA, map, DmaMapLayout.size, 3],
    ["IOMMU_UNMAP_DMA", "c", VfioIoctl.IOMMU_UNMAP_DMA, unmap, DmaUnmapLayout.size, 2],
    ["IOMMU_PASID_REQUEST", "c", VfioIoctl.IOMMU_PASID_REQUEST, preq, PasidRequestLayout.size, 3],
    ["IOMMU_NESTING_OP", "c", VfioIoctl.IOMMU_NESTING_OP, U.nestingOp(NestingOp.CACHE_INVLD, encodeCacheInvalidateInfo({ cache: 1 })), NestingOpLayout.size, 0xffff],
    ["GROUP_GET_STATUS", "g", VfioIoctl.GROUP_GET_STATUS, status, GroupStatusLayout.size, null],
    ["DEVICE_GET_INFO", "d", VfioIoctl.DEVICE_GET_INFO, dinfo, DeviceInfoLayout.offsetOfEnd("num_irqs"), null],
    ["DEVICE_GET_REGION_INFO", "d", VfioIoctl.DEVICE_GET_REGION_INFO, rinfo, RegionInfoLayout.size, null],
  ];
  const cases: Case[] = [];
  for (const [name, f, cmd, good, minsz, known] of structs) {
    cases.push([`${name}: no buffer`, f, cmd, null, Errno.EFAULT]);
    cases.push([`${name}: fewer bytes mapped than it reads`, f, cmd, good.subarray(0, minsz - 1), Errno.EFAULT]);
    cases.push([`${name}: argsz below the struct`, f, cmd, withArgsz(good, minsz - 1), Errno.EINVAL]);
    cases.push([`${name}: an integer where a pointer goes`, f, cmd, 5, Errno.EFAULT]);
    if (known !== null) cases.push([`${name}: an unknown flag`, f, cmd, withFlags(good, (known + 1) | 0x8000_0000), Errno.EINVAL]);
  }
  cases.push(
    ["UNMAP_DMA: unaligned iova", "c", VfioIoctl.IOMMU_UNMAP_DMA, U.dmaUnmap({ iova: 0x10_0800, size: 0x4000 }), Errno.EINVAL],
    ["UNMAP_DMA: size 0", "c", VfioIoctl.IOMMU_UNMAP_DMA, U.dmaUnmap({ iova: 0x10_0000, size: 0 }), Errno.EINVAL],
    ["UNMAP_DMA: splits a mapping", "c", VfioIoctl.IOMMU_UNMAP_DMA, U.dmaUnmap({ iova: 0x10_0000, size: 0x1000 }), Errno.EINVAL],
    ["UNMAP_DMA: wraps", "c", VfioIoctl.IOMMU_UNMAP_DMA, U.dmaUnmap({ iova: 0xffff_ffff_ffff_f000n, size: 0x2000 }), Errno.EINVAL],
    ["UNMAP_DMA: ALL with an iova", "c", VfioIoctl.IOMMU_UNMAP_DMA, U.dmaUnmap({ iova: 0x1000, size: 0, flags: 2 }), Errno.EINVAL],
    ["MAP_DMA: overlaps", "c", VfioIoctl.IOMMU_MAP_DMA, U.dmaMap({ vaddr: VA, iova: 0x10_2000, size: 0x4000 }), Errno.EEXIST],
    ["PASID_REQUEST: neither ALLOC nor FREE", "c", VfioIoctl.IOMMU_PASID_REQUEST, U.pasidRequest({ min: 1, max: 9 }), Errno.EINVAL],
    ["PASID_REQUEST: both", "c", VfioIoctl.IOMMU_PASID_REQUEST, U.pasidRequest({ alloc: true, free: true, min: 1, max: 9 }), Errno.EINVAL],
    ["PASID_REQUEST: min above max", "c", VfioIoctl.IOMMU_PASID_REQUEST, U.pasidRequest({ alloc: true, min: 9, max: 1 }), Errno.EINVAL],
    ["NESTING_OP: unknown op", "c", VfioIoctl.IOMMU_NESTING_OP, U.nestingOp(9, new Uint8Array(0)), Errno.EINVAL],
    ["NESTING_OP: bind data argsz short", "c", VfioIoctl.IOMMU_NESTING_OP, U.nestingOp(NestingOp.BIND_PGTBL, encodeGpasidBindData({ argsz: 8, hpasid: 1n })), Errno.EINVAL],
    ["NESTING_OP: bind data of another version", "c", VfioIoctl.IOMMU_NESTING_OP, U.nestingOp(NestingOp.BIND_PGTBL, encodeGpasidBindData({ version: 2, hpasid: 1n })), Errno.EINVAL],
    ["NESTING_OP: bind data cut short", "c", VfioIoctl.IOMMU_NESTING_OP, U.nestingOp(NestingOp.BIND_PGTBL, new Uint8Array(2)), Errno.EFAULT],
    ["NESTING_OP: unbind of a PASID never allocated", "c", VfioIoctl.IOMMU_NESTING_OP, U.nestingOp(NestingOp.UNBIND_PGTBL, encodeGpasidBindData({ hpasid: 4242n })), Errno.ENOENT],
    ["DEVICE_GET_REGION_INFO: no such region", "d", VfioIoctl.DEVICE_GET_REGION_INFO, (() => { const b = rinfo.slice(); RegionInfoLayout.set(b, "index", 99); return b; })(), Errno.EINVAL],
    ["SET_IOMMU again", "c", VfioIoctl.SET_IOMMU, VfioExtension.TYPE1v2_IOMMU, Errno.EINVAL],
    ["SET_IOMMU: a pointer where an integer goes", "c", VfioIoctl.SET_IOMMU, new Uint8Array(4), Errno.EINVAL],
    ["CHECK_EXTENSION: a pointer", "c", VfioIoctl.CHECK_EXTENSION, new Uint8Array(4), Errno.EINVAL],
    ["GROUP_SET_CONTAINER: already set", "g", VfioIoctl.GROUP_SET_CONTAINER, U.fdArg(3), Errno.EINVAL],
    ["GROUP_SET_CONTAINER: short pointer", "g", VfioIoctl.GROUP_SET_CONTAINER, new Uint8Array(3), Errno.EFAULT],
    ["GROUP_UNSET_CONTAINER with a device open", "g", VfioIoctl.GROUP_UNSET_CONTAINER, null, Errno.EBUSY],
    ["GROUP_GET_DEVICE_FD: no NUL", "g", VfioIoctl.GROUP_GET_DEVICE_FD, new TextEncoder().encode("nic0"), Errno.EFAULT],
    ["GROUP_GET_DEVICE_FD: no such device", "g", VfioIoctl.GROUP_GET_DEVICE_FD, U.cString("nic9"), Errno.ENODEV],
    ["an unknown request on a container", "c", 0x3b7e, null, Errno.ENOTTY],
    ["an unknown request on a group", "g", 0x3b70, null, Errno.ENOTTY],
    ["an unknown request on a device", "d", 0x3b71, null, Errno.ENOTTY],
  );

  it.each(cases)("%s", (_name, f, cmd, arg, errno) => {
    const r = live();
    const before = r.state();
    const file: VfioFile = f === "c" ? r.c : f === "g" ? r.g : r.d;
    expect(errnoOf(() => file.ioctl(cmd, arg))).toBe(errno);
    expect(r.state()).toEqual(before);
  });
});

describe("random bytes at every VFIO ioctl", () => {
  it("give a result or a KernelError, never anything else, and keep the books straight", () => {
    const cmds = [...Object.values(VfioIoctl), 0x3b7f];
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.constantFrom<"c" | "g" | "d">("c", "g", "d"), fc.constantFrom(...cmds), fc.oneof(fc.uint8Array({ maxLength: 96 }), fc.integer({ min: -2, max: 12 }), fc.constant(null))), { maxLength: 12 }),
        (calls) => {
          const r = live();
          for (const [f, cmd, arg] of calls) {
            const file: VfioFile = f === "c" ? r.c : f === "g" ? r.g : r.d;
            try {
              file.ioctl(cmd, arg);
            } catch (e) {
              if (!(e instanceof KernelError)) throw e;
            }
            // Pinned pages are exactly the mapped ones, and charged.
            const mapped = r.c.container.mappings.reduce((n, m) => n + m.size / 4096, 0);
            expect(r.user.lockedBytes).toBe(mapped * 4096);
          }
          r.user.exit();
          r.h.kernel.scheduler.runUntilIdle();
          expect([r.user.lockedBytes, r.h.mock.pasidEntries.size, r.user.openFiles]).toEqual([0, 0, 0]);
        },
      ),
      { numRuns: 60 },
    );
  }, 60_000);
});

describe("random reads and writes of a device file's regions", () => {
  it("give bytes, a count or a KernelError, and the fault and response rings stay within their entries", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.tuple(
            fc.boolean(),
            // The fault (9) and response (10) regions and their header words and ring starts most of the time.
            fc.oneof(fc.constantFrom(9, 10), fc.integer({ min: 0, max: 11 })),
            fc.oneof(fc.constantFrom(0, 4, 16, 4096, 4096 + 24), fc.integer({ min: -8, max: 9000 })),
            fc.oneof(fc.uint8Array({ minLength: 4, maxLength: 4 }), fc.uint8Array({ minLength: 0, maxLength: 40 })),
          ),
          { maxLength: 20 },
        ),
        (ops) => {
          const r = live();
          const faults = r.d.device.faults;
          if (faults === null) throw new Error("a vfio-pci device has fault regions");
          for (const [write, index, at, bytes] of ops) {
            const offset = index * 2 ** 40 + at;
            try {
              if (write) r.d.pwrite(offset, bytes);
              else r.d.pread(offset, Math.max(1, bytes.length));
            } catch (e) {
              if (!(e instanceof KernelError)) throw e;
            }
            const dv = (b: Uint8Array, o: number) => new DataView(b.buffer).getUint32(o, true);
            // tail (fault ring) and head/tail (response ring) always name an entry.
            expect(dv(faults.fault, 0)).toBeLessThan(512);
            expect(dv(faults.response, 0)).toBeLessThan(512);
            expect(dv(faults.response, 16)).toBeLessThan(512);
          }
        },
      ),
      { numRuns: 80 },
    );
  }, 60_000);
});

