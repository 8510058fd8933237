import { describe, expect, it } from "vitest";
import { Errno, Kernel, asIoasid, errnoName, isKernelError } from "@vsva/kernel";
import { errnoOf } from "@vsva/kernel/testing";
import { GstsReg, RegOffset, VcmdCommand, VcmdStatus, type VtdTrap, readReg } from "@vsva/iommu-hw";
import { IoasidCore, type IoasidSet } from "@vsva/ioasid";
import { testHost } from "./test-host.js";

/**
 * The host side of a guest's virtual command interface: a VMM that answers
 * ALLOC/FREE PASID from the VM's IOASID set on the host (quota `quota`), as
 * the 2020 vSVA QEMU series turns a VCMD into a VFIO PASID allocation.
 */
function hostAllocator(quota: number): { host: IoasidCore; set: IoasidSet; trap: VtdTrap; answers: string[] } {
  const k = new Kernel();
  const host = new IoasidCore({ scheduler: k.scheduler, trace: k.trace, faults: k.faults, log: k.log });
  const set = host.allocSet("vm1", quota, "none");
  const answers: string[] = [];
  const trap: VtdTrap = (e) => {
    if (e.kind !== "vcmd") return "pass";
    try {
      if (e.cmd === VcmdCommand.ALLOC_PASID) {
        const id = host.alloc(set, 1, 0xf_ffff);
        answers.push(`alloc ${id}`);
        return { status: VcmdStatus.SUCCESS, result: id };
      }
      if (e.cmd === VcmdCommand.FREE_PASID) {
        host.free(set, asIoasid(e.operand));
        answers.push(`free ${e.operand}`);
        return { status: VcmdStatus.SUCCESS };
      }
    } catch (err) {
      if (!isKernelError(err)) throw err;
      answers.push(`refused ${e.cmd}: ${errnoName(err.errno)}`);
      return { status: VcmdStatus.NO_PASID_OR_INVALID };
    }
    return "pass";
  };
  return { host, set, trap, answers };
}

function idsIn(core: IoasidCore, set: IoasidSet): number {
  let n = 0;
  core.setForEachIoasid(set, () => n++);
  return n;
}

const vIommu = { cachingMode: true, virtualCommand: true } as const;

describe("the guest's PASID allocator behind the virtual command interface", () => {
  it("is registered with the guest's IOASID layer on a vIOMMU, and every guest PASID is one the host allocated", () => {
    const hv = hostAllocator(8);
    const g = testHost({ ...vIommu, trap: hv.trap });
    expect(g.ioasid.customAllocatorActive).toBe(true);
    expect(g.drv.vcmdAllocator).not.toBeNull();
    const set = g.ioasid.allocSet("guest-drv", 8, "none");
    const a = g.ioasid.alloc(set, 1, 0xf_ffff);
    const b = g.ioasid.alloc(set, 1, 0xf_ffff);
    expect(hv.answers).toEqual([`alloc ${a}`, `alloc ${b}`]);
    expect(idsIn(hv.host, hv.set)).toBe(2);
    g.ioasid.free(set, a);
    expect(hv.answers.at(-1)).toBe(`free ${a}`);
    expect(idsIn(hv.host, hv.set)).toBe(1);
  });

  it("when the host has no PASID left, the guest's allocation fails with ENOSPC (VCRSP.SC 2) and holds nothing", () => {
    const hv = hostAllocator(1);
    const g = testHost({ ...vIommu, trap: hv.trap });
    const set = g.ioasid.allocSet("guest-drv", 8, "none");
    g.ioasid.alloc(set, 1, 0xf_ffff);
    expect(errnoOf(() => g.ioasid.alloc(set, 1, 0xf_ffff))).toBe(Errno.ENOSPC);
    expect(hv.answers.at(-1)).toBe(`refused ${VcmdCommand.ALLOC_PASID}: ENOSPC`);
    expect(idsIn(g.ioasid, set)).toBe(1);
  });

  it("maps any other status to ENODEV and refuses a range the interface cannot serve with EINVAL", () => {
    const g = testHost({ ...vIommu, trap: (e) => (e.kind === "vcmd" ? { status: VcmdStatus.UNDEFINED_COMMAND } : "pass") });
    const set = g.ioasid.allocSet("guest-drv", 8, "none");
    expect(errnoOf(() => g.ioasid.alloc(set, 1, 100))).toBe(Errno.ENODEV);
    const a = g.drv.vcmdAllocator;
    expect(a).not.toBeNull();
    expect(errnoOf(() => a?.alloc(0, 100))).toBe(Errno.EINVAL);
    expect(errnoOf(() => a?.alloc(1, 2 ** 20))).toBe(Errno.EINVAL);
  });

  it("is not registered on a host unit (no caching mode) nor on a vIOMMU without the virtual command interface", () => {
    const hv = hostAllocator(8);
    for (const opts of [{ virtualCommand: true, trap: hv.trap }, { cachingMode: true }]) {
      const g = testHost(opts);
      expect([g.ioasid.customAllocatorActive, g.drv.vcmdAllocator]).toEqual([false, null]);
    }
    expect(hv.answers).toEqual([]);
  });

  it("is unregistered at driver teardown; while guest PASIDs are outstanding it stays (EBUSY, logged) until they are freed", () => {
    const hv = hostAllocator(8);
    const g = testHost({ ...vIommu, trap: hv.trap });
    const set = g.ioasid.allocSet("guest-drv", 8, "none");
    const a = g.ioasid.alloc(set, 1, 0xf_ffff);
    g.drv.shutdown();
    expect(g.ioasid.customAllocatorActive).toBe(true);
    g.ioasid.free(set, a);
    expect(idsIn(hv.host, hv.set)).toBe(0);
    g.drv.init();
    g.drv.shutdown();
    expect([g.ioasid.customAllocatorActive, g.drv.vcmdAllocator]).toEqual([false, null]);
    // Back to the guest's own default allocator: no virtual command any more.
    const before = hv.answers.length;
    g.ioasid.alloc(set, 1, 0xf_ffff);
    expect(hv.answers.length).toBe(before);
  });

  it("cannot take over while the guest's default allocator has IDs out (EAGAIN): the unit is not brought up", () => {
    const hv = hostAllocator(8);
    const g = testHost({ ...vIommu, trap: hv.trap }, false);
    const set = g.ioasid.allocSet("early", 8, "none");
    g.ioasid.alloc(set, 1, 10);
    const live = g.pages.stats.livePages;
    expect(errnoOf(() => g.drv.init())).toBe(Errno.EAGAIN);
    expect(GstsReg.get(readReg(g.unit, RegOffset.GSTS, GstsReg), "TES")).toBe(0);
    expect([g.pages.stats.livePages, g.ioasid.customAllocatorActive, hv.answers]).toEqual([live, false, []]);
  });
});
