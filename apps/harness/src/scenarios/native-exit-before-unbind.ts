import { hostScenario } from "../world/host-scenario.js";
import { PATTERN, bindProcess, dmaWrite, plugInSvaDevice } from "./sva-common.js";

/**
 * The native exception of the ioasid.rst proposal's tables (iommu mailing
 * list, 2020): the process exits before its driver stops DMA
 * and unbinds. exit_mmap runs the mmu-notifier release: the driver's stop
 * callback quiesces the device, the IOMMU driver disables fault reporting for
 * the PASID, tears the entry down and flushes. The later unbind (from the
 * file release) finds nothing and returns cleanly, and no unrecoverable fault
 * is reported in between.
 */
export const nativeExitBeforeUnbind = hostScenario({
  name: "native-exit-before-unbind",
  summary: "process exits first: release notifier stops the device, tears down and flushes; later unbind finds nothing; no fault reported",
  title: "Native SVA: process exits before unbind (native exception)",
  body(ctx) {
    const h = ctx.host;
    let stopped = 0;
    let recordedFaults = 0;
    h.kernel.trace.subscribe((e) => {
      if (h.platform.isReportedFault(e)) recordedFaults++;
    });
    const slot = plugInSvaDevice(ctx);
    const p = bindProcess(ctx, slot, {
      size: 0x2000,
      populate: true,
      stop: () => {
        stopped++;
      },
      label: "process P maps a buffer and its driver binds P's mm (with a stop callback)",
    });
    ctx.step("DMA with P's PASID", () => {
      ctx.expect(dmaWrite(h, slot, p.pasid, p.buf, PATTERN) === "ok", "DMA before exit completes");
    });
    ctx.step("P is killed: exit_mmap -> mmu-notifier release (stop, FPD, teardown, flush) before the tables go", () => {
      p.mm.exit();
      h.settle();
      ctx.unbindSpace(p.pasid);
      ctx.expect(stopped === 1, "the device driver's stop callback ran once, before teardown");
      ctx.expect(p.bond.state === "released", "the bond is released by the notifier");
    });
    ctx.step("DMA still in flight hits the torn-down PASID", () => {
      ctx.require(dmaWrite(h, slot, p.pasid, p.buf, PATTERN) !== "ok", "no DMA through the released PASID");
      ctx.require(recordedFaults === 0, "no unrecoverable fault is reported between exit and unbind (fault processing was disabled)");
    });
    ctx.step("(7,9) close(): the driver stops DMA and unbinds: nothing left, returns cleanly", () => {
      h.core.sva.unbindDevice(p.bond);
      ctx.expect(p.bond.state === "unbound", "the late unbind completes the bond's life");
      ctx.require(recordedFaults === 0, "still no fault reported");
    });
    ctx.step("(11) mmdrop: the PASID is freed and reclaimed", () => {
      h.settle();
      ctx.expect(p.mm.state === "freed", "the mm is freed");
      ctx.expect(h.ioasid.snapshot().ids.length === 0, "the PASID went back to the pool");
    });
  },
});
