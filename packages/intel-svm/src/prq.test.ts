import { describe, expect, it } from "vitest";
import type { IommuDevice, PageRequestFault } from "@vsva/iommu-core";
import { GPA_DATA, GUEST_HPA, GVA, bindData, vmHost } from "./nested-host.js";
import { PATTERN, dmaWrite } from "./test-host.js";

/** A fault sink that keeps what it is given (the IO page fault queue's place). */
function sink() {
  const faults: { dev: IommuDevice; fault: PageRequestFault }[] = [];
  return { faults, report: (dev: IommuDevice, fault: PageRequestFault) => (faults.push({ dev, fault }), true) };
}

/** Maps GVA + 0x1000 -> GPA_DATA + 0x1000 in the guest table (its PT lives at GPA 0x4000). */
function guestMapsNextPage(vm: ReturnType<typeof vmHost>): void {
  const pte = GUEST_HPA + 0x4000 + 8 * (((GVA + 0x1000) / 4096) % 512);
  vm.mem.write64(pte, (GPA_DATA + 0x1000) | 0x7, 0);
}

/** As VFIO does for a device whose nested PASIDs' faults go to the guest: its handler instead of the IO page fault queue. */
function useHandler(vm: ReturnType<typeof vmHost>, s: ReturnType<typeof sink>): void {
  vm.core.unregisterDeviceFaultHandler(vm.pdev);
  vm.core.registerDeviceFaultHandler(vm.pdev, (d, f) => s.report(d, f));
}

describe("page requests: drain, report, respond", () => {
  it("a DMA to a page the guest has not mapped raises a page request; the handler maps it and answers success; the DMA completes", () => {
    const vm = vmHost();
    const s = sink();
    useHandler(vm, s);
    const hpasid = vm.alloc();
    vm.vtd.bindGpasid(vm.pdev, bindData(vm, hpasid));
    expect(dmaWrite(vm.ep, GVA + 0x1000, PATTERN, hpasid)).toBe("pageRequestPending");
    expect(vm.drv.processPageRequests()).toBe(1);
    expect(s.faults.map((f) => [f.dev, f.fault.pasid, f.fault.addr, f.fault.write, f.fault.last])).toEqual([[vm.pdev, hpasid, GVA + 0x1000, true, true]]);
    guestMapsNextPage(vm);
    const f = s.faults[0]?.fault;
    vm.drv.pageResponse(vm.pdev, { pasid: f?.pasid, grpid: f?.grpid ?? -1, code: "success" });
    expect(vm.ep.dma.result).toBe("ok");
    expect(vm.mem.read32(GUEST_HPA + GPA_DATA + 0x1000)).toBe(0xefbeadde);
  });

  it("answers 'invalid' itself when nobody handles the PASID, and the device gives up", () => {
    const vm = vmHost();
    vm.core.unregisterDeviceFaultHandler(vm.pdev); // no IO page fault queue, no VFIO handler
    const hpasid = vm.alloc();
    vm.vtd.bindGpasid(vm.pdev, bindData(vm, hpasid));
    expect(dmaWrite(vm.ep, GVA + 0x1000, PATTERN, hpasid)).toBe("pageRequestPending");
    vm.drv.processPageRequests();
    expect(vm.drv.prq.stats.autoInvalid).toBe(1);
    expect(vm.ep.dma.result).toBe("pageRequestInvalid");
  });

  it("a response nobody asked for is dropped and logged, never sent", () => {
    const vm = vmHost();
    const before = vm.drv.prq.stats.responses;
    vm.drv.pageResponse(vm.pdev, { pasid: undefined, grpid: 3, code: "success" });
    expect(vm.drv.prq.stats.responses).toBe(before);
    expect(vm.kernel.log.lines.some((l) => l.key === "dmar0.page-response")).toBe(true);
  });

  it("unbind drains: a group still pending for the PASID is answered 'invalid' before the PASID can be reused", () => {
    const vm = vmHost();
    const s = sink();
    useHandler(vm, s);
    const hpasid = vm.alloc();
    vm.vtd.bindGpasid(vm.pdev, bindData(vm, hpasid));
    expect(dmaWrite(vm.ep, GVA + 0x1000, PATTERN, hpasid)).toBe("pageRequestPending");
    vm.drv.processPageRequests();
    expect(vm.drv.prq.pendingGroups).toBe(1);
    vm.drv.nested.unbind(vm.vtd, vm.pdev, hpasid);
    expect(vm.drv.prq.pendingGroups).toBe(0);
    expect(vm.ep.dma.result).toBe("pageRequestInvalid");
  });

  it("the page-request interrupt processes the queue from a work item", () => {
    const vm = vmHost();
    const s = sink();
    useHandler(vm, s);
    const hpasid = vm.alloc();
    vm.vtd.bindGpasid(vm.pdev, bindData(vm, hpasid));
    dmaWrite(vm.ep, GVA + 0x1000, PATTERN, hpasid);
    vm.drv.pageRequestInterrupt();
    expect(s.faults).toHaveLength(0);
    vm.kernel.scheduler.drain();
    expect(s.faults).toHaveLength(1);
  });
});
