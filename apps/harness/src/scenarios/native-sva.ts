import { asIoasid } from "@vsva/kernel";
import { type HostScenarioDef, hostScenario } from "../world/host-scenario.js";
import { PATTERN, bindProcess, dmaRead, dmaWrite, hexBytes, plugInSvaDevice } from "./sva-common.js";

/**
 * The native SVA life cycle on VT-d, numbered as in the native IOASID life
 * cycle of the ioasid.rst proposal ("IOASID extensions for guest SVA", iommu
 * mailing list, 2020; Linux drivers/iommu/intel/svm.c): a process binds its
 * mm, the device DMAs through the process's own first-level tables, then the
 * normal teardown order: stop DMA (7), unbind with PASID-cache + IOTLB +
 * device-TLB flush (9), the PASID freed when the mm is dropped (11).
 */
const nativeSvaDef: HostScenarioDef = {
  name: "native-sva",
  summary: "host process binds its mm; DMA through its first-level tables; stop DMA, unbind with full flush, PASID freed at mm drop",
  title: "Native SVA (native life cycle)",
  body(ctx) {
    const h = ctx.host;
    const slot = plugInSvaDevice(ctx, "(1) process P opens the accelerator: dsa0 is probed and its driver enables SVA");
    const p = bindProcess(ctx, slot, {
      size: 0x4000,
      populate: true,
      label: "(2,3) P maps 16 KiB; the driver binds P's mm: one PASID for the mm, first level = P's page tables",
    });
    ctx.expect(h.ioasid.refcount(asIoasid(p.pasid)) === 1, "refcount 1: the mm holds its PASID (native SVA binds take no IOASID reference)");
    ctx.step("(4) DMA: dsa0 writes P's buffer and reads what the CPU wrote", () => {
      p.mm.write(p.buf + 0x1000, Uint8Array.of(1, 2, 3, 4));
      ctx.expect(dmaWrite(h, slot, p.pasid, p.buf, PATTERN) === "ok", "DMA write with P's PASID completes");
      ctx.expect(hexBytes(p.mm.read(p.buf, 4)) === hexBytes(PATTERN), "the CPU sees the bytes the device wrote");
      const got = new Uint8Array(4);
      ctx.expect(dmaRead(h, slot, p.pasid, p.buf + 0x1000, got) === "ok", "DMA read with P's PASID completes");
      ctx.expect(hexBytes(got) === "01020304", "the device reads what the CPU wrote");
    });
    ctx.step("(7,8,9) the driver stops DMA and unbinds: PASID entry cleared, PASID cache, IOTLB and device TLB flushed", () => {
      h.core.sva.unbindDevice(p.bond);
      ctx.unbindSpace(p.pasid);
    });
    ctx.step("a stray DMA with the old PASID is refused", () => {
      ctx.require(dmaWrite(h, slot, p.pasid, p.buf, PATTERN) !== "ok", "no DMA through a torn-down PASID");
    });
    ctx.step("(10,11) P exits: exit_mmap, then the last mmdrop frees the PASID, reclaimed", () => {
      p.mm.exit();
      h.settle();
      ctx.expect(p.mm.state === "freed", "the mm is freed once its last user and reference are gone");
      ctx.expect(h.ioasid.snapshot().ids.length === 0, "the PASID went back to the pool");
    });
  },
};

export const nativeSva = hostScenario(nativeSvaDef);

/** The same life cycle on Arm SMMUv3: a CD per PASID whose TTB0 is the process's AArch64 table, sharing its ASID. */
export const smmuNativeSva = hostScenario({
  ...nativeSvaDef,
  name: "smmu-native-sva",
  summary: "native-sva on Arm SMMUv3: CD per PASID with the process's AArch64 tables and shared ASID; CFGI_CD, TLBI_NH_ASID and ATC_INV at unbind",
  title: "Native SVA on SMMUv3 (native life cycle)",
  platforms: ["smmuv3"],
});
