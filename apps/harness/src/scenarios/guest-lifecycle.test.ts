import { describe, expect, it } from "vitest";
import type { TimelineRow } from "../timeline.js";
import { crashSweep } from "../sweep.js";
import { guestFreeBeforeUnbind, guestLifecycle } from "./guest-lifecycle.js";

/** The table as `actor: action` lines, with the refcount where the row has one. */
const lines = (rows: readonly TimelineRow[]): string[] => rows.map((r) => `${r.actor}: ${r.text}${r.refcount === undefined ? "" : ` [${r.refcount}]`}`);

/** The Ref column as the ioasid.rst tables print it. */
const refs = (rows: readonly TimelineRow[]): string => rows.flatMap((r) => (r.text === "Reclaimed" ? ["reclaimed"] : r.refcount === undefined ? [] : [String(r.refcount)])).join(",");

// The normal table of ioasid.rst ("Guest IOASID Life Cycle (VT-d Example)"), as the guest run must make it: every
// subscriber's rows in their place (KVM's and the VDCM's registrations, gets and puts, the IOMMU driver's bind and unbind).
const NORMAL = [
  "VDCM: ioasid_register_notifier_mm()",
  "KVM: ioasid_register_notifier_mm()",
  "VFIO: ioasid_alloc() [1]",
  "VFIO: bind_gpasid()",
  "IOMMU: iommu_bind()->ioasid_get() [2]",
  "IOASID: ioasid_notify(BIND)",
  "KVM: -> ioasid_get() [3]",
  "KVM: -> vmcs_update_atomic()",
  "VDCM: mdev_write(gpasid)",
  "VDCM: hpasid=",
  "VDCM: find_by_spid(gpasid) [4]",
  "VDCM: dev_write(hpasid)",
  "GUEST: STARTS DMA",
  "GUEST: STOPS DMA",
  "VDCM: mdev_clear(gpasid)",
  "VDCM: dev_clear(hpasid)",
  "VDCM: ioasid_put() [3]",
  "VFIO: unbind_gpasid()",
  "IOMMU: iommu_unbind()",
  "IOASID: ioasid_notify(UNBIND)",
  "KVM: -> vmcs_update_atomic()",
  "KVM: -> ioasid_put() [2]",
  "IOMMU: ioasid_put() [1]",
  "VFIO: ioasid_free() [0]",
  "IOASID: mark_free_pending",
  "IOASID: ioasid_notify(FREE)",
  "IOASID: Reclaimed",
  "GUEST: New Life Cycle Begin",
  "VFIO: ioasid_alloc() [1]",
];

// The exception table (free before unbind), from its step 13: FREE reaches KVM (CPU), the VDCM (DEVICE), the IOMMU
// driver (IOMMU) in that order; KVM's put is in the handler, the VDCM's and the IOMMU's in their work items.
const FREE_BEFORE_UNBIND = [
  "GUEST: STARTS DMA",
  "GUEST: *MISBEHAVES!!!*",
  "VFIO: ioasid_free()",
  "IOASID: mark_free_pending",
  "IOASID: ioasid_notify(FREE)",
  "KVM: kvm_nb_handler(FREE)",
  "KVM: vmcs_update_atomic()",
  "KVM: ioasid_put_locked() [3]",
  "VDCM: vdcm_nb_handler(FREE)",
  "IOMMU: iommu_nb_handler(FREE)",
  "VFIO: ioasid_free() returns [2]",
  "VDCM: vdev_clear_wk(hpasid)",
  "VDCM: ioasid_put() [1]",
  "IOMMU: teardown_pasid_wk()",
  "IOMMU: ioasid_put() [0]",
  "IOASID: Reclaimed",
  "VFIO: unbind_gpasid()",
  "IOMMU: iommu_unbind()->ioasid_find() fails: -ENOENT",
];

describe("guest-lifecycle: the ioasid.rst normal table from a real guest", () => {
  // Seeds 1 and 42 draw SPID guest PASIDs, seed 2 the host's own numbers; each different slots, lengths and buffers.
  it.each([1, 2, 42])("(seed %i) has every row of every subscriber in the table's order, and the Ref column reads 1,2,3,4,3,2,1,0,reclaimed before the new life cycle's 1", (seed) => {
    const r = guestLifecycle.run({ seed, platform: "vtd" });
    expect(r.violations).toEqual([]);
    expect(lines(r.rows)).toEqual(NORMAL);
    const cut = r.rows.findIndex((x) => x.text === "New Life Cycle Begin");
    expect(refs(r.rows.slice(0, cut))).toBe("1,2,3,4,3,2,1,0,reclaimed");
    expect(refs(r.rows.slice(cut))).toBe("1");
    expect(r.columns).toEqual(["VFIO", "IOMMU", "KVM", "VDCM", "IOASID"]);
  }, 30_000);
});

describe("guest-free-before-unbind: the ioasid.rst exception table from a real guest", () => {
  it.each([1, 2, 42])("(seed %i) has FREE seen KVM, VDCM, IOMMU, the Ref column 3,2,1,0,reclaimed, and the late unbind failing with -ENOENT last", (seed) => {
    const r = guestFreeBeforeUnbind.run({ seed, platform: "vtd" });
    expect(r.violations).toEqual([]);
    expect(lines(r.rows)).toEqual(FREE_BEFORE_UNBIND);
    expect(refs(r.rows)).toBe("3,2,1,0,reclaimed");
  }, 30_000);
});

describe("the crash sweep of both guest tables", () => {
  // From the VM's start to the guest's last step: each is a kill point (the free-before-unbind run has its misbehaving free besides).
  it.each([
    [guestLifecycle.name, guestLifecycle, 9],
    [guestFreeBeforeUnbind.name, guestFreeBeforeUnbind, 10],
  ] as const)("%s: VM 1 killed after every step in turn, each run clean, nothing leaked", (_name, s, kills) => {
    const r = crashSweep(s.def, "vtd");
    expect(r.runs.filter((x) => x.violations.length > 0)).toEqual([]);
    expect(r.ok).toBe(true);
    expect(r.runs.filter((x) => x.what.startsWith("VM 1's VMM process is killed")).length).toBeGreaterThanOrEqual(kills);
  }, 60_000);
});
