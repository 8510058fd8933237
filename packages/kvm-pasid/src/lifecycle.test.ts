import { asSpid, type Ioasid, Kernel, type Spid } from "@vsva/kernel";
import { FREE_BEFORE_UNBIND_TABLE, IommuStandIn, LifecycleLog, NORMAL_LIFECYCLE_TABLE, VdcmStandIn, VfioStandIn, lifecycleRefColumn, lifecycleTable } from "@vsva/ioasid/testing";
import { describe, expect, it } from "vitest";
import type { KvmPasid } from "./kvm-pasid.js";
import { kvmTableRows, kvmTestHost, startKvm } from "./testing/index.js";

/**
 * The guest IOASID life-cycle tables of the IOASID design (the proposed
 * Documentation/driver-api/ioasid.rst, "Guest IOASID Life Cycle (VT-d
 * Example)"), replayed as `@vsva/ioasid`'s own replay does, with the real
 * KvmPasid in place of its KVM stand-in (VFIO, the IOMMU driver and VDCM stay
 * stand-ins). KVM writes no table rows itself: its rows come from its trace
 * events, so the table shows what KvmPasid did, and the refcount column is
 * the IOASID's count right after KVM's get or put.
 */
function castWithRealKvm(gpasid: Spid) {
  const kernel = new Kernel();
  const host = kvmTestHost(kernel);
  const { ioasid: core } = host;
  const log = new LifecycleLog(core, kernel);
  const mm = { name: "guest mm" };
  const iommu = new IommuStandIn(core, log);
  // KVM starts with the VM, before VFIO has created the set: its block waits on the mm's pending list.
  const kvm = startKvm(host, mm);
  const vfio = new VfioStandIn(core, log, iommu, mm);
  const vdcm = new VdcmStandIn(core, log, vfio.set);
  log.row("KVM, VDCM", "ioasid_register_notifier/_mm()");
  kernel.trace.subscribe((e) => {
    if (e.kind !== "kvm.pasid.install" && e.kind !== "kvm.pasid.remove") return;
    const id = e.ids.hpasid as Ioasid;
    expect(e.refcount).toBe(core.refcount(id));
    for (const r of kvmTableRows(e)) log.row(r.actor, r.action, r.refcount === null ? undefined : id);
  });
  // Steps 2–11: allocate, bind (BIND reaches KVM), program the mdev by SPID.
  const hpasid = vfio.allocPasid();
  vfio.bindGpasid(hpasid, gpasid);
  vdcm.mdevWrite(vfio.set, gpasid);
  return { kernel, host, log, kvm, vfio, vdcm, hpasid };
}

const msr = (pasid: number) => 0x8000_0000 + pasid;

function enqcmdOk(kvm: KvmPasid, gpasid: number): number | null {
  const r = kvm.enqcmd(msr(gpasid));
  return r.ok ? r.hostPasid : null;
}

describe("the normal guest life cycle with the real KVM", () => {
  it("reproduces the table row for row, refcounts 1, 2, 3, 4, 3, 2, 1, 0, reclaimed, then 1", () => {
    const gpasid = asSpid(101);
    const c = castWithRealKvm(gpasid);
    // ENQCMD with the guest PASID reaches the host PASID through KVM's table in memory while bound.
    expect(enqcmdOk(c.kvm, gpasid)).toBe(c.hpasid);
    c.log.row("GUEST", "-------- GUEST STARTS DMA --------");
    c.log.row("GUEST", "-------- GUEST STOPS DMA --------");
    c.vdcm.mdevClear(c.vfio.set, gpasid);
    c.vfio.unbindGpasid(c.hpasid);
    expect(enqcmdOk(c.kvm, gpasid)).toBeNull();
    c.vfio.freePasid(c.hpasid);
    c.kernel.scheduler.drain();
    c.log.row("", "-------- New Life Cycle Begin --------");
    c.vfio.allocPasid();
    const rows = [...c.log.rows];
    expect(lifecycleRefColumn(rows)).toEqual([1, 2, 3, 4, 3, 2, 1, 0, "reclaimed", 1]);
    expect(lifecycleTable(rows)).toEqual(NORMAL_LIFECYCLE_TABLE);
    // KVM holds nothing and its structure is back to the two directory pages.
    expect(c.kvm.references).toBe(0);
    expect(c.kvm.pages).toBe(2);
  });
});

describe("free before unbind with the real KVM", () => {
  it("reproduces the exception table: KVM's FREE handler updates the table and puts in order (3), the late unbind fails", () => {
    const gpasid = asSpid(101);
    const c = castWithRealKvm(gpasid);
    c.log.restart(13);
    c.log.row("GUEST", "-------- GUEST STARTS DMA --------");
    c.log.row("GUEST", "-------- *GUEST MISBEHAVES!!!* --------");
    c.vfio.freePasid(c.hpasid);
    // KVM's update is the one in-order completion: the translation is gone before free() returns.
    expect(enqcmdOk(c.kvm, gpasid)).toBeNull();
    while (c.kernel.scheduler.step()) {
      // VDCM's queued clear, then the IOMMU's teardown
    }
    c.vfio.unbindGpasid(c.hpasid);
    const rows = [...c.log.rows];
    expect(lifecycleTable(rows)).toEqual(FREE_BEFORE_UNBIND_TABLE);
    expect(lifecycleRefColumn(rows)).toEqual([3, 2, 1, 0, "reclaimed"]);
    expect(c.kvm.references).toBe(0);
    expect(c.kvm.readTable().size).toBe(0);
  });

  it("VM teardown before FREE and UNBIND drops KVM's reference; the rest of the life cycle still reclaims", () => {
    const c = castWithRealKvm(asSpid(101));
    expect(c.host.ioasid.refcount(c.hpasid)).toBe(4);
    c.kvm.destroy();
    expect(c.host.ioasid.refcount(c.hpasid)).toBe(3);
    expect(c.host.pool.inUse).toBe(0);
    c.vfio.freePasid(c.hpasid);
    c.kernel.scheduler.drain();
    expect(c.host.ioasid.state(c.hpasid)).toBe("IDLE");
  });
});
