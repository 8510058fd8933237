import { Errno, Scheduler } from "@vsva/kernel";
import { errnoOf } from "@vsva/kernel/testing";
import { describe, expect, it } from "vitest";
import type { QueueEntryTrap, TrapReply, VtdTrap, VtdTrapEvent } from "../trap.js";
import { FakeEndpoint } from "../pci/testing/fake-endpoint.js";
import { R, STATUS, VtdRig, desc } from "./testing/rig.js";

const IQH = (rig: VtdRig): number => Number(rig.reg64(R.IQH));

/** A rig whose trap records every descriptor and answers with `reply`. */
function trapped(reply: (e: QueueEntryTrap<"descriptor">) => TrapReply, extra: { invalidation?: { scheduler: Scheduler } } = {}) {
  const seen: QueueEntryTrap<"descriptor">[] = [];
  const trap: VtdTrap = (e) => {
    if (e.kind !== "descriptor") return "pass";
    seen.push(e);
    return reply(e);
  };
  const rig = new VtdRig({ trap, ...extra }).bringUp();
  return { rig, seen };
}

describe("VT-d trap points: invalidation descriptors", () => {
  it("offer each fetched descriptor with its bytes, slot and address", () => {
    const { rig, seen } = trapped(() => "pass");
    rig.submit(desc.pasidCache(3, 5, 42), desc.wait({ sw: true, data: 7, addr: STATUS }));
    expect(seen.map((e) => [e.name, e.slot, e.addr, e.type])).toEqual([
      ["pasid-cache", 0, 0x20000, 7],
      ["wait", 1, 0x20000 + 32, 5],
    ]);
    // Bytes as in memory: PASID-cache type 7, G=3 at bits 5:4, DID 5 at 31:16, PASID 42 at 51:32.
    expect([...(seen[0]?.bytes.subarray(0, 8) ?? [])]).toEqual([0x37, 0, 5, 0, 42, 0, 0, 0]);
    expect(seen[0]?.bytes.length).toBe(32);
    expect(rig.mem.read32(STATUS)).toBe(7);
  });

  it("a deferred wait holds IQH on it and withholds its status write, and everything after it, until completed", () => {
    const { rig, seen } = trapped((e) => (e.name === "wait" && e.seq === 2 ? "defer" : "pass"));
    rig.submit(desc.pasidCache(3, 5, 42), desc.wait({ sw: true, iflag: true, data: 7, addr: STATUS }));
    expect([rig.mem.read32(STATUS), IQH(rig), rig.unit.deferred]).toEqual([0, 32, 2]);
    expect(rig.unit.mmioRead32(R.ICS) & 1).toBe(0);
    // Software queues more: nothing past the deferred descriptor is consumed.
    rig.submit(desc.wait({ sw: true, data: 8, addr: STATUS + 4 }));
    expect([rig.mem.read32(STATUS + 4), IQH(rig), seen.length]).toEqual([0, 32, 2]);
    rig.unit.completeDeferred(2, "pass");
    expect([rig.mem.read32(STATUS), rig.mem.read32(STATUS + 4), IQH(rig), rig.unit.deferred]).toEqual([7, 8, 96, null]);
    expect(rig.unit.mmioRead32(R.ICS) & 1).toBe(1);
    expect(errnoOf(() => rig.unit.completeDeferred(2, "pass"))).toBe(Errno.ENOENT);
  });

  it("a completion that is neither pass nor handled is EINVAL and the descriptor stays deferred", () => {
    const { rig } = trapped(() => "defer");
    rig.submit(desc.wait({ sw: true, data: 7, addr: STATUS }));
    const loose = rig.unit as unknown as { completeDeferred(seq: number, outcome: string): void };
    expect(errnoOf(() => loose.completeDeferred(1, "defer"))).toBe(Errno.EINVAL);
    expect([rig.unit.deferred, rig.mem.read32(STATUS), IQH(rig)]).toEqual([1, 0, 0]);
  });

  it("a handled descriptor is moved past without executing it", () => {
    const { rig } = trapped((e) => (e.name === "wait" ? "handled" : "pass"));
    rig.submit(desc.wait({ sw: true, data: 7, addr: STATUS }));
    expect([rig.mem.read32(STATUS), IQH(rig)]).toEqual([0, 32]);
  });

  it("a deferral completed as handled writes no status; an invalid descriptor completed as pass stops the queue with IQE", () => {
    const { rig } = trapped(() => "defer");
    rig.submit(desc.wait({ sw: true, data: 7, addr: STATUS }));
    rig.unit.completeDeferred(1, "handled");
    expect([rig.mem.read32(STATUS), IQH(rig), rig.unit.deferred]).toEqual([0, 32, null]);
    rig.submit([0xfn, 0n]); // type 15: invalid
    rig.unit.completeDeferred(2, "pass");
    expect([IQH(rig), (rig.unit.mmioRead32(R.FSTS) >> 4) & 1]).toEqual([32, 1]);
  });

  it("clearing QIE drops a deferred descriptor (ENOENT to complete it) with everything not yet consumed", () => {
    const { rig } = trapped((e) => (e.seq === 1 ? "defer" : "pass"));
    rig.submit(desc.wait({ sw: true, data: 7, addr: STATUS }));
    rig.gcmd(1 << 26, false);
    expect(rig.unit.deferred).toBeNull();
    expect(errnoOf(() => rig.unit.completeDeferred(1, "pass"))).toBe(Errno.ENOENT);
    rig.enableQi();
    rig.submit(desc.wait({ sw: true, data: 9, addr: STATUS }));
    expect(rig.mem.read32(STATUS)).toBe(9);
  });

  it("in deferred mode completion executes the descriptor at once and the rest of the queue in the work item", () => {
    const scheduler = new Scheduler();
    const { rig } = trapped((e) => (e.seq === 1 ? "defer" : "pass"), { invalidation: { scheduler } });
    rig.submit(desc.wait({ sw: true, data: 7, addr: STATUS }), desc.wait({ sw: true, data: 8, addr: STATUS + 4 }));
    scheduler.runUntilIdle();
    expect(rig.unit.deferred).toBe(1);
    rig.unit.completeDeferred(1, "pass");
    expect([rig.mem.read32(STATUS), rig.mem.read32(STATUS + 4)]).toEqual([7, 0]);
    scheduler.runUntilIdle();
    expect(rig.mem.read32(STATUS + 4)).toBe(8);
  });

  it("a page group response handled by the trap never reaches the endpoint", () => {
    const { rig, seen } = trapped((e) => (e.name === "page-group-response" && e.seq === 1 ? "handled" : "pass"));
    const ep = new FakeEndpoint(rig.dev);
    rig.unit.attachEndpoint(ep);
    rig.submit(desc.pageResponse(rig.dev, 3, 0, 5));
    expect(seen.map((e) => e.name)).toEqual(["page-group-response"]);
    expect(ep.responses).toEqual([]);
    // The same descriptor passed to the model is delivered.
    rig.submit(desc.pageResponse(rig.dev, 4, 0, 5));
    expect(ep.responses.map((r) => r.groupIndex)).toEqual([4]);
  });
});

describe("VT-d trap points: registers and virtual commands", () => {
  it("a read trap answers for the register; an answer wider than the access is EINVAL", () => {
    const rig = new VtdRig({ trap: (e) => (e.kind === "mmio-read" && e.offset === R.CAP ? { value: 0x1234_5678_9abc_def0n } : "pass") });
    expect(rig.reg64(R.CAP)).toBe(0x1234_5678_9abc_def0n);
    expect(errnoOf(() => rig.unit.mmioRead32(R.CAP))).toBe(Errno.EINVAL);
    expect(rig.unit.mmioRead32(R.VER)).toBe(0x30);
  });

  it("a reply that does not answer its event is EINVAL and the unit is unchanged", () => {
    const events: VtdTrapEvent["kind"][] = [];
    let bad = false;
    const rig = new VtdRig({
      trap: (e) => {
        events.push(e.kind);
        if (!bad) return "pass";
        return e.kind === "mmio-write" && e.offset === R.FEDATA ? "defer" : e.kind === "descriptor" ? { value: 1n } : "pass";
      },
    }).bringUp();
    rig.unit.mmioWrite32(R.FEDATA, 0x11);
    bad = true;
    expect(errnoOf(() => rig.unit.mmioWrite32(R.FEDATA, 0x55))).toBe(Errno.EINVAL);
    expect(rig.unit.mmioRead32(R.FEDATA)).toBe(0x11);
    expect(errnoOf(() => rig.submit(desc.wait({ sw: true, data: 7, addr: STATUS })))).toBe(Errno.EINVAL);
    expect([rig.mem.read32(STATUS), IQH(rig)]).toEqual([0, 0]);
    expect(events).toContain("descriptor");
  });
});
