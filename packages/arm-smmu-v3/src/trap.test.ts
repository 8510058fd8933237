import { describe, expect, it } from "vitest";
import { Errno, type TraceEvent, TraceRecorder } from "@vsva/kernel";
import { errnoOf } from "@vsva/kernel/testing";
import { CmdCfgiCd, CmdOp, CmdSync, CmdqConsReg, Cr0AckReg, GbpaReg, type SmmuTrap, SmmuReg, type SparseMemory, readReg } from "@vsva/iommu-hw";
import { Prot } from "@vsva/iommu-core";
import { PATTERN, SmmuTestHost, dmaWrite } from "./testing.js";

const RW = Prot.READ | Prot.WRITE;

/** Every non-zero 4 KiB page's bytes, by address (the state a run leaves in memory). */
function memoryImage(mem: SparseMemory, bytes: number): Map<number, string> {
  const out = new Map<number, string>();
  const page = new Uint8Array(4096);
  for (let pa = 0; pa < bytes; pa += 4096) {
    if (!mem.readBytes(pa, page) || page.every((b) => b === 0)) continue;
    out.set(pa, Buffer.from(page).toString("base64"));
  }
  return out;
}

const shape = (e: TraceEvent): unknown => ({ seq: e.seq, kind: e.kind, actor: e.actor, ids: e.ids, payload: e.payload });

describe("trap points under the SMMUv3 driver (the unit as a guest's virtual SMMU)", () => {
  it("a trap observes the CFGI_CD of a bind and holds the CMD_SYNC after it until the host has acted", () => {
    const log: string[] = [];
    let cfgi: { sid: number; ssid: number } | null = null;
    let deferred: { seq: number; slot: number; msi: number; data: number } | null = null;
    let h: SmmuTestHost | null = null;
    const trap: SmmuTrap = (e) => {
      if (e.kind !== "command" || h === null) return "pass";
      if (e.type === CmdOp.CFGI_CD && cfgi === null && log.includes("bind")) {
        cfgi = { sid: CmdCfgiCd.get(e.dwords, "SID"), ssid: CmdCfgiCd.get(e.dwords, "SSID") };
        log.push(`observe ${e.name}`);
        return "pass";
      }
      if (e.type === CmdOp.SYNC && cfgi !== null && deferred === null && !log.includes("host acted")) {
        deferred = { seq: e.seq, slot: e.slot, msi: CmdSync.getAddr(e.dwords, "MSIADDR"), data: CmdSync.get(e.dwords, "MSIDATA") };
        log.push(`defer ${e.name}`);
        return "defer";
      }
      return "pass";
    };
    const onPoll = (): void => {
      const d = deferred;
      if (d === null || h === null) return;
      const cons = CmdqConsReg.get(readReg(h.unit, SmmuReg.CMDQ_CONS, CmdqConsReg), "RD") & 0xff;
      log.push(cons === d.slot && h.mem.read32(d.msi) !== d.data ? "CONS held at the sync, no MSI" : "sync already signalled");
      log.push("host acted");
      h.unit.completeDeferred(d.seq, "pass");
      log.push(h.mem.read32(d.msi) === d.data ? "MSI written on completion" : "MSI missing");
      deferred = null;
    };
    const host = new SmmuTestHost({ unit: { trap }, onPoll });
    h = host;
    const ep = h.endpoint();
    const dev = h.probe(ep);
    h.core.enableFeature(dev, "sva");
    const mm = h.newMm();
    const va = mm.mmap(null, 0x1000, RW, { populate: true });
    log.push("bind");
    const bond = h.core.sva.bindDevice(dev, mm);
    expect(log).toEqual(["bind", "observe CMD_CFGI_CD", "defer CMD_SYNC", "CONS held at the sync, no MSI", "host acted", "MSI written on completion"]);
    expect(cfgi).toEqual({ sid: ep.sid, ssid: bond.pasid });
    expect(h.unit.deferred).toBeNull();
    expect(dmaWrite(ep, va + 0x10, PATTERN, bond.pasid)).toBe("ok");
    // A completion for what is not deferred is refused and changes nothing.
    expect(errnoOf(() => host.unit.completeDeferred(1, "pass"))).toBe(Errno.ENOENT);
  });

  it("a trap that refuses a register write leaves the register as it was", () => {
    let refuse = false;
    const h = new SmmuTestHost({ unit: { trap: (e) => (refuse && e.kind === "mmio-write" && e.offset === SmmuReg.CR0 ? "handled" : "pass") } });
    const smmuen = (): number => Cr0AckReg.get(readReg(h.unit, SmmuReg.CR0ACK, Cr0AckReg), "SMMUEN");
    refuse = true;
    h.unit.mmioWrite32(SmmuReg.CR0, 0);
    expect(smmuen()).toBe(1);
    refuse = false;
    h.unit.mmioWrite32(SmmuReg.CR0, 0);
    expect(smmuen()).toBe(0);
    // A trap may also answer a register read, as a VMM emulating GBPA would.
    const gbpa = GbpaReg.encode({ ABORT: 1 });
    const emu = new SmmuTestHost({ init: false, unit: { trap: (e) => (e.kind === "mmio-read" && e.offset === SmmuReg.GBPA ? { value: BigInt(gbpa[0] ?? 0) } : "pass") } });
    expect(GbpaReg.get(readReg(emu.unit, SmmuReg.GBPA, GbpaReg), "ABORT")).toBe(1);
  });

  it("a pass-through trap changes nothing: the same trace and the same memory bytes as a run without one", () => {
    const run = (trap: SmmuTrap | undefined): { events: unknown[]; image: Map<number, string>; seen: number } => {
      let seen = 0;
      const h = new SmmuTestHost({ init: false, ...(trap === undefined ? {} : { unit: { trap: (e) => (seen++, trap(e)) } }) });
      const rec = new TraceRecorder(h.kernel.trace);
      h.drv.init();
      const ep = h.endpoint();
      const dev = h.probe(ep);
      h.core.enableFeature(dev, "sva");
      h.core.enableFeature(dev, "iopf");
      const mm = h.newMm();
      const va = mm.mmap(null, 0x2000, RW, { populate: true });
      const bond = h.core.sva.bindDevice(dev, mm);
      dmaWrite(ep, va + 0x10, PATTERN, bond.pasid);
      mm.munmap(va, 0x1000);
      dmaWrite(ep, va + 0x1010, PATTERN, bond.pasid);
      dmaWrite(ep, va + 0x10, PATTERN, bond.pasid); // unmapped now: a page request
      h.kernel.scheduler.runUntilIdle();
      h.core.sva.unbindDevice(bond);
      return { events: rec.events.map(shape), image: memoryImage(h.mem, 48 << 20), seen };
    };
    const bare = run(undefined);
    const trapped = run(() => "pass");
    expect(trapped.seen).toBeGreaterThan(40);
    expect(trapped.events).toEqual(bare.events);
    expect(trapped.image).toEqual(bare.image);
    expect(bare.events.length).toBeGreaterThan(20);
  });
});
