import { describe, expect, it } from "vitest";
import { sourceId } from "@vsva/kernel";
import { type PhysMem, PlatformDmaMaster, type PlatformDmaStatus, type SmmuUnit } from "@vsva/iommu-hw";
import { Prot, type SvaBond } from "@vsva/iommu-core";
import { PATTERN, SmmuTestHost, dmaWrite } from "./testing.js";

const RW = Prot.READ | Prot.WRITE;
const STALL_SID = sourceId(0, 6, 0);
/** A platform (non-PCIe) master that writes one small buffer by StreamID and SubstreamID, and waits when the SMMU stalls it. */
function stallingMaster(unit: SmmuUnit, mem: PhysMem) {
  const master = new PlatformDmaMaster({ sid: STALL_SID, mem });
  master.attach(unit);
  unit.attachEndpoint(master);
  return Object.assign(master, {
    write: (ssid: number, addr: number, bytes: Uint8Array): PlatformDmaStatus =>
      master.start({ ssid, addr, length: bytes.length, direction: "write", pattern: bytes }),
  });
}

function stallHost() {
  const h = new SmmuTestHost({ unit: { stall: true }, firmware: { dmaCanStall: (sid) => sid === STALL_SID } });
  const master = stallingMaster(h.unit, h.mem);
  const dev = h.probe(master, "accel0", 16);
  h.core.enableFeature(dev, "sva");
  h.core.enableFeature(dev, "iopf");
  const mm = h.newMm();
  const bond: SvaBond = h.core.sva.bindDevice(dev, mm);
  return { h, master, dev, mm, bond };
}

describe("arm-smmu-v3: stall model for a master firmware marks dma-can-stall", () => {
  it("an SVA write to a page not yet faulted in stalls; the driver reports it, the core faults the page in, CMD_RESUME retry completes the DMA", () => {
    const { h, master, mm, bond } = stallHost();
    const va = mm.mmap(null, 0x1000, RW);
    expect(master.write(bond.pasid, va + 8, PATTERN)).toBe("stalled");
    expect(h.unit.debug.outstandingStalls).toBe(1);
    const actions: string[] = [];
    h.kernel.trace.subscribe((e) => {
      if (e.kind === "smmu-drv.stall") actions.push(e.payload.action);
    });
    h.kernel.scheduler.runUntilIdle();
    expect(actions).toEqual(["reported", "retry"]);
    expect(master.status).toBe("ok");
    expect(mm.read(va + 8, 4)).toEqual(PATTERN);
    expect(h.unit.debug.outstandingStalls).toBe(0);
    expect(h.drv.prq.stalls.pending).toBe(0);
    expect(h.unit.debug.checkCaches()).toEqual([]);
    h.core.sva.unbindDevice(bond);
  });

  it("a stall on an address no mapping covers is answered invalid and the transaction aborted", () => {
    const { h, master, bond } = stallHost();
    expect(master.write(bond.pasid, 0x7700_0000, PATTERN)).toBe("stalled");
    h.kernel.scheduler.runUntilIdle();
    expect(master.status).toBe("fault");
    expect(h.drv.prq.stalls.stats).toMatchObject({ reported: 1, aborted: 1, resumed: 0 });
    expect(h.unit.debug.outstandingStalls).toBe(0);
    h.core.sva.unbindDevice(bond);
  });

  it("exit before unbind with a stall outstanding: release aborts it before the CD turns quiet; later DMA aborts without stalling", () => {
    const { h, master, mm, bond } = stallHost();
    const va = mm.mmap(null, 0x1000, RW);
    expect(master.write(bond.pasid, va, PATTERN)).toBe("stalled");
    mm.exit();
    expect(master.status).toBe("fault");
    expect(h.unit.debug.outstandingStalls).toBe(0);
    h.kernel.scheduler.runUntilIdle();
    expect(master.write(bond.pasid, va, PATTERN)).toBe("fault");
    expect(h.unit.debug.outstandingStalls).toBe(0);
    h.core.sva.unbindDevice(bond);
    expect(h.drv.sva.asidsHeld).toBe(0);
  });

  it("unbind with a stall outstanding aborts it before the CD is cleared; releasing the device aborts the binds' stalls, then CMD_STALL_TERM", () => {
    const { h, master, dev, mm, bond } = stallHost();
    const va = mm.mmap(null, 0x1000, RW);
    master.write(bond.pasid, va, PATTERN);
    h.core.sva.unbindDevice(bond);
    expect(master.status).toBe("fault");
    expect(h.unit.debug.outstandingStalls).toBe(0);
    const bond2 = h.core.sva.bindDevice(dev, mm);
    master.write(bond2.pasid, va + 0x10_0000, PATTERN);
    expect(h.unit.debug.outstandingStalls).toBe(1);
    const actions: string[] = [];
    h.kernel.trace.subscribe((e) => {
      if (e.kind === "smmu-drv.stall") actions.push(e.payload.action);
    });
    h.core.releaseDevice(dev);
    expect(actions).toEqual(["reported", "abort", "stall-term"]);
    expect(master.status).toBe("fault");
    expect(h.unit.debug.outstandingStalls).toBe(0);
    h.kernel.scheduler.runUntilIdle();
    expect(h.unit.debug.outstandingStalls).toBe(0);
  });

  it("a PCIe function on the same stall-capable unit keeps PRI (STE.S1STALLD set, CD.S clear)", () => {
    const h = new SmmuTestHost({ unit: { stall: true }, firmware: { dmaCanStall: (sid) => sid === STALL_SID } });
    const ep = h.endpoint();
    const dev = h.probe(ep);
    h.core.enableFeature(dev, "sva");
    h.core.enableFeature(dev, "iopf");
    const mm = h.newMm();
    const va = mm.mmap(null, 0x1000, RW);
    const bond = h.core.sva.bindDevice(dev, mm);
    expect(dmaWrite(ep, va, PATTERN, bond.pasid)).toBe("pageRequestPending");
    h.kernel.scheduler.runUntilIdle();
    expect(ep.dma.trigger()).toBe("ok");
    expect(h.unit.debug.outstandingStalls).toBe(0);
    expect(h.drv.hw.master(dev).stallEnabled).toBe(false);
    h.core.sva.unbindDevice(bond);
  });
});

describe("arm-smmu-v3: fail-nth over a stalling master's bind and stall round trip", () => {
  function scenario(n: number | null) {
    const h = new SmmuTestHost({ unit: { stall: true }, firmware: { dmaCanStall: (sid) => sid === STALL_SID }, init: false });
    const master = stallingMaster(h.unit, h.mem);
    const mm = h.newMm();
    let dev: ReturnType<SmmuTestHost["probe"]> | null = null;
    let bond: SvaBond | null = null;
    let failed = false;
    if (n !== null) h.kernel.faults.failNth(n);
    try {
      h.drv.init();
      dev = h.probe(master, "accel0", 16);
      h.core.enableFeature(dev, "sva");
      h.core.enableFeature(dev, "iopf");
      bond = h.core.sva.bindDevice(dev, mm);
      const va = mm.mmap(null, 0x1000, RW);
      master.write(bond.pasid, va, PATTERN);
      h.kernel.scheduler.runUntilIdle();
    } catch {
      failed = true;
    }
    h.kernel.faults.disarm();
    const injected = h.kernel.faults.injected.length;
    // Whatever happened, the master is never left waiting once the faults are handled.
    const settled = master.status !== "stalled";
    if (bond !== null) h.core.sva.unbindDevice(bond);
    mm.exit();
    if (dev !== null) h.core.releaseDevice(dev);
    h.drv.shutdown();
    return { h, failed, injected, settled, status: master.status };
  }

  it("every failure leaves no stall held, no page, ASID or PASID behind; a clean run completes the DMA", () => {
    expect(scenario(null)).toMatchObject({ failed: false, status: "ok" });
    let n = 1;
    for (; n < 200; n++) {
      const r = scenario(n);
      if (!r.failed && r.injected === 0) break;
      expect({ n, settled: r.settled, stalls: r.h.unit.debug.outstandingStalls, live: r.h.pages.live(), asids: r.h.drv.hw.asids.inUse, pasids: r.h.ioasid.allocated })
        .toEqual({ n, settled: true, stalls: 0, live: [], asids: 0, pasids: 0 });
    }
    expect(n).toBeGreaterThan(5);
    expect(n).toBeLessThan(200);
  });
});
