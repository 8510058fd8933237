import { type SourceId, sourceId } from "@vsva/kernel";
import { describe, expect, it } from "vitest";
import type { StallResolution } from "../iommu-port.js";
import { PlatformDmaMaster } from "./platform-master.js";
import { EventId } from "./structures.js";
import { CD_TABLE, CR0_CMDQEN, CR0_SMMUEN, S1_PAGE, S2_PAGE, SR, SmmuRig, cmd } from "./testing/rig.js";
import { mapPath } from "./testing/tables.js";

// Hand-encoded STEs and CDs (testing/rig.ts restates SMMUv3 spec chapters 4, 5 and 7 bit by bit); the stall model of SMMUv3 spec §6.3, SMMUv3 spec §5.2 S2S/S1STALLD, SMMUv3 spec §5.4 S, SMMUv3 spec chapter 4 RESUME/STALL_TERM, SMMUv3 spec §7.3 Stall/STAG.
const VA = 0x12_3456_7000;
const HOLE = VA + 0x1000;
const DATA = Uint8Array.of(0xca, 0xfe, 0xf0, 0x0d);

interface Opts {
  s?: boolean;
  s1stalld?: boolean;
  stallMax?: number;
  eventqLog2?: number;
  cr0?: number;
}

/** A stage-1 stream whose CD stalls (S = 1, R = 1), one page mapped at VA and a hole at VA + 4 KiB, and a platform master on it. */
function stallRig(o: Opts = {}): { rig: SmmuRig; root: number; master: PlatformDmaMaster; dev: SourceId } {
  const rig = new SmmuRig({ stall: true, ...(o.stallMax === undefined ? {} : { stallMax: o.stallMax }) }).bringUp({
    ...(o.eventqLog2 === undefined ? {} : { eventqLog2: o.eventqLog2 }),
    ...(o.cr0 === undefined ? {} : { cr0: o.cr0 }),
  });
  const root = rig.alloc();
  rig.ste(rig.dev, { config: 5, ctx: CD_TABLE, s1stalld: o.s1stalld ?? false });
  rig.cd(CD_TABLE, { ttb0: root, asid: 7, s: o.s ?? true });
  mapPath(rig, root, VA, 0x9000n | S1_PAGE);
  const master = new PlatformDmaMaster({ sid: rig.dev, mem: rig.mem });
  master.attach(rig.unit);
  rig.unit.attachEndpoint(master);
  return { rig, root, master, dev: rig.dev };
}

function read(rig: SmmuRig, pa: number, n: number): Uint8Array {
  const out = new Uint8Array(n);
  rig.mem.readBytes(pa, out);
  return out;
}

describe("SMMUv3 stall model: capabilities", () => {
  it("advertises stall-and-terminate (IDR0.STALL_MODEL = 0) and IDR5.STALL_MAX only when built with stall", () => {
    const on = new SmmuRig({ stall: true, stallMax: 32 });
    expect((on.reg(SR.IDR0) >>> 24) & 3).toBe(0);
    expect(on.reg(SR.IDR5) >>> 16).toBe(32);
    const off = new SmmuRig();
    expect((off.reg(SR.IDR0) >>> 24) & 3).toBe(1);
    expect(off.reg(SR.IDR5) >>> 16).toBe(0);
  });
});

describe("SMMUv3 stall model: a stage-1 fault on a stalling CD holds the transaction", () => {
  it("writes an event with Stall = 1 and a STAG, holds the DMA, and a RESUME retry after the mapping appears completes it", () => {
    const { rig, root, master, dev } = stallRig();
    expect(master.start({ addr: HOLE + 0x20, length: 4, direction: "write", pattern: DATA })).toBe("stalled");
    const [e, ...more] = rig.events();
    expect(more).toEqual([]);
    expect(e).toMatchObject({ id: EventId.F_TRANSLATION, sid: dev, stall: true, stag: master.stag, rnw: false, cls: 2, addr: BigInt(HOLE + 0x20) });
    expect(rig.unit.debug.outstandingStalls).toBe(1);
    mapPath(rig, root, HOLE, 0xa000n | S1_PAGE);
    rig.submit(cmd.resume(dev, e?.stag ?? -1, 1), cmd.sync());
    expect(master.status).toBe("ok");
    expect(read(rig, 0xa020, 4)).toEqual(DATA);
    expect(rig.unit.debug.outstandingStalls).toBe(0);
    // Stalls leave nothing stale behind: every cached translation is what a fresh walk finds.
    expect(rig.unit.debug.checkCaches()).toEqual([]);
    expect(rig.events()).toEqual([]);
  });

  it("a retry that faults again stalls again, with a new event and a tag unique among the outstanding stalls", () => {
    const { rig, master, dev } = stallRig();
    const other = rig.unit.translate({ sid: dev, addr: HOLE + 0x2000, write: false });
    expect(other).toMatchObject({ ok: false, stalled: { stag: 0 } });
    master.start({ addr: HOLE, length: 8, direction: "read" });
    const first = master.stag;
    expect(first).toBe(1);
    rig.submit(cmd.resume(dev, first, 1));
    expect(master.status).toBe("stalled");
    const events = rig.events();
    expect(events.map((e) => [e.stall, e.stag])).toEqual([[true, 0], [true, 1], [true, master.stag]]);
    expect(master.stag).not.toBe(0);
    expect(rig.unit.debug.outstandingStalls).toBe(2);
  });

  it("RESUME terminate (and abort) ends the transaction with the fault it stalled on", () => {
    for (const resp of [0, 2]) {
      const { rig, master, dev } = stallRig();
      master.start({ addr: VA + 0xff0, length: 0x20, direction: "write", pattern: DATA });
      expect(master.transferred).toBe(0x10);
      rig.submit(cmd.resume(dev, master.stag, resp));
      expect(master.status).toBe("fault");
      expect(master.lastFault).toMatchObject({ reason: EventId.F_TRANSLATION, recoverable: false });
      expect(master.lastFault?.stalled).toBeUndefined();
      expect(master.transferred).toBe(0x10);
      expect(rig.unit.debug.outstandingStalls).toBe(0);
    }
  });

  it("CMD_STALL_TERM terminates every stall of its StreamID and none of another", () => {
    const { rig, master, dev } = stallRig();
    const dev2 = sourceId(0, 3, 0);
    rig.ste(dev2, { config: 5, ctx: CD_TABLE });
    const heard: StallResolution[] = [];
    rig.unit.attachEndpoint({ sid: dev2, invalidateDeviceTlb: () => undefined, pageResponse: () => undefined, stallResolved: (r) => heard.push(r) });
    master.start({ addr: HOLE, length: 4, direction: "write" });
    const direct = rig.unit.translate({ sid: dev, addr: HOLE + 0x3000, write: true });
    const elsewhere = rig.unit.translate({ sid: dev2, addr: HOLE, write: true });
    expect([direct.ok, elsewhere.ok, rig.unit.debug.outstandingStalls]).toEqual([false, false, 3]);
    rig.submit(cmd.stallTerm(dev));
    expect(master.status).toBe("fault");
    expect(rig.unit.debug.outstandingStalls).toBe(1);
    expect(heard).toEqual([]);
    rig.submit(cmd.stallTerm(dev2));
    expect(heard).toMatchObject([{ stag: elsewhere.ok ? -1 : elsewhere.stalled?.stag, result: { ok: false, reason: EventId.F_TRANSLATION } }]);
  });

  it("a RESUME whose STAG names no stall of that StreamID is ignored", () => {
    const { rig, master, dev } = stallRig();
    master.start({ addr: HOLE, length: 4, direction: "write" });
    rig.submit(cmd.resume(dev, master.stag + 1, 1), cmd.resume(sourceId(0, 3, 0), master.stag, 0), cmd.sync());
    expect(master.status).toBe("stalled");
    expect(rig.unit.debug.outstandingStalls).toBe(1);
    expect(rig.reg(SR.CMDQ_CONS) >>> 24).toBe(0);
  });

  it("disabling the stream (an aborting STE, then CFGI_STE) terminates its stalls; a CFGI_STE that keeps the stream leaves them", () => {
    const { rig, master, dev } = stallRig();
    master.start({ addr: HOLE, length: 4, direction: "write" });
    rig.submit(cmd.cfgiSte(dev), cmd.sync());
    expect(master.status).toBe("stalled");
    rig.ste(dev, { config: 0 });
    rig.submit(cmd.cfgiSte(dev), cmd.sync());
    expect(master.status).toBe("fault");
    expect(rig.unit.debug.outstandingStalls).toBe(0);
  });

  it("clearing SMMUEN terminates every stall", () => {
    const { rig, master } = stallRig();
    master.start({ addr: HOLE, length: 4, direction: "write" });
    rig.setReg(SR.CR0, CR0_CMDQEN);
    expect(master.status).toBe("fault");
  });
});

describe("SMMUv3 stall model: when a fault cannot stall it is terminated", () => {
  it("terminates when the event queue is full (the stall could not be reported), and when it is disabled", () => {
    const full = stallRig({ eventqLog2: 1 });
    const u = full.rig.unit;
    expect(u.translate({ sid: full.dev, addr: HOLE, write: true })).toMatchObject({ stalled: { stag: 0 } });
    expect(u.translate({ sid: full.dev, addr: HOLE + 0x1000, write: true })).toMatchObject({ stalled: { stag: 1 } });
    const third = u.translate({ sid: full.dev, addr: HOLE + 0x2000, write: true });
    expect(third).toMatchObject({ ok: false, reason: EventId.F_TRANSLATION });
    expect(third.ok ? null : third.stalled).toBeUndefined();
    expect(u.debug.outstandingStalls).toBe(2);
    expect(u.debug.queueStats.eventq.overflowed).toBe(1);

    const off = stallRig({ cr0: CR0_SMMUEN | CR0_CMDQEN });
    expect(off.master.start({ addr: HOLE, length: 4, direction: "write" })).toBe("fault");
    expect(off.rig.unit.debug.outstandingStalls).toBe(0);
  });

  it("terminates beyond IDR5.STALL_MAX outstanding stalls", () => {
    const { rig, dev } = stallRig({ stallMax: 2 });
    const r = [0, 1, 2].map((i) => rig.unit.translate({ sid: dev, addr: HOLE + i * 0x1000, write: false }));
    expect(r.map((x) => (x.ok ? "ok" : x.stalled?.stag ?? "terminated"))).toEqual([0, 1, "terminated"]);
  });

  it("a CD with S = 0 terminates as before; S = 1 under STE.S1STALLD = 1 is C_BAD_CD", () => {
    const plain = stallRig({ s: false });
    expect(plain.master.start({ addr: HOLE, length: 4, direction: "write" })).toBe("fault");
    expect(plain.rig.events()).toMatchObject([{ id: EventId.F_TRANSLATION, stall: false, stag: 0 }]);
    const bad = stallRig({ s1stalld: true });
    expect(bad.master.start({ addr: VA, length: 4, direction: "write" })).toBe("fault");
    expect(bad.rig.events()).toMatchObject([{ id: EventId.C_BAD_CD, stall: false }]);
  });

  it("an ATS translation request never stalls (it is answered to the device)", () => {
    const { rig, dev } = stallRig();
    rig.ste(dev, { config: 5, ctx: CD_TABLE, eats: 1 });
    rig.submit(cmd.cfgiSte(dev));
    const r = rig.unit.translate({ sid: dev, addr: HOLE, write: false, ats: true });
    expect(r.ok ? null : r.stalled).toBeUndefined();
    expect(rig.unit.debug.outstandingStalls).toBe(0);
  });

  it("a unit without the stall model refuses CD.S = 1 (C_BAD_CD) and CMD_RESUME (CERROR_ILL)", () => {
    const rig = new SmmuRig().bringUp();
    rig.ste(rig.dev, { config: 5, ctx: CD_TABLE });
    rig.cd(CD_TABLE, { ttb0: rig.alloc(), s: true });
    expect(rig.unit.translate({ sid: rig.dev, addr: VA, write: false })).toMatchObject({ reason: EventId.C_BAD_CD });
    rig.submit(cmd.resume(rig.dev, 0, 1));
    expect((rig.reg(SR.CMDQ_CONS) >>> 24) & 0x7f).toBe(1);
  });
});

describe("SMMUv3 stall model: stage 2", () => {
  it("a stage-2 fault stalls with STE.S2S = 1 (event S2 = 1, the IPA) and a retry completes once stage 2 maps it", () => {
    const rig = new SmmuRig({ stall: true }).bringUp();
    const s2 = rig.alloc();
    rig.ste(rig.dev, { config: 6, vmid: 5, s2ttb: s2, s2r: true, s2s: true });
    const master = new PlatformDmaMaster({ sid: rig.dev, mem: rig.mem });
    master.attach(rig.unit);
    rig.unit.attachEndpoint(master);
    expect(master.start({ addr: 0x4000_1008, length: 4, direction: "write", pattern: DATA })).toBe("stalled");
    expect(rig.events()).toMatchObject([{ id: EventId.F_TRANSLATION, s2: true, stall: true, stag: master.stag, dw3: 0x4000_1000n }]);
    mapPath(rig, s2, 0x4000_1000, 0xb000n | S2_PAGE);
    rig.submit(cmd.resume(rig.dev, master.stag, 1));
    expect(master.status).toBe("ok");
    expect(read(rig, 0xb008, 4)).toEqual(DATA);
  });
});
