import { asSpid, type Ioasid, Kernel, type Spid } from "@vsva/kernel";
import { IommuStandIn, LifecycleLog, type LifecycleRow, VdcmStandIn, VfioStandIn } from "@vsva/ioasid/testing";
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

const table = (rows: readonly LifecycleRow[]) => rows.map((r) => [r.step, r.actor, r.action, r.refcount]);
const refColumn = (rows: readonly LifecycleRow[]) =>
  rows.flatMap<number | string>((r) => (r.action === "Reclaimed" ? ["reclaimed"] : r.refcount === null ? [] : [r.refcount]));
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
    expect(refColumn(rows)).toEqual([1, 2, 3, 4, 3, 2, 1, 0, "reclaimed", 1]);
    expect(table(rows)).toEqual([
      [1, "KVM, VDCM", "ioasid_register_notifier/_mm()", null],
      [2, "VFIO", "ioasid_alloc()", 1],
      [3, "VFIO", "bind_gpasid()", null],
      [4, "IOMMU", "iommu_bind()->ioasid_get()", 2],
      [5, "IOASID", "ioasid_notify(BIND)", null],
      [6, "KVM", "-> ioasid_get()", 3],
      [7, "KVM", "-> vmcs_update_atomic()", null],
      [8, "VDCM", "mdev_write(gpasid)", null],
      [9, "VDCM", "hpasid=", null],
      [10, "VDCM", "find_by_spid(gpasid)", 4],
      [11, "VDCM", "dev_write(hpasid)", null],
      [12, "GUEST", "-------- GUEST STARTS DMA --------", null],
      [13, "GUEST", "-------- GUEST STOPS DMA --------", null],
      [14, "VDCM", "mdev_clear(gpasid)", null],
      [15, "VDCM", "dev_clear(hpasid)", null],
      [16, "VDCM", "ioasid_put()", 3],
      [17, "VFIO", "unbind_gpasid()", null],
      [18, "IOMMU", "iommu_unbind()", null],
      [19, "IOASID", "ioasid_notify(UNBIND)", null],
      [20, "KVM", "-> vmcs_update_atomic()", null],
      [21, "KVM", "-> ioasid_put()", 2],
      [22, "VFIO", "ioasid_free()", null],
      [23, "IOASID", "mark_free_pending", null],
      [24, "IOASID", "ioasid_notify(FREE)", null],
      [25, "IOMMU", "iommu_nb_handler(FREE)", null],
      [26, "VFIO", "ioasid_free() returns", 1],
      [27, "IOMMU", "teardown_pasid_wk()", null],
      [28, "IOMMU", "ioasid_put()", 0],
      [29, "IOASID", "Reclaimed", null],
      [30, "", "-------- New Life Cycle Begin --------", null],
      [31, "VFIO", "ioasid_alloc()", 1],
    ]);
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
    expect(table(rows)).toEqual([
      [13, "GUEST", "-------- GUEST STARTS DMA --------", null],
      [14, "GUEST", "-------- *GUEST MISBEHAVES!!!* --------", null],
      [15, "VFIO", "ioasid_free()", null],
      [16, "IOASID", "mark_free_pending", null],
      [17, "IOASID", "ioasid_notify(FREE)", null],
      [18, "KVM", "kvm_nb_handler(FREE)", null],
      [19, "KVM", "vmcs_update_atomic()", null],
      [20, "KVM", "ioasid_put_locked()", 3],
      [21, "VDCM", "vdcm_nb_handler(FREE)", null],
      [22, "IOMMU", "iommu_nb_handler(FREE)", null],
      [23, "VFIO", "ioasid_free() returns", 2],
      [24, "VDCM", "vdev_clear_wk(hpasid)", null],
      [25, "VDCM", "ioasid_put()", 1],
      [26, "IOMMU", "teardown_pasid_wk()", null],
      [27, "IOMMU", "ioasid_put()", 0],
      [28, "IOASID", "Reclaimed", null],
      [29, "VFIO", "unbind_gpasid()", null],
      [30, "IOMMU", "iommu_unbind()->ioasid_find() fails: -ENOENT", null],
    ]);
    expect(refColumn(rows)).toEqual([3, 2, 1, 0, "reclaimed"]);
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
