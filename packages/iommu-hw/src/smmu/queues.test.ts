import { sourceId } from "@vsva/kernel";
import { describe, expect, it } from "vitest";
import { PciEndpoint } from "../pci/endpoint.js";
import { pciEnableForSva } from "../pci/pci-enable.js";
import { CD_TABLE, CR0_CMDQEN, CR0_EVENTQEN, CR0_PRIQEN, CR0_SMMUEN, EVENTQ, PRIQ, S1_PAGE, SR, SmmuRig, cmd } from "./testing/rig.js";
import { FakeEndpoint } from "../pci/testing/fake-endpoint.js";
import { mapPath } from "./testing/tables.js";

describe("registers", () => {
  it("reports the configured capabilities in IDR0, IDR1, IDR3 and IDR5", () => {
    const rig = new SmmuRig({ stage2: false, ssidBits: 16, sidBits: 20, pri: false, oas: 44, hyp: true, twoLevelCdTable: false });
    const idr0 = rig.reg(SR.IDR0);
    expect([idr0 & 1, (idr0 >> 1) & 1, (idr0 >> 2) & 3, (idr0 >> 9) & 1, (idr0 >> 10) & 1, (idr0 >> 16) & 1, (idr0 >> 19) & 1, (idr0 >> 24) & 3, (idr0 >> 27) & 3]).toEqual([
      0, 1, 2, 1, 1, 0, 0, 1, 1,
    ]);
    const idr1 = rig.reg(SR.IDR1);
    expect([idr1 & 0x3f, (idr1 >> 6) & 0x1f]).toEqual([20, 16]);
    expect(rig.reg(SR.IDR5) & 7).toBe(4);
    expect((rig.reg(SR.IDR5) >> 4) & 1).toBe(1);
    expect((rig.reg(SR.IDR3) >> 10) & 1).toBe(1);
    rig.setReg(SR.IDR0, 0);
    expect(rig.reg(SR.IDR0)).toBe(idr0);
  });

  it("acknowledges CR0 and IRQ_CTRL in CR0ACK and IRQ_CTRLACK; reserved bits read as zero", () => {
    const rig = new SmmuRig();
    rig.setReg(SR.CR0, 0xffff_ffff);
    expect(rig.reg(SR.CR0)).toBe(0x1df);
    expect(rig.reg(SR.CR0ACK)).toBe(0x1df);
    rig.setReg(SR.IRQ_CTRL, 0xff);
    expect(rig.reg(SR.IRQ_CTRLACK)).toBe(7);
  });

  it("keeps the event and PRI queue pointers in page 1; their page-0 offsets are reserved", () => {
    const rig = new SmmuRig();
    rig.setReg(SR.EVENTQ_PROD, 5);
    rig.setReg(0xa8, 9);
    expect([rig.reg(SR.EVENTQ_PROD), rig.reg(0xa8)]).toEqual([5, 0]);
    rig.setReg(SR.PRIQ_CONS, 0x8000_0003);
    expect(rig.reg(SR.PRIQ_CONS)).toBe(0x8000_0003);
  });

  it("refuses a write of a queue's base or producer pointer while it is enabled", () => {
    const rig = new SmmuRig().bringUp();
    rig.setReg(SR.EVENTQ_PROD, 3);
    rig.setReg64(SR.EVENTQ_BASE, 0x9000n);
    expect(rig.reg(SR.EVENTQ_PROD)).toBe(0);
    expect(rig.reg(SR.EVENTQ_BASE)).toBe(EVENTQ | 6);
  });

  it("raises a GERROR bit once (toggle) and interrupts through GERROR_IRQ_CFG0/1", () => {
    const rig = new SmmuRig().bringUp();
    rig.setReg64(SR.GERROR_IRQ_CFG0, 0xfee0_0000n);
    rig.setReg(SR.GERROR_IRQ_CFG1, 0x31);
    rig.submit(cmd.raw(0xffn, 0n));
    expect(rig.reg(SR.GERROR)).toBe(1);
    expect(rig.interrupts.filter((i) => i.source === "gerror")).toEqual([{ source: "gerror", addr: 0xfee0_0000, data: 0x31 }]);
    // Acknowledging without fixing the command: the queue resumes at CONS, meets it again, and the bit toggles back.
    rig.setReg(SR.GERRORN, 1);
    expect([rig.reg(SR.GERROR), rig.reg(SR.GERRORN)]).toEqual([0, 1]);
    expect(rig.interrupts.filter((i) => i.source === "gerror")).toHaveLength(2);
  });
});

describe("event queue", () => {
  it("loses events when full and toggles EVENTQ_PROD.OVFLG once until software acknowledges it in OVACKFLG", () => {
    const rig = new SmmuRig().bringUp({ eventqLog2: 2 });
    rig.ste(rig.dev, { v: false, config: 4 });
    const fault = (): boolean => rig.unit.translate({ sid: rig.dev, addr: 0, write: false }).ok;
    for (let i = 0; i < 4; i++) fault();
    expect(rig.reg(SR.EVENTQ_PROD)).toBe(4); // index 0, wrap 1: full
    fault();
    expect(rig.reg(SR.EVENTQ_PROD)).toBe(0x8000_0004);
    fault();
    expect(rig.reg(SR.EVENTQ_PROD)).toBe(0x8000_0004);
    expect(rig.unit.debug.queueStats.eventq).toMatchObject({ written: 4, overflowed: 2 });
    expect(rig.events()).toHaveLength(4);
    rig.setReg(SR.EVENTQ_CONS, 0x8000_0004);
    fault();
    fault();
    expect(rig.reg(SR.EVENTQ_PROD)).toBe(0x8000_0006);
  });

  it("drops events while EVENTQEN is clear, and raises GERROR.EVTQ_ABT_ERR when the queue is not in memory", () => {
    const rig = new SmmuRig().bringUp({ cr0: CR0_SMMUEN | CR0_CMDQEN });
    rig.ste(rig.dev, { v: false, config: 4 });
    rig.unit.translate({ sid: rig.dev, addr: 0, write: false });
    expect(rig.reg(SR.EVENTQ_PROD)).toBe(0);
    rig.setReg64(SR.EVENTQ_BASE, 0x40_0000_0000n | 4n);
    rig.setReg(SR.CR0, CR0_SMMUEN | CR0_CMDQEN | CR0_EVENTQEN);
    rig.unit.translate({ sid: rig.dev, addr: 0, write: false });
    expect(rig.reg(SR.GERROR) & 4).toBe(4);
  });
});

describe("PRI queue", () => {
  const req = (rig: SmmuRig, o: Partial<Parameters<SmmuRig["unit"]["pageRequest"]>[0]> = {}) => ({
    sid: rig.dev, pasid: 0x4_5678, priv: true, exec: false, addr: 0x7f12_3456_7000, read: true, write: true, lastInGroup: true, groupIndex: 0x1a5, ...o,
  });

  it("writes 16-byte entries with every field of SMMUv3 spec §8.1", () => {
    const rig = new SmmuRig().bringUp();
    expect(rig.unit.pageRequest(req(rig))).toBe(true);
    const dw0 = rig.r64(PRIQ);
    const dw1 = rig.r64(PRIQ + 8);
    expect(dw0).toBe(BigInt(rig.dev) | (0x4_5678n << 32n) | (1n << 58n) | (1n << 60n) | (1n << 61n) | (1n << 62n) | (1n << 63n));
    expect(dw1).toBe(0x1a5n | 0x7f12_3456_7000n);
    expect(rig.reg(SR.PRIQ_PROD)).toBe(1);
  });

  it("overflows: the request is lost, OVFLG toggles and a last-in-group request is answered Success by the unit", () => {
    const rig = new SmmuRig().bringUp({ priqLog2: 1 });
    const ep = new FakeEndpoint(rig.dev);
    rig.unit.attachEndpoint(ep);
    expect([rig.unit.pageRequest(req(rig, { lastInGroup: false })), rig.unit.pageRequest(req(rig, { lastInGroup: false }))]).toEqual([true, true]);
    expect(rig.unit.pageRequest(req(rig, { groupIndex: 3 }))).toBe(false);
    expect(rig.reg(SR.PRIQ_PROD) >>> 31).toBe(1);
    expect(ep.responses).toEqual([{ sid: rig.dev, pasid: 0x4_5678, groupIndex: 3, code: "success" }]);
  });

  it("refuses requests while PRIQEN is clear, answering Invalid Request", () => {
    const rig = new SmmuRig().bringUp({ cr0: CR0_SMMUEN | CR0_EVENTQEN | CR0_CMDQEN });
    const ep = new FakeEndpoint(rig.dev);
    rig.unit.attachEndpoint(ep);
    expect(rig.unit.pageRequest(req(rig))).toBe(false);
    expect(ep.responses.map((r) => r.code)).toEqual(["invalid"]);
  });

  it("round trip with the PCIe endpoint: ATS miss, page request, software maps it and sends CMD_PRI_RESP, DMA completes", () => {
    const rig = new SmmuRig().bringUp();
    const root = rig.alloc();
    rig.ste(rig.dev, { config: 5, ctx: CD_TABLE, cdmax: 8, eats: 1 });
    rig.cd(CD_TABLE + 64 * 3, { ttb0: root, asid: 3 });
    mapPath(rig, root, 0x1000, 0x9000n | S1_PAGE);
    const ep = new PciEndpoint({
      bus: 0, dev: 2, fn: 0, mem: rig.mem, id: { vendorId: 0x13b5, deviceId: 0xff80 },
      pasid: { maxWidth: 20, exec: true, priv: true }, ats: {}, pri: { outstandingCapacity: 32 },
    });
    pciEnableForSva(ep);
    ep.attach(rig.unit);
    rig.unit.attachEndpoint(ep);
    expect(ep.sid).toBe(sourceId(0, 2, 0));

    ep.dma.setProgram({ pasid: 3, addr: 0x5000, length: 16, direction: "write", pattern: new Uint8Array([1, 2, 3, 4]) });
    expect(ep.dma.trigger()).toBe("pageRequestPending");
    const dw0 = rig.r64(PRIQ);
    const dw1 = rig.r64(PRIQ + 8);
    expect(Number((dw0 >> 32n) & 0xfffffn)).toBe(3);
    expect(dw1 & ~0xfffn).toBe(0x5000n);
    expect(rig.events()).toEqual([]); // an ATS miss is answered to the device, not recorded

    mapPath(rig, root, 0x5000, 0xa_0000n | S1_PAGE);
    rig.setReg(SR.PRIQ_CONS, 1);
    rig.submit(cmd.priResp(rig.dev, 3, Number(dw1 & 0x1ffn), 2));
    expect(ep.dma.result).toBe("ok");
    expect(rig.mem.read32(0xa_0000)).toBe(0x04030201);
  });
});

describe("interrupts", () => {
  it("signals the event-queue interrupt as an MSI from EVENTQ_IRQ_CFG0/1 when EVENTQ_IRQEN", () => {
    const rig = new SmmuRig().bringUp({ cr0: CR0_SMMUEN | CR0_EVENTQEN | CR0_PRIQEN | CR0_CMDQEN });
    rig.setReg64(SR.EVENTQ_IRQ_CFG0, 0xfee0_1000n);
    rig.setReg(SR.EVENTQ_IRQ_CFG1, 0x42);
    rig.ste(rig.dev, { v: false, config: 4 });
    rig.unit.translate({ sid: rig.dev, addr: 0, write: false });
    expect(rig.interrupts).toEqual([{ source: "eventq", addr: 0xfee0_1000, data: 0x42 }]);
  });
});
