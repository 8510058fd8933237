import { type Ioasid, type Spid, asIoasid, asSpid, asVmId } from "@vsva/kernel";
import type { LifecycleRow } from "@vsva/ioasid/testing";
import { type MdevGuest, openMdev } from "@vsva/vdcm/testing";
import { VfioIoctl } from "@vsva/vfio-type1";
import type { Scenario, ScenarioResult } from "../scenario.js";
import type { TimelineRow } from "../timeline.js";
import { MiB } from "../world/host.js";
import { type HostScenario, type HostScenarioDef, type StepContext, hostScenario, runHostScenario } from "../world/host-scenario.js";
import { LifecycleTable, type LifecycleTableOptions } from "./lifecycle-table.js";
import { createMdev, guestMemmove, plugAccelerator } from "./vdcm-common.js";
import { guestTable } from "./vfio.js";
import { type Vm, allocPasid, bindOp, freePasids, mapGuestRam, startVm, unbindOp, vfioOn } from "./vfio-common.js";
import type { VfioContainerFile } from "@vsva/vfio-type1";

/**
 * The guest IOASID life-cycle tables of the IOASID documentation proposed
 * with the vSVA work (Documentation/driver-api/ioasid.rst in "IOASID
 * extensions for guest SVA", iommu mailing list, 2020), played by the real
 * layers on a host: VFIO (PASID_REQUEST alloc and free, NESTING_OP bind and
 * unbind of the VMM), the IOMMU core and the VT-d driver, KVM
 * (`@vsva/kvm-pasid`, registered by the VM's mm token) and the VDCM
 * (`@vsva/vdcm`, an mdev on a dedicated WQ of the accelerator that idxd
 * drives, programmed by a stand-in guest driver through the mdev's VFIO
 * device file). Every refcount in the table is the IOASID core's at that row.
 */
export const COLUMNS = ["VFIO", "IOMMU", "KVM", "VDCM", "IOASID"] as const;

const RAM = 1 * MiB;
const VM_HOST = 8 * MiB;
const PAGE = 0x1000;

/**
 * The table's rows on the timeline, numbered from 1 like every timeline (the
 * exception table's own numbering, from the normal table's step 13, stays in
 * the log): the guest's marker lines ("GUEST STARTS DMA") are narrative rows
 * of their own actor, spanning the lanes.
 */
export function timelineRows(rows: readonly LifecycleRow[]): TimelineRow[] {
  return rows.map((r, i) => {
    const ref = r.refcount === null ? {} : { refcount: r.refcount };
    const step = i + 1;
    if (r.actor === "" || r.actor === "GUEST") {
      // "-------- GUEST STARTS DMA --------" is the guest's row: "GUEST: STARTS DMA".
      return { step, actor: "GUEST", text: r.action.replace(/^-+\s*|\s*-+$/g, "").replace(/\bGUEST /, ""), ...ref };
    }
    return { step, actor: r.actor, text: r.action, ...ref };
  });
}

/** The Ref column as the ioasid.rst tables print it, "reclaimed" where the ID went back to the pool. */
export function refColumn(rows: readonly LifecycleRow[]): string {
  return rows.flatMap((r) => (r.action === "Reclaimed" ? ["reclaimed"] : r.refcount === null ? [] : [String(r.refcount)])).join(",");
}

interface Cast {
  readonly vm: Vm;
  /** The guest's buffer (two pages, GVA and where the guest maps it). */
  readonly gva: number;
  readonly gpa: number;
  readonly c: VfioContainerFile;
  readonly guest: MdevGuest;
  readonly hpasid: Ioasid;
  readonly gpasid: Spid;
}

/**
 * Steps 1–12 of both tables on the host: the VDCM makes the VM's mdev and
 * KVM starts (both register by the VM's mm token: step 1), the VMM opens the
 * mdev (VFIO makes the VM's set), PASID_REQUEST alloc (2), NESTING_OP bind
 * with the guest PASID (3–7: the VT-d driver's get, BIND, KVM's get and
 * table update), the guest driver writes its PASID into the mdev's WQ config
 * and enables the WQ, through the mdev's device file (8–11), and the guest
 * starts a MEMMOVE through the mdev's portal (12).
 */
function setUpToDma(ctx: StepContext, t: LifecycleTable): Cast {
  const h = ctx.host;
  const vfio = vfioOn(h);
  const gpasid = asSpid(ctx.choose.int("guest PASID", 1, 0xfffff));
  const gva = ctx.choose.int("guest buffer GVA", 0x1_0000_0000, 0x7fff_ffff_0000, { align: 0x1_0000 });
  const gpa = ctx.choose.int("guest buffer GPA", 0x1_0000, 0x7_0000, { align: 0x1_0000 });
  const accel = plugAccelerator(ctx, vfio);
  const vmId = asVmId(1);
  const mm = { vmm: "qemu" };
  const mdev = createMdev(ctx, accel, "mdev0", 0, vmId, mm);
  const vm = startVm(ctx, "qemu", VM_HOST, RAM, vmId, mm);
  const pt = guestTable(vm);
  const onMdev = ctx.step("VMM: opens mdev0: a nesting container (VFIO makes the VM's IOASID set), its group, its device file; MAP_DMA guest RAM", () => {
    const o = openMdev(vfio, vm.user, mdev, vmId);
    mapGuestRam(o.container, vm, 0, RAM);
    return o;
  });
  const c = onMdev.container;
  const hpasid = ctx.step("VMM: PASID_REQUEST alloc", () => {
    const p = asIoasid(allocPasid(c, 1, 0xfffff));
    t.follow(p);
    t.row("VFIO", "ioasid_alloc()", p);
    return p;
  });
  ctx.step(`VMM: NESTING_OP BIND_PGTBL of the guest's table with guest PASID ${gpasid} (the parent dsa0's PASID entry)`, () => {
    pt.map(gva, gpa, 2 * PAGE, { write: true, user: true });
    t.row("VFIO", "bind_gpasid()");
    c.ioctl(VfioIoctl.IOMMU_NESTING_OP, bindOp(hpasid, pt.root, gpasid));
    ctx.bindSpace(hpasid, (va) => {
      const m = pt.lookup(va);
      return m === null ? null : vm.ram.gpaToHpa(m.pa + (va - m.va));
    });
  });
  ctx.step("guest driver: writes its guest PASID into mdev0's WQ config and enables the WQ (region writes to the virtual BAR0); the VDCM programs the host PASID", () => {
    const err = onMdev.guest.programWq(gpasid);
    ctx.expect(err === 0, `ENABLE_WQ succeeds (CMDSTS error 0x${err.toString(16)})`);
    ctx.expect(accel.idxd.wq(0).pasid === (hpasid as number), `the hardware WQCFG holds host PASID ${hpasid} (got ${accel.idxd.wq(0).pasid ?? "none"})`);
  });
  return { vm, gva, gpa, c, guest: onMdev.guest, hpasid, gpasid };
}

/**
 * A host scenario whose timeline is the table: the run's rows are the
 * table's, in its five columns (a failed run, or one whose table was
 * abandoned, keeps the host's own rows).
 */
export function tableScenario(spec: Omit<HostScenarioDef, "body" | "platforms"> & { readonly table?: LifecycleTableOptions; body(ctx: StepContext, t: LifecycleTable): void }): HostScenario {
  const def = (sink: (rows: LifecycleRow[]) => void): HostScenarioDef => ({
    name: spec.name,
    summary: spec.summary,
    title: spec.title,
    ...(spec.at === undefined ? {} : { at: spec.at }),
    // bind_gpasid and ENQCMD: VT-d only.
    platforms: ["vtd"],
    body(ctx) {
      const t = new LifecycleTable(ctx.host, spec.table);
      spec.body(ctx, t);
      const rows = t.close();
      if (!t.abandoned) sink(rows);
    },
  });
  const base = hostScenario(def(() => undefined));
  const run: Scenario["run"] = (opts) => {
    const out: { rows?: LifecycleRow[] } = {};
    const r: ScenarioResult = runHostScenario(
      def((rows) => {
        out.rows = rows;
      }),
      opts,
    );
    return out.rows === undefined ? r : { ...r, columns: COLUMNS, rows: timelineRows(out.rows) };
  };
  return { ...base, run };
}

export const ioasidLifecycle = tableScenario({
  name: "ioasid-lifecycle",
  summary: "ioasid.rst normal guest life cycle with the real VFIO, IOMMU (VT-d), KVM and VDCM: refs 1,2,3,4,3,2,1,0, reclaimed",
  title: "Guest IOASID life cycle (ioasid.rst table, normal order)",
  body(ctx, t) {
    const h = ctx.host;
    const cast = setUpToDma(ctx, t);
    const { vm, c, guest, hpasid } = cast;
    t.row("GUEST", "-------- GUEST STARTS DMA --------");
    guestMemmove(ctx, cast.vm, cast.guest, cast.gva, cast.gpa);
    ctx.step("guest driver: stops DMA and disables its WQ; the VDCM quiesces and clears the hardware WQ, then drops its reference", () => {
      t.row("GUEST", "-------- GUEST STOPS DMA --------");
      const err = guest.disableWq();
      ctx.expect(err === 0, `DISABLE_WQ succeeds (CMDSTS error 0x${err.toString(16)})`);
    });
    ctx.step("VMM: NESTING_OP UNBIND_PGTBL: the driver clears the entry, UNBIND reaches KVM, the driver drops its reference", () => {
      t.row("VFIO", "unbind_gpasid()");
      c.ioctl(VfioIoctl.IOMMU_NESTING_OP, unbindOp(hpasid));
      ctx.unbindSpace(hpasid);
      ctx.expect(vm.kvm.readTable().size === 0, "KVM's table is empty");
    });
    ctx.step("VMM: PASID_REQUEST free: the last reference goes, the PASID is reclaimed", () => {
      t.log.during("VFIO", "ioasid_free()", hpasid, () => freePasids(c, hpasid, hpasid));
      h.settle();
    });
    ctx.step("VMM: a new life cycle begins: PASID_REQUEST alloc", () => {
      t.row("", "-------- New Life Cycle Begin --------");
      const next = asIoasid(allocPasid(c, 1, 0xfffff));
      t.follow(next);
      t.row("VFIO", "ioasid_alloc()", next);
    });
    const rows = t.log.rows;
    const col = refColumn(rows);
    ctx.expect(col === "1,2,3,4,3,2,1,0,reclaimed,1", `refcount column ${col} is the ioasid.rst table's 1,2,3,4,3,2,1,0, reclaimed, then 1`);
  },
});

export const ioasidFreeBeforeUnbind = tableScenario({
  name: "ioasid-free-before-unbind",
  summary: "ioasid.rst exception table with the real VFIO, IOMMU (VT-d), KVM and VDCM: FREE seen CPU, DEVICE, IOMMU; deferred teardown; reclaimed; late unbind fails cleanly",
  title: "Guest IOASID free before unbind (ioasid.rst exception table)",
  body(ctx, t) {
    const h = ctx.host;
    const cast = setUpToDma(ctx, t);
    const { vm, c, hpasid } = cast;
    // Steps 1–12 are identical to the normal table; the exception table starts at 13.
    t.log.restart(13);
    t.row("GUEST", "-------- GUEST STARTS DMA --------");
    guestMemmove(ctx, cast.vm, cast.guest, cast.gva, cast.gpa);
    ctx.step("guest misbehaves: the VMM frees the PASID while it is bound and programmed", () => {
      t.row("GUEST", "-------- *GUEST MISBEHAVES!!!* --------");
      t.row("VFIO", "ioasid_free()");
      freePasids(c, hpasid, hpasid);
      t.row("VFIO", "ioasid_free() returns", hpasid);
      // KVM's update is the one in-order completion of FREE: gone before free returns.
      ctx.require(vm.kvm.readTable().size === 0, "KVM's translation is gone when free returns");
    });
    ctx.step("the work items run: the VDCM's queue clear, then the IOMMU driver's teardown; the PASID is reclaimed", () => {
      h.settle();
      // Until the IOMMU driver's teardown work has run, the PASID entry (and the device TLB) still translate: only then is it unbound.
      ctx.unbindSpace(hpasid);
      ctx.expect(h.ioasid.state(hpasid) === "IDLE", `reclaimed (state ${h.ioasid.state(hpasid)})`);
    });
    ctx.step("VMM: the late NESTING_OP UNBIND_PGTBL fails cleanly", () => {
      t.row("VFIO", "unbind_gpasid()");
      let failed = false;
      try {
        c.ioctl(VfioIoctl.IOMMU_NESTING_OP, unbindOp(hpasid));
      } catch {
        failed = true;
      }
      ctx.require(failed, "the unbind after FREE is refused");
    });
    const rows = t.log.rows;
    const col = refColumn(rows);
    ctx.expect(col === "3,2,1,0,reclaimed", `refcount column ${col} is the ioasid.rst exception table's 3,2,1,0, reclaimed`);
    const order = rows.filter((r) => r.action.includes("nb_handler(FREE)")).map((r) => r.actor).join(",");
    ctx.expect(order === "KVM,VDCM,IOMMU", `FREE seen in order ${order}, not CPU (KVM), DEVICE (VDCM), IOMMU`);
    ctx.expect(rows.at(-1)?.action.includes("fails") === true, `the late unbind fails in the IOMMU (last row: ${rows.at(-1)?.action ?? "none"})`);
  },
});
