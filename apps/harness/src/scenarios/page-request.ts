import { Prot, type Mm, type SvaBond } from "@vsva/iommu-core";
import type { DeviceSlot } from "../world/host.js";
import { hostScenario } from "../world/host-scenario.js";
import { PATTERN, dmaWrite, dmaWriteNoWait, hexBytes, mmResolver } from "./sva-common.js";

/**
 * DMA to a page the process has not touched yet: the device's ATS
 * translation fails as recoverable, it sends a PRI page request, the unit
 * queues it and interrupts, the driver drains the queue into the core's IO
 * page fault queue, a work item faults the page into the mm, the driver
 * writes a page group response, and the device retries and completes.
 */
export const pageRequest = hostScenario({
  name: "page-request",
  summary: "DMA to a not-present page: page request, fault handled against the mm, page group response, retry succeeds",
  title: "IO page fault: PRI round trip on VT-d",
  body(ctx) {
    const h = ctx.host;
    let slot: DeviceSlot | undefined;
    let mm: Mm | undefined;
    let bond: SvaBond | undefined;
    let buf = 0;
    let pasid = 0;

    ctx.step("plug in dsa0, enable SVA (PASID, ATS, PRI)", () => {
      slot = h.addDevice("dsa0", 4);
      h.enableSva(slot);
    });
    ctx.step("process P maps 8 KiB (demand paged: no page yet) and binds its mm", () => {
      if (slot === undefined) return;
      mm = h.newMm("P");
      buf = mm.mmap(null, 0x2000, Prot.READ | Prot.WRITE);
      bond = h.core.sva.bindDevice(slot.dev, mm);
      pasid = bond.pasid;
      ctx.bindSpace(pasid, mmResolver(mm));
      ctx.defer("P's driver unbinds", () => {
        if (bond?.state === "bound") h.core.sva.unbindDevice(bond);
      });
      ctx.expect(mm.lookup(buf + 0x1000) === null, "the page is not present before the DMA");
    });
    ctx.step("DMA write to the untouched page: ATS fails, the device issues a page request and waits", () => {
      if (slot === undefined) return;
      ctx.expect(dmaWriteNoWait(slot, pasid, buf + 0x1000, PATTERN) === "pageRequestPending", "the DMA waits on a page request");
    });
    ctx.step("interrupt -> driver drains the page request queue -> IO page fault work handles it -> page group response -> retry", () => {
      if (slot === undefined || mm === undefined) return;
      h.settle();
      ctx.expect(slot.ep.dma.result === "ok", `the retried DMA completes (result ${slot.ep.dma.result})`);
      ctx.expect(hexBytes(mm.read(buf + 0x1000, 4)) === hexBytes(PATTERN), "the process sees the bytes in the faulted-in page");
    });
    ctx.step("DMA outside any mapping: the fault is answered invalid, the DMA fails cleanly", () => {
      if (slot === undefined) return;
      const r = dmaWrite(h, slot, pasid, buf + 0x10_0000, PATTERN);
      ctx.expect(r === "pageRequestInvalid", `an unmapped address is refused (result ${r})`);
    });
    ctx.step("P unbinds and exits", () => {
      if (bond === undefined || mm === undefined) return;
      h.core.sva.unbindDevice(bond);
      ctx.unbindSpace(pasid);
      mm.exit();
      h.settle();
    });
  },
});
