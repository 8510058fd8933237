import { Prot, type Mm, type SvaBond } from "@vsva/iommu-core";
import type { DeviceSlot } from "../world/host.js";
import { hostScenario } from "../world/host-scenario.js";
import { PATTERN, dmaRead, dmaWrite, hexBytes, mmResolver } from "./sva-common.js";

/**
 * Seed 003's native life cycle on VT-d: a process binds its mm, the device
 * DMAs through the process's own first-level tables, then the normal
 * teardown order: stop DMA (7), unbind with PASID-cache + IOTLB + device-TLB
 * flush (9), the PASID freed when the mm is dropped (11).
 */
export const nativeSva = hostScenario({
  name: "native-sva",
  summary: "host process binds its mm; DMA through its first-level tables; stop DMA, unbind with full flush, PASID freed at mm drop",
  title: "Native SVA on VT-d (seed 003 native life cycle)",
  body(ctx) {
    const h = ctx.host;
    let slot: DeviceSlot | undefined;
    let mm: Mm | undefined;
    let bond: SvaBond | undefined;
    let buf = 0;
    let pasid = 0;

    ctx.step("plug in dsa0 at 00:04.0; the IOMMU driver probes it", () => {
      slot = h.addDevice("dsa0", 4);
    });
    ctx.step("(1) process P opens the accelerator; its driver enables SVA on dsa0", () => {
      if (slot !== undefined) h.enableSva(slot);
    });
    ctx.step("P maps 16 KiB and writes it with the CPU", () => {
      mm = h.newMm("P");
      buf = mm.mmap(null, 0x4000, Prot.READ | Prot.WRITE, { populate: true });
      mm.write(buf + 0x1000, Uint8Array.of(1, 2, 3, 4));
    });
    ctx.step("(2,3) the driver binds P's mm: one PASID for the mm, first level = P's page tables", () => {
      if (slot === undefined || mm === undefined) return;
      bond = h.core.sva.bindDevice(slot.dev, mm, { stop: () => undefined });
      pasid = bond.pasid;
      ctx.bindSpace(pasid, mmResolver(mm));
      ctx.defer("P's driver unbinds if still bound", () => {
        if (bond?.state === "bound") h.core.sva.unbindDevice(bond);
      });
    });
    ctx.step("(4) DMA: dsa0 writes P's buffer and reads back what the CPU wrote", () => {
      if (slot === undefined || mm === undefined) return;
      ctx.expect(dmaWrite(h, slot, pasid, buf, PATTERN) === "ok", "DMA write with P's PASID completes");
      ctx.expect(hexBytes(mm.read(buf, 4)) === hexBytes(PATTERN), "the CPU sees the bytes the device wrote");
      const got = new Uint8Array(4);
      ctx.expect(dmaRead(h, slot, pasid, buf + 0x1000, got) === "ok", "DMA read with P's PASID completes");
      ctx.expect(hexBytes(got) === "01020304", "the device reads what the CPU wrote");
    });
    ctx.step("(7,8,9) the driver stops DMA and unbinds: PASID entry cleared, PASID cache, IOTLB and device TLB flushed", () => {
      if (bond === undefined) return;
      h.core.sva.unbindDevice(bond);
      ctx.unbindSpace(pasid);
    });
    ctx.step("a stray DMA with the old PASID is refused", () => {
      if (slot === undefined) return;
      ctx.require(dmaWrite(h, slot, pasid, buf, PATTERN) !== "ok", "no DMA through a torn-down PASID");
    });
    ctx.step("(10,11) P exits: exit_mmap, then the last mmdrop frees the PASID, reclaimed", () => {
      if (mm === undefined) return;
      mm.exit();
      h.settle();
      ctx.expect(mm.state === "freed", "the mm is freed once its last user and reference are gone");
      ctx.expect(h.ioasid.snapshot().ids.length === 0, "the PASID went back to the pool");
    });
  },
});
