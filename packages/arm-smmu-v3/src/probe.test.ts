import { describe, expect, it } from "vitest";
import { Errno } from "@vsva/kernel";
import { Cr0AckReg, SmmuReg, StrtabBaseCfgReg } from "@vsva/iommu-hw";
import { SmmuTestHost } from "./testing.js";

describe("probe and bring-up from IDR0-IDR5", () => {
  it("reads the unit's capabilities", () => {
    const h = new SmmuTestHost({ unit: { ssidBits: 16, sidBits: 16, asid16: false, oas: 44 } });
    const c = h.drv.hw.caps;
    expect(c).toMatchObject({ s1: true, s2: true, twoLevelStreamTable: true, twoLevelCdTable: true, sidBits: 16, ssidBits: 16, ats: true, pri: true, asidBits: 8, vmidBits: 16, oasBits: 44, gran4k: true });
    expect(h.drv.pasidBits).toBe(16);
  });

  it("enables the queues and translation, each step acknowledged in CR0ACK, with a 2-level stream table for 16-bit StreamIDs", () => {
    const h = new SmmuTestHost();
    const ack = Cr0AckReg.decode(Uint32Array.of(h.unit.mmioRead32(SmmuReg.CR0ACK)));
    expect(ack).toMatchObject({ SMMUEN: 1, CMDQEN: 1, EVENTQEN: 1, PRIQEN: 1 });
    const cfg = StrtabBaseCfgReg.decode(Uint32Array.of(h.unit.mmioRead32(SmmuReg.STRTAB_BASE_CFG)));
    expect(cfg).toMatchObject({ FMT: 1, SPLIT: 8, LOG2SIZE: 16 });
    // The CFGI_ALL + TLBI_NSNH_ALL of the reset went through the command queue.
    expect(h.unit.debug.queueStats.cmdq.processed).toBeGreaterThanOrEqual(3);
  });

  it("uses a linear stream table when the unit has no 2-level format", () => {
    const h = new SmmuTestHost({ unit: { twoLevelStreamTable: false, sidBits: 8 } });
    const cfg = StrtabBaseCfgReg.decode(Uint32Array.of(h.unit.mmioRead32(SmmuReg.STRTAB_BASE_CFG)));
    expect(cfg).toMatchObject({ FMT: 0, LOG2SIZE: 8 });
    const ep = h.endpoint();
    h.probe(ep);
    expect(h.drv.hw.strtab.tables).toBe(1);
  });

  it("a probed device gets its level-2 stream table; shutdown gives every page back", () => {
    const h = new SmmuTestHost();
    const before = h.pages.stats.livePages;
    const ep = h.endpoint();
    const dev = h.probe(ep);
    expect(h.pages.stats.livePages).toBeGreaterThan(before);
    h.core.releaseDevice(dev);
    h.drv.shutdown();
    expect(h.pages.live()).toEqual([]);
    expect(Cr0AckReg.get(Uint32Array.of(h.unit.mmioRead32(SmmuReg.CR0ACK)), "SMMUEN")).toBe(0);
  });

  it("refuses to set up a queue twice with EBUSY, allocating nothing and keeping the queue in use", () => {
    const h = new SmmuTestHost();
    const live = h.pages.stats.livePages;
    const cmdqBase = h.drv.hw.cmdq.base;
    expect(() => h.drv.hw.cmdq.setup()).toThrow(expect.objectContaining({ errno: Errno.EBUSY }));
    expect(() => h.drv.hw.evtq.setup()).toThrow(expect.objectContaining({ errno: Errno.EBUSY }));
    expect(h.pages.stats.livePages).toBe(live);
    expect(h.drv.hw.cmdq.base).toBe(cmdqBase);
    expect(h.unit.mmioRead64(SmmuReg.CMDQ_BASE) & 0xf_ffff_ffff_f000n).toBe(BigInt(cmdqBase));
  });
});

