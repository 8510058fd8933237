import { type HostPasid, type Ioasid, KernelError, TraceRecorder, asIoasid, asVmId, errnoName } from "@vsva/kernel";
import type { EnqcmdResult, KvmPasid } from "@vsva/kvm-pasid";
import { VfioIoctl } from "@vsva/vfio-type1";
import { MiB } from "../world/host.js";
import { hostScenario, type StepContext } from "../world/host-scenario.js";
import { plugInSvaDevice } from "./sva-common.js";
import { guestTable } from "./vfio.js";
import { allocPasid, bindOp, bindToVfio, freePasids, groupOf, ia32Pasid, mapGuestRam, openContainer, startVm, unbindOp, vfioOn } from "./vfio-common.js";

const RAM = 1 * MiB;
const VM_HOST = 8 * MiB;
const VM_B_HOST = 10 * MiB;
const PASID_MAX = 0xfffff;

/** What a guest ENQCMD with this IA32_PASID value gave: "host PASID n", "#GP" or "VM exit n". */
function outcome(r: EnqcmdResult): string {
  if (r.ok) return `host PASID ${r.hostPasid}`;
  return r.fault.kind === "GP" ? "#GP" : `VM exit ${r.fault.exitReason}`;
}

function enqcmd(kvm: KvmPasid, gpasid: number): string {
  return outcome(kvm.enqcmd(ia32Pasid(gpasid)));
}

/** The runs an error a step is allowed to end with; null when it succeeded. */
function errnoOfCall(fn: () => unknown): number | null {
  try {
    fn();
    return null;
  } catch (e) {
    if (e instanceof KernelError) return e.errno;
    throw e;
  }
}

/** KVM's table as text, to compare before and after. */
function tableText(kvm: KvmPasid): string {
  return [...kvm.readTable()].map(([g, h]) => `${g}->${h}`).join(",");
}

function expectTranslates(ctx: StepContext, kvm: KvmPasid, gpasid: number, hpasid: Ioasid | HostPasid): void {
  const got = enqcmd(kvm, gpasid);
  ctx.expect(got === `host PASID ${hpasid}`, `ENQCMD with guest PASID ${gpasid} carries host PASID ${hpasid} (got ${got})`);
}

function requireFaults(ctx: StepContext, kvm: KvmPasid, gpasid: number, what: string): void {
  const got = enqcmd(kvm, gpasid);
  ctx.require(!got.startsWith("host PASID"), `${what}: ENQCMD with guest PASID ${gpasid} must fault in the guest (got ${got})`);
}

/**
 * ENQCMD in a guest through the real stack: VFIO's PASID_REQUEST and
 * NESTING_OP reach the IOMMU core and the VT-d driver, whose attaching of the
 * guest PASID as the IOASID's SPID sends BIND to KVM's notifier (CPU
 * priority, registered by mm token before VFIO made the set). The guest's
 * IA32_PASID value is translated through KVM's table in host memory, as the
 * CPU walks it for ENQCMD (Intel ISE reference, ENQCMD; the VMCS PASID
 * directory fields).
 */
export const kvmEnqcmd = hostScenario({
  name: "kvm-enqcmd",
  summary: "ENQCMD in a guest: BIND through VFIO installs the guest->host PASID translation in KVM's table (a second VM's same guest PASID gets its own host PASID), UNBIND and FREE remove it, an unbound PASID faults in the guest only",
  title: "KVM's ENQCMD PASID translation driven by VFIO's binds",
  // Only VT-d had bind_gpasid (and ENQCMD is x86).
  platforms: ["vtd"],
  body(ctx) {
    const h = ctx.host;
    const vfio = vfioOn(h);
    const rec = new TraceRecorder(h.kernel.trace);
    const GPASID = ctx.choose.int("guest PASID", 1, PASID_MAX);
    const drawn = ctx.choose.int("unbound guest PASID", 1, PASID_MAX);
    const STRAY = drawn === GPASID ? (GPASID % PASID_MAX) + 1 : drawn;
    const slot = plugInSvaDevice(ctx, "plug in dsa0 (SVA enabled); vfio-pci takes it");
    bindToVfio(ctx, vfio, slot);
    const vm = startVm(ctx, "qemu", VM_HOST, RAM);
    const { kvm } = vm;
    ctx.expect(h.ioasid.findSetByToken(vm.user.mm) === null, "KVM registered before the VM's IOASID set exists");
    const pt = guestTable(vm);
    const c = ctx.step("VMM: nesting container (VFIO makes the VM's IOASID set; KVM's waiting notifier joins it); MAP_DMA guest RAM", () => {
      const f = openContainer(vfio, vm, groupOf(slot.dev), "nesting");
      mapGuestRam(f, vm, 0, RAM);
      return f;
    });
    const hpasid = ctx.step("VMM: PASID_REQUEST alloc: no translation yet", () => {
      const p = asIoasid(allocPasid(c, 1, PASID_MAX));
      ctx.expect(kvm.readTable().size === 0, "KVM's table is empty before any bind");
      return p;
    });
    const bind = (label: string): void =>
      ctx.step(label, () => {
        c.ioctl(VfioIoctl.IOMMU_NESTING_OP, bindOp(hpasid, pt.root, GPASID));
        ctx.expect(new Map<number, number>(kvm.readTable()).get(GPASID) === hpasid, `KVM's table sends guest PASID ${GPASID} to ${hpasid}`);
        ctx.expect(h.ioasid.refcount(hpasid) === 3, `refcount 3: the VM's, the IOMMU driver's, KVM's (got ${h.ioasid.refcount(hpasid)})`);
      });
    bind(`VMM: NESTING_OP BIND_PGTBL with guest PASID ${GPASID}: BIND reaches KVM, which installs the translation`);
    ctx.step("guest: ENQCMD from a thread whose IA32_PASID holds the guest PASID: the CPU puts the host PASID in the payload", () => {
      expectTranslates(ctx, kvm, GPASID, hpasid);
    });
    ctx.step("plug in dsa1 (SVA enabled); vfio-pci takes it, for a second VM", () => {
      const s = h.addDevice("dsa1");
      h.enableSva(s);
      bindToVfio(ctx, vfio, s);
      return s;
    });
    const vmB = startVm(ctx, "qemu-B", VM_B_HOST, RAM, asVmId(2));
    ctx.step(`VM B binds the same guest PASID ${GPASID} to a host PASID of its own set: each VM's ENQCMD carries its own host PASID`, () => {
      const slotB = h.devices.find((d) => d.dev.name === "dsa1");
      if (slotB === undefined) throw new Error("dsa1 was plugged in");
      const cB = openContainer(vfio, vmB, groupOf(slotB.dev), "nesting");
      mapGuestRam(cB, vmB, 0, RAM);
      const hB = asIoasid(allocPasid(cB, 1, PASID_MAX));
      cB.ioctl(VfioIoctl.IOMMU_NESTING_OP, bindOp(hB, guestTable(vmB).root, GPASID));
      ctx.require(hB !== hpasid, "two VMs never share a host PASID");
      expectTranslates(ctx, vmB.kvm, GPASID, hB);
      expectTranslates(ctx, kvm, GPASID, hpasid);
    });
    ctx.step(`guest: ENQCMD with guest PASID ${STRAY}, never bound: the fault goes to the guest, the host is untouched`, () => {
      const from = rec.events.length;
      const before = { refs: h.ioasid.refcount(hpasid), table: tableText(kvm), pages: h.pages.stats.livePages };
      const r = kvm.enqcmd(ia32Pasid(STRAY));
      ctx.require(!r.ok && r.fault.kind === "VMEXIT", `a VM exit for the guest's VMM (got ${outcome(r)})`);
      const host = rec.events.slice(from).filter((e) => e.kind !== "kvm.pasid.translate-fault");
      ctx.require(host.length === 0, `nothing else happened on the host (got ${host.map((e) => e.kind).join(", ")})`);
      ctx.require(h.ioasid.refcount(hpasid) === before.refs && tableText(kvm) === before.table && h.pages.stats.livePages === before.pages, "references, KVM's table and the host's pages are as they were");
      const gp = kvm.enqcmd(0n);
      ctx.require(!gp.ok && gp.fault.kind === "GP", `with IA32_PASID.VALID clear, ENQCMD is #GP (got ${outcome(gp)})`);
    });
    ctx.step("VMM: NESTING_OP UNBIND_PGTBL: UNBIND reaches KVM, which removes the translation and drops its reference", () => {
      c.ioctl(VfioIoctl.IOMMU_NESTING_OP, unbindOp(hpasid));
      ctx.expect(kvm.readTable().size === 0, "KVM's table is empty");
      ctx.expect(h.ioasid.refcount(hpasid) === 1, `refcount 1: the VM's (got ${h.ioasid.refcount(hpasid)})`);
      requireFaults(ctx, kvm, GPASID, "after UNBIND");
    });
    bind("VMM: bind it again");
    ctx.step("VMM: PASID_REQUEST free while bound: KVM's FREE handler removes the translation before free returns; the teardown work reclaims", () => {
      freePasids(c, hpasid, hpasid);
      ctx.require(kvm.readTable().size === 0 && kvm.references === 0, "KVM's table is empty and it holds nothing once free returns");
      requireFaults(ctx, kvm, GPASID, "after FREE");
      h.settle();
      ctx.expect(h.ioasid.state(hpasid) === "IDLE", `reclaimed (state ${h.ioasid.state(hpasid)})`);
    });
    ctx.step("VMM: NESTING_OP UNBIND_PGTBL after FREE: refused, and nothing changes (no KVM event, no reference moved)", () => {
      const from = rec.events.length;
      const before = { state: h.ioasid.state(hpasid), table: tableText(kvm) };
      const errno = errnoOfCall(() => c.ioctl(VfioIoctl.IOMMU_NESTING_OP, unbindOp(hpasid)));
      ctx.require(errno !== null, "the late unbind fails");
      ctx.expect(errno !== null && errnoName(errno) === "ENOENT", `with ENOENT: the PASID is gone (got ${errno === null ? "success" : errnoName(errno)})`);
      const kvmEvents = rec.events.slice(from).filter((e) => e.kind.startsWith("kvm."));
      ctx.require(kvmEvents.length === 0, `KVM saw nothing (got ${kvmEvents.map((e) => e.kind).join(", ")})`);
      ctx.require(h.ioasid.state(hpasid) === before.state && tableText(kvm) === before.table, "the PASID's state and KVM's table are unchanged");
    });
  },
});
