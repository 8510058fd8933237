import { describe, expect, it } from "vitest";
import { Errno } from "@vsva/kernel";
import { CmdOp, CmdTlbiNhAsid } from "@vsva/iommu-hw";
import { EMPTY_NESTING_INFO, IommuProt, type PagingDomain } from "@vsva/iommu-core";
import { SmmuNestingDomain, SmmuS2Domain } from "./domain.js";
import { PATTERN, SmmuTestHost, dmaWrite } from "./testing.js";
import { errnoOf } from "@vsva/kernel/testing";

const RW = IommuProt.READ | IommuProt.WRITE;

describe("paging domains through the real unit", () => {
  it("stage 1: DMA without PASID goes through CD 0's tables; unmap + flush leaves nothing stale and the DMA faults", () => {
    const h = new SmmuTestHost();
    const ep = h.endpoint();
    const dev = h.probe(ep);
    const dom = h.core.domainAlloc(dev, { type: "unmanaged", nestingParent: false });
    h.core.attachDevice(dom, dev);
    h.core.map(dom, 0x10_0000, 0x30_0000, 0x2000, RW);
    expect(dmaWrite(ep, 0x10_1008, PATTERN)).toBe("ok");
    expect(h.mem.read32(0x30_1008)).toBe(0xefbeadde);
    h.core.unmap(dom, 0x10_0000, 0x2000);
    expect(h.unit.checkCaches()).toEqual([]);
    expect([...ep.deviceTlb.entries()]).toEqual([]);
    expect(dmaWrite(ep, 0x10_1008, PATTERN)).not.toBe("ok");
    h.core.detachDevice(dom, dev);
    h.core.domainFree(dom);
    expect(h.unit.checkStructureCaches()).toEqual([]);
  });

  it("a 2 MiB mapping is one block; its unmap invalidates the whole ASID", () => {
    const h = new SmmuTestHost();
    const ep = h.endpoint();
    const dev = h.probe(ep);
    const dom = h.core.domainAlloc(dev, { type: "unmanaged", nestingParent: false });
    h.core.attachDevice(dom, dev);
    h.core.map(dom, 0x20_0000, 0x40_0000, 0x20_0000, RW);
    expect(dmaWrite(ep, 0x3f_fff0, PATTERN)).toBe("ok");
    expect(h.mem.read32(0x5f_fff0)).toBe(0xefbeadde);
    const seen: string[] = [];
    h.kernel.trace.subscribe((e) => {
      if (e.kind === "smmu.command") seen.push(e.payload.name);
    });
    h.core.unmap(dom, 0x20_0000, 0x20_0000);
    expect(seen).toContain("CMD_TLBI_NH_ASID");
    expect(h.unit.checkCaches()).toEqual([]);
  });

  it("stage 2: a nesting parent translates by VMID, reports empty nesting info and refuses bind_gpasid (seed 004)", () => {
    const h = new SmmuTestHost();
    const ep = h.endpoint();
    const dev = h.probe(ep);
    const dom = h.core.domainAlloc(dev, { type: "unmanaged", nestingParent: true, ioasidSet: h.ioasid.allocSet({ vm: 1 }, 4, "mm") });
    const drv = (dom as PagingDomain).driver;
    expect(drv).toBeInstanceOf(SmmuNestingDomain);
    h.core.attachDevice(dom, dev);
    h.core.map(dom, 0x8000_0000, 0x50_0000, 0x1000, RW);
    expect(dmaWrite(ep, 0x8000_0004, PATTERN)).toBe("ok");
    expect(h.mem.read32(0x50_0004)).toBe(0xefbeadde);
    expect(h.core.nestingInfo(dom)).toEqual(EMPTY_NESTING_INFO);
    expect(errnoOf(() => (drv as SmmuNestingDomain).bindGpasid(dev, {} as never))).toBe(Errno.ENODEV);
    h.core.unmap(dom, 0x8000_0000, 0x1000);
    expect(h.unit.checkCaches()).toEqual([]);
    expect(dmaWrite(ep, 0x8000_0004, PATTERN)).not.toBe("ok");
  });

  it("a unit without stage 1 gives stage-2 paging domains", () => {
    const h = new SmmuTestHost({ unit: { stage1: false } });
    const ep = h.endpoint();
    const dev = h.probe(ep, "dsa0", 0);
    const dom = h.core.domainAlloc(dev, { type: "unmanaged", nestingParent: false });
    expect((dom as PagingDomain).driver).toBeInstanceOf(SmmuS2Domain);
    h.core.attachDevice(dom, dev);
    h.core.map(dom, 0x1000, 0x60_0000, 0x1000, RW);
    expect(dmaWrite(ep, 0x1000, PATTERN)).toBe("ok");
    expect(h.mem.read32(0x60_0000)).toBe(0xefbeadde);
  });

  it("identity bypasses, blocked aborts", () => {
    const h = new SmmuTestHost();
    const ep = h.endpoint();
    const dev = h.probe(ep);
    const id = h.core.domainAlloc(dev, { type: "identity" });
    h.core.attachDevice(id, dev);
    expect(dmaWrite(ep, 0x70_0000, PATTERN)).toBe("ok");
    expect(h.mem.read32(0x70_0000)).toBe(0xefbeadde);
    h.core.detachDevice(id, dev);
    const blocked = h.core.domainAlloc(dev, { type: "blocked" });
    h.core.attachDevice(blocked, dev);
    h.mem.write32(0x70_0000, 0);
    expect(dmaWrite(ep, 0x70_0000, PATTERN)).not.toBe("ok");
    expect(h.mem.read32(0x70_0000)).toBe(0);
  });
});

describe("command queue errors", () => {
  it("an illegal command is skipped as Linux does (rewritten as CMD_SYNC, GERRORN acknowledged): EIO, and the queue keeps working", () => {
    const h = new SmmuTestHost({ unit: { asid16: false } });
    const cmdq = h.drv.hw.cmdq;
    // ASID 0x1ff on a unit with 8-bit ASIDs: CERROR_ILL.
    const bad = CmdTlbiNhAsid.alloc();
    CmdTlbiNhAsid.set(bad, "OPCODE", CmdOp.TLBI_NH_ASID);
    CmdTlbiNhAsid.set(bad, "ASID", 0x1ff);
    let msg = "";
    try {
      cmdq.submit([bad]);
    } catch (e) {
      msg = String(e);
    }
    expect(msg).toMatch(/EIO.*CMD_TLBI_NH_ASID \(CERROR_ILL\)/);
    expect(cmdq.stats.errors).toBe(1);
    // Usable afterwards: a real flush path works and DMA through a new mapping is correct.
    const ep = h.endpoint();
    const dev = h.probe(ep);
    const dom = h.core.domainAlloc(dev, { type: "unmanaged", nestingParent: false });
    h.core.attachDevice(dom, dev);
    h.core.map(dom, 0x1000, 0x30_0000, 0x1000, RW);
    expect(dmaWrite(ep, 0x1000, PATTERN)).toBe("ok");
    h.core.unmap(dom, 0x1000, 0x1000);
    expect(h.unit.checkCaches()).toEqual([]);
  });

  it("works the same when the unit runs its queue from a work item (CONS polled while the driver waits)", () => {
    const h = new SmmuTestHost({ unit: { msi: false }, deferredCommands: true });
    const ep = h.endpoint();
    const dev = h.probe(ep);
    const dom = h.core.domainAlloc(dev, { type: "unmanaged", nestingParent: false });
    h.core.attachDevice(dom, dev);
    h.core.map(dom, 0x1000, 0x30_0000, 0x1000, RW);
    expect(dmaWrite(ep, 0x1000, PATTERN)).toBe("ok");
    h.core.unmap(dom, 0x1000, 0x1000);
    h.kernel.scheduler.drain();
    expect(h.unit.checkCaches()).toEqual([]);
    expect(dmaWrite(ep, 0x1000, PATTERN)).not.toBe("ok");
  });
});
