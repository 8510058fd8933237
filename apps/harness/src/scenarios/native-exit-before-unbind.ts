import { Prot, type Mm, type SvaBond } from "@vsva/iommu-core";
import type { DeviceSlot } from "../world/host.js";
import { hostScenario } from "../world/host-scenario.js";
import { PATTERN, dmaWrite, mmResolver } from "./sva-common.js";

/**
 * Seed 003's native exception: the process exits before its driver stops DMA
 * and unbinds. exit_mmap runs the mmu-notifier release: the driver's stop
 * callback quiesces the device, the IOMMU driver disables fault reporting for
 * the PASID, tears the entry down and flushes. The later unbind (from the
 * file release) finds nothing and returns cleanly, and no unrecoverable fault
 * is reported in between.
 */
export const nativeExitBeforeUnbind = hostScenario({
  name: "native-exit-before-unbind",
  summary: "process exits first: release notifier stops the device, tears down and flushes; later unbind finds nothing; no fault reported",
  title: "Native SVA: process exits before unbind (seed 003 native exception)",
  body(ctx) {
    const h = ctx.host;
    let slot: DeviceSlot | undefined;
    let mm: Mm | undefined;
    let bond: SvaBond | undefined;
    let buf = 0;
    let pasid = 0;
    let stopped = 0;

    ctx.step("plug in dsa0 and enable SVA", () => {
      slot = h.addDevice("dsa0", 4);
      h.enableSva(slot);
    });
    ctx.step("process P maps a buffer and binds its mm", () => {
      if (slot === undefined) return;
      mm = h.newMm("P");
      buf = mm.mmap(null, 0x2000, Prot.READ | Prot.WRITE, { populate: true });
      bond = h.core.sva.bindDevice(slot.dev, mm, { stop: () => { stopped++; } });
      pasid = bond.pasid;
      ctx.bindSpace(pasid, mmResolver(mm));
      ctx.defer("file release: the driver unbinds (if the bond is still there)", () => {
        if (bond?.state === "bound") h.core.sva.unbindDevice(bond);
      });
    });
    ctx.step("DMA with P's PASID", () => {
      if (slot !== undefined) ctx.expect(dmaWrite(h, slot, pasid, buf, PATTERN) === "ok", "DMA before exit completes");
    });
    let recordedFaults = 0;
    ctx.step("P is killed: exit_mmap -> mmu-notifier release (stop, FPD, teardown, flush) before the tables go", () => {
      if (mm === undefined) return;
      h.kernel.trace.subscribe((e) => {
        if (e.kind === "vtd.fault" && e.payload.recorded) recordedFaults++;
      });
      mm.exit();
      h.settle();
      ctx.unbindSpace(pasid);
      ctx.expect(stopped === 1, "the device driver's stop callback ran once, before teardown");
      ctx.expect(bond?.state === "released", "the bond is released by the notifier");
    });
    ctx.step("DMA still in flight hits the torn-down PASID", () => {
      if (slot !== undefined) ctx.require(dmaWrite(h, slot, pasid, buf, PATTERN) !== "ok", "no DMA through the released PASID");
      ctx.require(recordedFaults === 0, "no unrecoverable fault is reported between exit and unbind (fault processing was disabled)");
    });
    ctx.step("(7,9) close(): the driver stops DMA and unbinds: nothing left, returns cleanly", () => {
      if (bond === undefined) return;
      h.core.sva.unbindDevice(bond);
      ctx.expect(bond.state === "unbound", "the late unbind completes the bond's life");
      ctx.require(recordedFaults === 0, "still no fault reported");
    });
    ctx.step("(11) mmdrop: the PASID is freed and reclaimed", () => {
      h.settle();
      ctx.expect(mm?.state === "freed", "the mm is freed");
      ctx.expect(h.ioasid.snapshot().ids.length === 0, "the PASID went back to the pool");
    });
  },
});
