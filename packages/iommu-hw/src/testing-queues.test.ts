import { Errno } from "@vsva/kernel";
import { errnoOf } from "@vsva/kernel/testing";
import { describe, expect, it } from "vitest";
import { submitSmmuCommands, submitVtdDescriptors } from "./testing.js";
import { IQ_BASE, R, STATUS, VtdRig, desc } from "./vtd/testing/rig.js";
import { CMDQ, SR, SmmuRig, cmd } from "./smmu/testing/rig.js";

describe("queue submission helpers (@vsva/iommu-hw/testing)", () => {
  it("VT-d: 130 descriptors through a 128-slot queue wrap at its end, and the unit runs every one", () => {
    const rig = new VtdRig().bringUp(); // 256-bit descriptors, QS = 0: 4 KiB, 128 slots
    const waits = Array.from({ length: 130 }, (_, i) => desc.wait({ sw: true, data: i + 1, addr: STATUS }));
    const before = rig.unit.debug.queueStats.processed;
    const tail = submitVtdDescriptors(rig.unit, rig.mem, waits);
    expect(tail).toBe((130 * 32) % 4096);
    expect(rig.reg64(R.IQT)).toBe(BigInt(tail));
    expect(rig.reg64(R.IQH)).toBe(BigInt(tail));
    expect(rig.unit.debug.queueStats.processed - before).toBe(130);
    expect(Number(rig.r64(STATUS) & 0xffff_ffffn)).toBe(130); // the last status write
    // Slot 1 was reused by the 130th descriptor after the wrap.
    expect(rig.r64(IQ_BASE + 32) >> 32n).toBe(130n);
  });

  it("VT-d: continues from whatever IQT another producer left", () => {
    const rig = new VtdRig().bringUp();
    rig.submit(desc.contextCache(1), desc.contextCache(1), desc.contextCache(1));
    expect(submitVtdDescriptors(rig.unit, rig.mem, [desc.iotlb(1)])).toBe(4 * 32);
  });

  it("SMMUv3: 300 commands through a 256-entry queue toggle the wrap bit of CMDQ_PROD and all complete", () => {
    const rig = new SmmuRig().bringUp(); // CMDQ of 2^8 entries
    const before = rig.unit.debug.queueStats.cmdq.processed;
    const cmds = Array.from({ length: 300 }, (_, i) => (i === 299 ? cmd.nhAll(9) : cmd.cfgiAll()));
    const prod = submitSmmuCommands(rig.unit, rig.mem, cmds);
    expect(prod).toBe(256 | 44); // wrap bit set, index 300 - 256
    expect(rig.reg(SR.CMDQ_PROD)).toBe(prod);
    expect(rig.reg(SR.CMDQ_CONS)).toBe(prod); // consumed, no error
    expect(rig.unit.debug.queueStats.cmdq.processed - before).toBe(300);
    expect(rig.r64(CMDQ + 16 * 43) & 0xffn).toBe(0x10n); // the last command, written after the wrap
  });

  it("refuses a descriptor larger than the queue's entries with EINVAL", () => {
    const rig = new VtdRig();
    rig.setRootTable();
    rig.enableQi(false); // 128-bit descriptors
    expect(errnoOf(() => submitVtdDescriptors(rig.unit, rig.mem, [[1n, 0n, 0n, 0n]]))).toBe(Errno.EINVAL);
  });
});
