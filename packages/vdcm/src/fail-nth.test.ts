import { fileURLToPath } from "node:url";
import { asSpid, asVmId, type Ioasid } from "@vsva/kernel";
import { FaultCoverage, sourceFaultPoints, tolerate } from "@vsva/kernel/testing";
import { IOASID_FAULT_POINTS } from "@vsva/ioasid";
import { IOMMU_CORE_FAULT_POINTS } from "@vsva/iommu-core";
import { MOCK_FAULT_POINTS } from "@vsva/iommu-core/testing";
import { VFIO_FAULT_POINTS } from "@vsva/vfio-type1";
import { describe, expect, it } from "vitest";
import { VDCM_FAULT_POINTS } from "./fault-points.js";
import type { VdcmMdev } from "./mdev.js";
import { allocPasid, freePasid, openMdev, type VdcmRig, vdcmRig, vdcmViolations, type VmOnMdev, vmmUser } from "./testing/index.js";

/** The VDCM's invariants at rest (see `vdcmViolations`), as an assertion. */
function checkVdcm(r: VdcmRig): void {
  expect(vdcmViolations(r.vdcm, r.ioasid, r.wqs)).toEqual([]);
}

/**
 * One VM's life with the VDCM, in the style of iommufd_fail_nth: two mdevs
 * (a dedicated and a shared WQ), the VMM opens one, allocates and binds a
 * PASID, the guest programs it, then frees it before unbinding. With the n-th
 * fallible step failing, every step either happens or changes nothing, the
 * invariants hold, and teardown leaves no PASID on any WQ, no IOASID, no
 * notifier and no sub-device.
 */
function run(n: number | null) {
  const r = vdcmRig();
  const user = vmmUser("vm1");
  const target = { vm: asVmId(1), mm: user.mm };
  if (n !== null) r.kernel.faults.failNth(n);
  const m0: VdcmMdev | null = tolerate(() => r.vdcm.createMdev("m0", r.wq(0), target));
  tolerate(() => r.vdcm.createMdev("m2", r.wq(2), target));
  let vm: VmOnMdev | null = null;
  if (m0 !== null) vm = tolerate(() => openMdev(r.vfio, user, m0));
  let programmed = -1;
  if (vm !== null) {
    const v = vm;
    const id = tolerate(() => allocPasid(v.container) as Ioasid);
    const set = r.ioasid.findSetByToken(user.mm);
    if (id !== null && set !== null && tolerate(() => r.ioasid.attachSpid(set, id, asSpid(101))) !== null) {
      programmed = v.guest.programWq(101);
      checkVdcm(r);
      tolerate(() => freePasid(v.container, id));
      checkVdcm(r);
      r.kernel.scheduler.drain();
    }
  }
  const injected = [...r.kernel.faults.injected];
  r.kernel.faults.disarm();
  checkVdcm(r);
  // Teardown: the VMM dies (VFIO releases), the mdevs go.
  user.exit();
  for (const m of r.vdcm.mdevs) r.vdcm.removeMdev(m);
  r.kernel.scheduler.drain();
  for (const w of r.wqs) if (w.mode === "dedicated") expect(w.pasid).toBeNull();
  expect(r.ioasid.allocated).toBe(0);
  expect(r.vdcm.vms).toBe(0);
  expect(r.ioasid.pendingNotifiers(user.mm)).toBe(0);
  expect([...r.core.devices]).toEqual([r.parent]);
  return { injected, faults: r.kernel.faults, programmed };
}

describe("fail-nth over a VM's life with the VDCM", () => {
  it("rolls back whichever fallible step fails and leaves nothing behind", () => {
    expect(run(null)).toMatchObject({ injected: [], programmed: 0 });
    const failed = new Set<string>();
    let n = 1;
    for (; n < 200; n++) {
      const res = run(n);
      if (res.injected.length === 0) break;
      for (const p of res.injected) failed.add(p);
    }
    expect(n).toBeLessThan(200);
    for (const p of VDCM_FAULT_POINTS.points) expect(failed).toContain(p);
  });

  it("fails every declared point in some run and meets none undeclared", () => {
    const cov = new FaultCoverage(VDCM_FAULT_POINTS, [IOMMU_CORE_FAULT_POINTS, MOCK_FAULT_POINTS, IOASID_FAULT_POINTS, VFIO_FAULT_POINTS]);
    for (let n = 1; n < 200; n++) {
      const res = run(n);
      cov.record(res.faults);
      if (res.injected.length === 0) break;
    }
    expect(cov.missing()).toEqual([]);
    expect(cov.undeclared()).toEqual([]);
  });

  it("declares every point its code injects by name", () => {
    const named = sourceFaultPoints(fileURLToPath(new URL(".", import.meta.url)));
    expect(named).toEqual([...VDCM_FAULT_POINTS.points].sort());
  });

  it("a WQ command the hardware refuses is the guest's HW_ERR: the reference taken for it is given back, the WQ holds nothing", () => {
    const r = vdcmRig();
    const user = vmmUser("vm1");
    const m = r.vdcm.createMdev("m0", r.wq(0), { vm: asVmId(1), mm: user.mm });
    const vm = openMdev(r.vfio, user, m);
    const id = allocPasid(vm.container) as Ioasid;
    const set = r.ioasid.findSetByToken(user.mm);
    if (set === null) throw new Error("no set");
    r.ioasid.attachSpid(set, id, asSpid(101));
    r.kernel.faults.failPoint("vdcm.host_wq_cmd");
    expect(vm.guest.programWq(101)).toBe(0x03);
    expect(r.ioasid.refcount(id)).toBe(1);
    expect(r.wq(0).pasid).toBeNull();
    expect(vm.guest.wqEnabled()).toBe(false);
    expect(vm.guest.programWq(101)).toBe(0);
  });
});
