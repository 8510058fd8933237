import { describe, expect, it } from "vitest";
import { Errno, Kernel, KernelError } from "@vsva/kernel";
import { GstsReg, RegOffset, RtaddrReg, SparseMemory, VtdUnit, readReg } from "@vsva/iommu-hw";
import { IoasidCore } from "@vsva/ioasid";
import { PageAllocator } from "@vsva/iommu-core";
import { IntelIommu } from "./driver.js";
import { MiB, POOL_BASE, testHost } from "./test-host.js";

describe("probe and bring-up through the registers", () => {
  it("reads what the unit can do from CAP/ECAP", () => {
    const h = testHost({ pasidBits: 20, mgaw: 57, secondLevelWidths: [39, 48, 57], extendedAccessed: true });
    const c = h.drv.hw.caps;
    expect([c.pasidBits, c.mgaw, c.fl5, c.nesting, c.pageRequests, c.deviceTlb, c.extendedAccessed]).toEqual([20, 57, true, true, true, true, true]);
    expect(c.slWidths).toEqual([39, 48, 57]);
    expect(h.drv.pasidBits).toBe(20);
    expect(h.drv.capable("nesting")).toBe(true);
  });

  it("latches a scalable-mode root table, enables queued invalidation, then translation", () => {
    const h = testHost();
    const gsts = new Uint32Array([h.unit.mmioRead32(RegOffset.GSTS)]);
    expect([GstsReg.get(gsts, "RTPS"), GstsReg.get(gsts, "QIES"), GstsReg.get(gsts, "TES")]).toEqual([1, 1, 1]);
    const v = readReg(h.unit, RegOffset.RTADDR, RtaddrReg);
    expect(RtaddrReg.get(v, "TTM")).toBe(1);
    expect(h.pages.owns(RtaddrReg.getAddr(v, "RTA"))).toBe(true);
  });

  it("refuses a unit without second-level translation (ENODEV) and one that cannot nest is not 'nesting' capable", () => {
    const kernel = new Kernel();
    const mem = new SparseMemory({ addrBits: 46, regions: [{ base: 0, size: 64 * MiB }] });
    const pages = new PageAllocator({ base: POOL_BASE, size: MiB, backing: { zero: () => true }, faults: kernel.faults });
    const ioasid = new IoasidCore({ scheduler: kernel.scheduler, trace: kernel.trace, faults: kernel.faults });
    const unit = new VtdUnit({ mem, secondLevel: false, nesting: false });
    let errno = 0;
    try {
      new IntelIommu({ mmio: unit, mem, pages, kernel, ioasid });
    } catch (e) {
      if (e instanceof KernelError) errno = e.errno;
    }
    expect(errno).toBe(Errno.ENODEV);
    const flat = testHost({ nesting: false });
    expect(flat.drv.capable("nesting")).toBe(false);
  });

  it("gives every page back at shutdown", () => {
    const h = testHost();
    expect(h.pages.stats.livePages).toBeGreaterThan(0);
    h.drv.shutdown();
    expect(h.pages.live()).toEqual([]);
    expect(GstsReg.get(new Uint32Array([h.unit.mmioRead32(RegOffset.GSTS)]), "TES")).toBe(0);
  });
});
