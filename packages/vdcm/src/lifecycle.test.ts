import { asSpid, asVmId, type Ioasid, type Spid } from "@vsva/kernel";
import { FREE_BEFORE_UNBIND_TABLE, IommuStandIn, LifecycleLog, NORMAL_LIFECYCLE_TABLE, lifecycleRefColumn, lifecycleTable } from "@vsva/ioasid/testing";
import { KvmPasid } from "@vsva/kvm-pasid";
import { PagePool, SparseMemory } from "@vsva/pgtable";
import { describe, expect, it } from "vitest";
import { Idxd } from "@vsva/idxd";
import { allocPasid, freePasid, type HostDriverContext, openMdev, type VdcmRigOptions, vdcmRig, vmmUser } from "./testing/index.js";

/**
 * The guest IOASID life-cycle tables of the IOASID design (the proposed
 * Documentation/driver-api/ioasid.rst, "Guest IOASID Life Cycle (VT-d
 * Example)", vSVA series on the iommu list, 2020), replayed as
 * `@vsva/ioasid`'s own replay does, with the real VDCM, the real KVM
 * (`@vsva/kvm-pasid`, the CPU-priority subscriber), the real VFIO (its
 * PASID_REQUEST allocates and frees from the VM's set) and the real IOASID
 * core. The IOMMU driver's column stays `@vsva/ioasid`'s stand-in here (the
 * harness replays the tables with the VT-d driver too). The VDCM and KVM
 * write no rows themselves: their rows come from their trace events, so the
 * table shows what they did, and at each VDCM row the hardware WQ is
 * checked: it holds the host PASID from step 11 until the reference is put,
 * never after.
 */
function cast(gpasid: Spid, opts: VdcmRigOptions) {
  const r = vdcmRig(opts);
  const core = r.ioasid;
  const log = new LifecycleLog(core, r.kernel);
  const user = vmmUser("vm1");
  const iommu = new IommuStandIn(core, log);
  // KVM starts with the VM, before VFIO has made the set: its notifier waits on the mm's pending list.
  const mem = new SparseMemory({ addrBits: 46, regions: [{ base: 0, size: 8 << 20 }] });
  const pages = new PagePool(mem, 0x10_0000, 4 << 20);
  const kvm = new KvmPasid({ vm: asVmId(1), mm: user.mm, ioasid: core, mem, pages, trace: r.kernel.trace, faults: r.kernel.faults, log: r.kernel.log });
  const hostWq = r.wqs[0];
  if (hostWq === undefined) throw new Error("no WQ");
  // The VDCM's notifier is registered by the VM's mm when its first mdev is made, before VFIO has the VM's set.
  const mdev = r.vdcm.createMdev("mdev0", hostWq, { vm: asVmId(1), mm: user.mm });
  log.row("KVM, VDCM", "ioasid_register_notifier/_mm()");
  const vm = openMdev(r.vfio, user, mdev);
  // Whether the hardware WQ still held the ID at the latest put: the VDCM's own put (the one just before its
  // clear event) must come after the WQ is clear, never before (no lazy clearing).
  let lastPut: { readonly id: number | undefined; readonly wqHeld: boolean } | null = null;
  r.kernel.trace.subscribe((e) => {
    if (e.kind === "ioasid.put") lastPut = { id: e.ids.ioasid, wqHeld: hostWq.pasid !== null && hostWq.pasid === e.ids.ioasid };
    if (e.kind === "kvm.pasid.install") {
      const id = e.ids.hpasid as Ioasid;
      log.row("KVM", "-> ioasid_get()", id);
      log.row("KVM", "-> vmcs_update_atomic()");
    } else if (e.kind === "kvm.pasid.remove") {
      const id = e.ids.hpasid as Ioasid;
      if (e.payload.cause === "FREE") {
        log.row("KVM", "kvm_nb_handler(FREE)");
        log.row("KVM", "vmcs_update_atomic()");
        log.row("KVM", "ioasid_put_locked()", id);
      } else {
        log.row("KVM", "-> vmcs_update_atomic()");
        log.row("KVM", "-> ioasid_put()", id);
      }
    } else if (e.kind === "vdcm.program") {
      const id = e.ids.hpasid as Ioasid;
      expect(hostWq.pasid).toBe(id);
      log.row("VDCM", "hpasid=");
      log.row("VDCM", "find_by_spid(gpasid)", id);
      expect(e.refcount).toBe(core.refcount(id));
      log.row("VDCM", "dev_write(hpasid)");
    } else if (e.kind === "vdcm.free-notified") {
      expect(hostWq.pasid).toBe(e.ids.hpasid);
      log.row("VDCM", "vdcm_nb_handler(FREE)");
    } else if (e.kind === "vdcm.clear") {
      const id = e.ids.hpasid as Ioasid;
      expect(hostWq.pasid).toBeNull();
      expect(lastPut).toEqual({ id, wqHeld: false });
      log.row("VDCM", e.payload.cause === "FREE" ? "vdev_clear_wk(hpasid)" : "dev_clear(hpasid)");
      log.row("VDCM", "ioasid_put()", id);
      expect(e.refcount).toBe(core.refcount(id));
    }
  });
  // Steps 2–11: VFIO allocates, binds (BIND reaches KVM), the guest programs its mdev's WQ.
  const hpasid = allocPasid(vm.container) as Ioasid;
  log.row("VFIO", "ioasid_alloc()", hpasid);
  const set = core.findSetByToken(user.mm);
  if (set === null) throw new Error("VFIO made no set");
  log.row("VFIO", "bind_gpasid()");
  iommu.bind(set, hpasid, gpasid);
  vm.guest.enablePasid();
  log.row("VDCM", "mdev_write(gpasid)");
  vm.guest.programWq(gpasid);
  return { ...r, log, iommu, kvm, vm, hostWq, hpasid, set };
}

/** idxd's probe with every WQ of type "mdev": the real host driver's WQ handles. */
function idxdDriver(ctx: HostDriverContext): readonly Idxd["wqs"][number][] {
  const config = { wqs: ctx.wqs.map((w) => ({ mode: w.mode, size: w.size, type: "mdev" as const })) };
  return Idxd.probe({ kernel: ctx.kernel, core: ctx.core, iommuDev: ctx.parent, hw: ctx.dsa, config }).wqs;
}

const HOST_DRIVERS: readonly (readonly [string, VdcmRigOptions])[] = [
  ["a host WQ driven through the registers", {}],
  ["idxd's WQ handles", { hostDriver: idxdDriver }],
];


describe.each(HOST_DRIVERS)("the normal guest life cycle with the real VDCM, over %s", (_label, opts) => {
  it("reproduces the table row for row, refcounts 1, 2, 3, 4, 3, 2, 1, 0, reclaimed, then 1", () => {
    const c = cast(asSpid(101), opts);
    expect(c.hostWq.pasid).toBe(c.hpasid);
    // While bound, a guest ENQCMD with guest PASID 101 reaches the host PASID through KVM's table.
    expect(c.kvm.enqcmd(0x8000_0000 + 101)).toMatchObject({ ok: true, hostPasid: c.hpasid });
    c.log.row("GUEST", "-------- GUEST STARTS DMA --------");
    c.log.row("GUEST", "-------- GUEST STOPS DMA --------");
    c.log.row("VDCM", "mdev_clear(gpasid)");
    c.vm.guest.disableWq();
    c.log.row("VFIO", "unbind_gpasid()");
    c.iommu.unbind(c.set, c.hpasid);
    c.log.row("VFIO", "ioasid_free()");
    freePasid(c.vm.container, c.hpasid);
    c.log.row("VFIO", "ioasid_free() returns", c.hpasid);
    c.kernel.scheduler.drain();
    c.log.row("", "-------- New Life Cycle Begin --------");
    c.log.row("VFIO", "ioasid_alloc()", allocPasid(c.vm.container) as Ioasid);
    const rows = [...c.log.rows];
    expect(lifecycleRefColumn(rows)).toEqual([1, 2, 3, 4, 3, 2, 1, 0, "reclaimed", 1]);
    expect(lifecycleTable(rows)).toEqual(NORMAL_LIFECYCLE_TABLE);
    expect(c.hostWq.pasid).toBeNull();
    expect(c.kvm.references).toBe(0);
  });
});

describe.each(HOST_DRIVERS)("free before unbind with the real VDCM, over %s", (_label, opts) => {
  it("reproduces the exception table: the VDCM's FREE handler queues the clearing (21), the work clears the WQ (24) and puts (-> 1), the late unbind fails", () => {
    const c = cast(asSpid(101), opts);
    c.log.restart(13);
    c.log.row("GUEST", "-------- GUEST STARTS DMA --------");
    c.log.row("GUEST", "-------- *GUEST MISBEHAVES!!!* --------");
    c.log.row("VFIO", "ioasid_free()");
    freePasid(c.vm.container, c.hpasid);
    c.log.row("VFIO", "ioasid_free() returns", c.hpasid);
    // Until the work runs the hardware WQ still holds the PASID, and the reference keeps it from being reallocated.
    expect(c.hostWq.pasid).toBe(c.hpasid);
    expect(c.ioasid.state(c.hpasid)).toBe("FREE_PENDING");
    while (c.kernel.scheduler.step()) {
      // the VDCM's queued clear, then the IOMMU's teardown
    }
    c.log.row("VFIO", "unbind_gpasid()");
    c.iommu.unbind(c.set, c.hpasid);
    const rows = [...c.log.rows];
    expect(lifecycleTable(rows)).toEqual(FREE_BEFORE_UNBIND_TABLE);
    expect(lifecycleRefColumn(rows)).toEqual([3, 2, 1, 0, "reclaimed"]);
    expect(c.hostWq.pasid).toBeNull();
    expect(c.vm.guest.wqEnabled()).toBe(false);
    expect(c.kvm.references).toBe(0);
  });
});
