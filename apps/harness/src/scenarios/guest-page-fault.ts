import { hostScenario } from "../world/host-scenario.js";
import { bootGuestVm, guestProcess } from "./guest-common.js";
import { PATTERN, hexBytes } from "./sva-common.js";
import { PAGE, vfioOn } from "./vfio-common.js";
import { replayDeadDma, vmKillPoint } from "./vm-kill.js";

/**
 * A guest page fault, one hop per step (the "phase 3" of the 2020 vSVA
 * series' cover letter, and VT-d §7.5 in the guest): the assigned device
 * DMAs to a guest page the guest process has mapped but never touched; the
 * host IOMMU's page request goes to VFIO's DMA fault region, not to the
 * host's IO page fault queue; the VMM puts it in the guest's page request
 * queue; the guest's IOMMU driver faults the page in through its own
 * handle_mm_fault and answers with a page group response; the VMM passes
 * that to VFIO's response ring and the device retries, successfully.
 */
export const guestPageFault = hostScenario({
  name: "guest-page-fault",
  summary: "a guest DMA to a not-present guest page: host PRQ → VFIO fault region → the guest's page request queue → the guest pages in and responds → the device retries",
  title: "A guest page fault, host to guest and back",
  platforms: ["vtd"],
  at: "kill VM 1 (its VMM process dies) after step STEP of the run, wherever its page request is on its way; the device then replays the DMA, which must not translate",
  body(outer) {
    const k = vmKillPoint(outer);
    const ctx = k.ctx;
    const dev = ctx.choose.int("dsa0's slot", 1, 31, { show: (d) => `00:${d.toString(16).padStart(2, "0")}.0` });
    const VA = ctx.choose.int("the guest process's buffer", 0x1_0000_0000, 0x3fff_ffff_0000, { align: 0x1_0000 });
    const off = ctx.choose.int("the faulting offset in the second page", 0, PAGE - PATTERN.length, { align: 4 });
    const g = bootGuestVm(ctx, vfioOn(ctx.host), { id: 1, dev, device: "dsa0", onStart: (vm) => k.setVm(vm) });
    if (g === null) return;
    const p = k.step("guest process P maps 2 pages and touches only the first; binds dsa0 with SVA", () => guestProcess(ctx, g, "P", VA, 2, 1));
    if (p === null) return;
    const target = VA + PAGE + off;
    const engine = g.slot.ep.dma;
    const sched = ctx.host.kernel.scheduler;
    k.step("the guest's driver programs dsa0 to write to the untouched page: the guest's first level has no entry, the device sends a page request", () => {
      ctx.require(p.mm.lookup(target) === null, "the page is not present in the guest");
      engine.setProgram({ pasid: p.bond.pasid, addr: target, length: PATTERN.length, direction: "write", pattern: PATTERN });
      ctx.expect(engine.trigger() === "pageRequestPending", "the DMA waits on a page request");
    });
    k.step("the host's page request thread hands the request to VFIO's DMA fault region (the PASID is a guest's: no host IO page fault)", () => {
      sched.runUntilIdle();
      ctx.expect(engine.result === "pageRequestPending", "the device still waits");
      ctx.require(p.mm.lookup(target) === null, "the host did not fault the guest's page in");
    });
    k.step("the VMM takes the record and queues it in the guest's page request queue; the guest's IOMMU driver is interrupted", () => {
      const before = g.vm.viommu.stats.pageRequests;
      ctx.expect(g.vm.viommu.pollFaults() >= 1, "the VMM found a record in the fault region");
      ctx.expect(g.vm.viommu.stats.pageRequests === before + 1, "one page request went into the guest's queue");
    });
    k.step("the guest fixes its page table (handle_mm_fault), answers with a page group response; the VMM passes it to VFIO, the device retries", () => {
      sched.runUntilIdle();
      ctx.expect(p.mm.lookup(target) !== null, "the guest paged the page in");
      ctx.expect(g.vm.viommu.stats.responses === g.vm.viommu.stats.pageRequests, "every page request was answered");
      ctx.expect(engine.result === "ok", "the retried DMA completes");
    });
    k.step("the guest process reads the bytes by CPU", () => {
      ctx.expect(hexBytes(p.mm.read(target, PATTERN.length)) === hexBytes(PATTERN), "the bytes are in the page the guest faulted in");
    });
    k.step("P unbinds: the guest clears its PASID entry and flushes; the VMM unbinds on the host", () => {
      g.guest.core.sva.unbindDevice(p.bond);
      ctx.unbindSpace(p.bond.pasid);
      ctx.expect(g.vm.viommu.bound.size === 0, "nothing bound on the host for the guest");
    });
    if (!k.alive()) replayDeadDma(ctx, engine, p.bond.pasid, target);
  },
});
