import { PATTERN, hexBytes } from "./sva-common.js";
import { Guest, Vm } from "@vsva/vmm";
import { hostScenario } from "../world/host-scenario.js";
import { GUEST_RAM, type GuestProcess, guestProcess, startGuestVm } from "./guest-common.js";
import { PAGE, bindToVfio, groupOf, vfioOn } from "./vfio-common.js";
import { vmKillPoint } from "./vm-kill.js";

/** The text of the crash row (`vsva crash-sweep` finds it): where every scenario that kills a VM writes it. */
export { CRASH_ROW } from "./vm-kill.js";

/**
 * A VM killed at any point (`--at STEP`: its VMM dies after that step, as
 * kill -9 of QEMU would), while a bystander VM keeps doing DMA. The host
 * must clean up whatever state the dead VM was in — a PASID bound, a page
 * request in flight between the host and the guest, a queue submission
 * held — through VFIO's release (vfio_iommu_type1_release(), and the
 * IOMMU's unbind of each guest PASID on the way, intel_svm_unbind_gpasid())
 * and KVM's teardown; the invariants after every step hold the dead VM's
 * pages free of DMA and every reference released, and the bystander's DMA
 * keeps landing in its own process.
 */
export const guestCrash = hostScenario({
  name: "guest-crash",
  summary: "VM 1 is killed after a chosen step (--at STEP) while VM 2 keeps doing DMA: nothing of VM 1 leaks, VM 2 is unaffected (vsva crash-sweep guest-crash tries every step)",
  title: "A VM killed mid-flight, beside a bystander VM",
  platforms: ["vtd"],
  at: "kill VM 1 (its VMM process dies) after step STEP of the run",
  body(outer) {
    const devA = outer.choose.int("dsa0's slot (VM 1)", 1, 15, { show: (d) => `00:${d.toString(16).padStart(2, "0")}.0` });
    const devB = outer.choose.int("dsa1's slot (VM 2)", 16, 31, { show: (d) => `00:${d.toString(16).padStart(2, "0")}.0` });
    const VA = outer.choose.int("the processes' buffers", 0x1_0000_0000, 0x3fff_ffff_0000, { align: 0x1_0000 });
    const kill = vmKillPoint(outer);
    const ctx = kill.ctx;
    const alive = (): boolean => kill.alive();
    // Set inside a step's closure: a holder, so the checks after it see the assignment.
    const victim: { vm: Vm | null } = { vm: null };
    const vfio = vfioOn(ctx.host);
    const b = startGuestVm(ctx, vfio, { id: 2, dev: devB, device: "dsa1" });
    const q = ctx.step("bystander process Q in VM 2 maps a page and binds dsa1 with SVA", () => guestProcess(ctx, b, "Q", VA, 1));
    const bystanderDma = (what: string, off: number): void => {
      ctx.step(`VM 2's Q: dsa1 writes to Q's page ${what}`, () => {
        ctx.expect(b.guest.dma({ pasid: q.bond.pasid, addr: VA + off, length: PATTERN.length, direction: "write", pattern: PATTERN }) === "ok", "the bystander's DMA completes");
        ctx.expect(hexBytes(q.mm.read(VA + off, PATTERN.length)) === hexBytes(PATTERN), "the bystander reads its bytes by CPU");
      });
    };
    bystanderDma("(before VM 1 exists)", 0x10);
    const slot = ctx.step("plug in dsa0; vfio-pci takes it for VM 1", () => {
      const s = ctx.host.addDevice("dsa0", devA);
      bindToVfio(ctx, vfio, s);
      return s;
    });
    let g: Guest | null = null;
    let p: GuestProcess | null = null;
    if (alive()) {
      ctx.step("VMM starts VM 1 with dsa0", () => {
        const v = new Vm({ host: ctx.host, vfio, id: 1, ramBytes: GUEST_RAM, device: { group: groupOf(slot.dev), name: "dsa0", endpoint: slot.ep } });
        ctx.defer("VM 1's VMM exits (if still running)", () => v.kill());
        ctx.watchVm(v);
        victim.vm = v;
        kill.setVm(v);
      });
    }
    if (alive() && victim.vm !== null) {
      const vm: Vm = victim.vm;
      g = ctx.step("VM 1's guest boots its IOMMU stack over the virtual VT-d", () => new Guest(vm));
    }
    if (alive() && g !== null && victim.vm !== null) {
      const gv = { slot, vm: victim.vm, guest: g };
      p = ctx.step("guest process P in VM 1 maps 2 pages, touches the first, binds dsa0 with SVA", () => guestProcess(ctx, gv, "P", VA, 2, 1));
    }
    if (alive() && g !== null && p !== null) {
      const [gg, pp] = [g, p];
      ctx.step("VM 1's P: dsa0 writes to P's first page", () => {
        ctx.expect(gg.dma({ pasid: pp.bond.pasid, addr: VA + 0x20, length: PATTERN.length, direction: "write", pattern: PATTERN }) === "ok", "VM 1's DMA completes");
      });
    }
    bystanderDma("(VM 1 running beside it)", 0x40);
    // The fault round trip, one hop per step, so the VM can die with a page request anywhere on its way.
    const engine = slot.ep.dma;
    const sched = ctx.host.kernel.scheduler;
    if (alive() && p !== null) {
      const pp = p;
      ctx.step("VM 1's P: dsa0 writes to P's untouched page and waits on a page request", () => {
        engine.setProgram({ pasid: pp.bond.pasid, addr: VA + PAGE + 0x20, length: PATTERN.length, direction: "write", pattern: PATTERN });
        ctx.expect(engine.trigger() === "pageRequestPending", "the DMA waits on a page request");
      });
    }
    if (alive() && p !== null) ctx.step("the host's page request thread hands it to VFIO's fault region", () => sched.runUntilIdle());
    if (alive() && p !== null && victim.vm !== null) {
      const vm: Vm = victim.vm;
      ctx.step("VM 1's VMM queues it in the guest's page request queue", () => ctx.expect(vm.viommu.pollFaults() >= 1, "the VMM took the record"));
    }
    if (alive() && p !== null) {
      ctx.step("VM 1's guest pages in and responds; dsa0 retries", () => {
        sched.runUntilIdle();
        ctx.expect(engine.result === "ok", "the retried DMA completes");
      });
    }
    bystanderDma("(while VM 1's fault was handled)", 0x80);
    if (alive() && g !== null && p !== null) {
      const [gg, pp] = [g, p];
      ctx.step("VM 1's P unbinds dsa0", () => {
        gg.core.sva.unbindDevice(pp.bond);
        ctx.unbindSpace(pp.bond.pasid);
      });
    }
    if (alive() && victim.vm !== null) {
      const vm: Vm = victim.vm;
      ctx.step("VM 1 shuts down (its VMM quits)", () => vm.kill());
    }
    bystanderDma("(after VM 1 is gone)", 0xc0);
    if (p !== null) {
      const pp = p;
      ctx.step("dsa0 replays VM 1's last DMA with its PASID: nothing of VM 1 translates any more", () => {
        engine.setProgram({ pasid: pp.bond.pasid, addr: VA + 0x20, length: PATTERN.length, direction: "write", pattern: PATTERN });
        const r = engine.trigger();
        if (r === "pageRequestPending") sched.runUntilIdle();
        ctx.require(engine.result !== "ok", "no DMA of the dead VM completes");
      });
    }
    ctx.step("VM 2's Q unbinds dsa1", () => {
      b.guest.core.sva.unbindDevice(q.bond);
      ctx.unbindSpace(q.bond.pasid);
    });
  },
});
