import { describe, expect, it } from "vitest";
import * as hw from "./index.js";
import { VtdRig } from "./vtd/testing/rig.js";
import { SR, SmmuRig } from "./smmu/testing/rig.js";

/** FRCD[i].FR (bits 103:96 of the 128-bit record) at the fault-recording offset (CAP.FRO counts 16-byte units). */
const FRCD_FR = (rig: VtdRig, i: number): number => Number((rig.reg64(16 * hw.DEFAULT_FRO + 16 * i + 8) >> 32n) & 0xffn);

/** Fault reasons reach a caller as exported named constants on both units, never as bare literals. */
describe("named fault codes", () => {
  it("VT-d: a page request under a non-scalable TTM records 0x32 (PAGE_REQUEST_INV_TTM), a translation request 0x31 (RTADDR_INV_TTM)", () => {
    const rig = new VtdRig().bringUp();
    rig.device();
    rig.setPasid(0, { pgtt: 4, did: 1 });
    rig.setRootTable(0); // legacy TTM, latched while TE stays set
    const t = rig.unit.translate({ sid: rig.dev, addr: 0x1000, write: false });
    expect(t).toMatchObject({ ok: false, reason: hw.FaultReason.RTADDR_INV_TTM, name: "RTADDR_INV_TTM" });
    expect(FRCD_FR(rig, 0)).toBe(0x31);
    expect(
      rig.unit.pageRequest({ sid: rig.dev, pasid: 1, priv: false, exec: false, addr: 0x5000, read: true, write: false, lastInGroup: false, groupIndex: 0 }),
    ).toBe(false);
    expect(FRCD_FR(rig, 1)).toBe(hw.FaultReason.PAGE_REQUEST_INV_TTM);
    expect(hw.FaultReason.PAGE_REQUEST_INV_TTM).toBe(0x32);
    expect(hw.faultReasonName(0x32)).toBe("PAGE_REQUEST_INV_TTM");
  });

  it("SMMUv3: a transaction aborted without an event reports ABORT_NO_EVENT, named ABORT; a recorded one its EventId", () => {
    const rig = new SmmuRig();
    rig.setReg(SR.GBPA, (1 << 31) | (1 << 20)); // UPDATE with ABORT, SMMUEN = 0
    const r = rig.unit.translate({ sid: rig.dev, addr: 0x1000, write: false });
    expect(r).toMatchObject({ ok: false, reason: hw.ABORT_NO_EVENT, name: hw.eventName(hw.ABORT_NO_EVENT) });
    expect(hw.eventName(hw.ABORT_NO_EVENT)).toBe("ABORT");
    const on = new SmmuRig().bringUp();
    on.ste(on.dev, { config: 4, v: false });
    const bad = on.unit.translate({ sid: on.dev, addr: 0x1000, write: false });
    expect(bad).toMatchObject({ ok: false, reason: hw.EventId.C_BAD_STE });
    expect(on.events().map((e) => e.id)).toEqual([hw.EventId.C_BAD_STE]);
  });
});
