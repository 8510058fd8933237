import { hostScenario } from "../world/host-scenario.js";
import { PATTERN, bindProcess, dmaWrite, dmaWriteNoWait, hexBytes, plugInSvaDevice } from "./sva-common.js";

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
  title: "IO page fault: PRI round trip",
  body(ctx) {
    const h = ctx.host;
    const slot = plugInSvaDevice(ctx, "plug in dsa0 and enable SVA (PASID, ATS, PRI)");
    const p = bindProcess(ctx, slot, {
      size: 0x2000,
      populate: false,
      label: "process P maps 8 KiB (demand paged: no page yet) and binds its mm",
    });
    ctx.expect(p.mm.lookup(p.buf + 0x1000) === null, "the page is not present before the DMA");
    ctx.step("DMA write to the untouched page: ATS fails, the device issues a page request and waits", () => {
      ctx.expect(dmaWriteNoWait(slot, p.pasid, p.buf + 0x1000, PATTERN) === "pageRequestPending", "the DMA waits on a page request");
    });
    ctx.step("interrupt -> driver drains the page request queue -> IO page fault work handles it -> page group response -> retry", () => {
      h.settle();
      ctx.expect(slot.ep.dma.result === "ok", `the retried DMA completes (result ${slot.ep.dma.result})`);
      ctx.expect(hexBytes(p.mm.read(p.buf + 0x1000, 4)) === hexBytes(PATTERN), "the process sees the bytes in the faulted-in page");
    });
    ctx.step("DMA outside any mapping: the fault is answered invalid, the DMA fails cleanly", () => {
      const r = dmaWrite(h, slot, p.pasid, p.buf + 0x10_0000, PATTERN);
      ctx.expect(r === "pageRequestInvalid", `an unmapped address is refused (result ${r})`);
    });
    ctx.step("P unbinds and exits", () => {
      h.core.sva.unbindDevice(p.bond);
      ctx.unbindSpace(p.pasid);
      p.mm.exit();
      h.settle();
    });
  },
});
