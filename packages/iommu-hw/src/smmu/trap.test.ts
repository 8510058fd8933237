import { Errno } from "@vsva/kernel";
import { errnoOf } from "@vsva/kernel/testing";
import { describe, expect, it } from "vitest";
import type { QueueEntryTrap, SmmuTrap, TrapReply } from "../trap.js";
import { FakeEndpoint } from "../pci/testing/fake-endpoint.js";
import { CD_TABLE, CMDQ, CR0_CMDQEN, CR0_EVENTQEN, CR0_PRIQEN, CR0_SMMUEN, S1_PAGE, SR, SYNC_WORD, SmmuRig, cmd } from "./testing/rig.js";
import { mapPath } from "./testing/tables.js";
import { PlatformDmaMaster } from "./platform-master.js";

/** A rig whose trap records every command and answers with `reply`. */
function trapped(reply: (e: QueueEntryTrap<"command">) => TrapReply): { rig: SmmuRig; seen: QueueEntryTrap<"command">[] } {
  const seen: QueueEntryTrap<"command">[] = [];
  const trap: SmmuTrap = (e) => {
    if (e.kind !== "command") return "pass";
    seen.push(e);
    return reply(e);
  };
  return { rig: new SmmuRig({ trap }).bringUp(), seen };
}

const cons = (rig: SmmuRig): number => rig.reg(SR.CMDQ_CONS) & 0x1ff;

describe("SMMUv3 trap points: commands", () => {
  it("offer each fetched command with its bytes, slot and address", () => {
    const { rig, seen } = trapped(() => "pass");
    rig.submit(cmd.cfgiCd(0x10, 5), cmd.sync());
    expect(seen.map((e) => [e.name, e.slot, e.addr, e.type])).toEqual([
      ["CMD_CFGI_CD", 0, CMDQ, 0x05],
      ["CMD_SYNC", 1, CMDQ + 16, 0x46],
    ]);
    // Opcode 5, SSID 5 at bits 31:12, SID 0x10 at 63:32, Leaf at bit 64.
    expect([...(seen[0]?.bytes ?? [])]).toEqual([0x05, 0x50, 0, 0, 0x10, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
  });

  it("a deferred CMD_SYNC holds CONS on it and withholds its MSI write, and everything after it, until completed", () => {
    const { rig, seen } = trapped((e) => (e.name === "CMD_SYNC" && e.seq === 2 ? "defer" : "pass"));
    rig.w64(SYNC_WORD, 0n);
    rig.submit(cmd.cfgiCd(0x10, 5), cmd.sync(1, SYNC_WORD, 0xabc));
    expect([rig.mem.read32(SYNC_WORD), cons(rig), rig.unit.deferred]).toEqual([0, 1, 2]);
    rig.submit(cmd.sync(1, SYNC_WORD + 4, 0xdef));
    expect([rig.mem.read32(SYNC_WORD + 4), cons(rig), seen.length]).toEqual([0, 1, 2]);
    rig.unit.completeDeferred(2, "pass");
    expect([rig.mem.read32(SYNC_WORD), rig.mem.read32(SYNC_WORD + 4), cons(rig), rig.unit.deferred]).toEqual([0xabc, 0xdef, 3, null]);
    expect(errnoOf(() => rig.unit.completeDeferred(2, "pass"))).toBe(Errno.ENOENT);
  });

  it("a handled command is moved past without executing it; clearing CMDQEN drops a deferral", () => {
    const { rig } = trapped((e) => (e.seq === 1 ? "handled" : e.seq === 2 ? "defer" : "pass"));
    rig.w64(SYNC_WORD, 0n);
    rig.submit(cmd.sync(1, SYNC_WORD, 0x111));
    expect([rig.mem.read32(SYNC_WORD), cons(rig)]).toEqual([0, 1]);
    rig.submit(cmd.sync(1, SYNC_WORD, 0x222));
    expect(rig.unit.deferred).toBe(2);
    rig.setReg(SR.CR0, CR0_SMMUEN | CR0_EVENTQEN | CR0_PRIQEN);
    expect(rig.unit.deferred).toBeNull();
    expect(errnoOf(() => rig.unit.completeDeferred(2, "pass"))).toBe(Errno.ENOENT);
    expect(rig.mem.read32(SYNC_WORD)).toBe(0);
    rig.setReg(SR.CR0, CR0_SMMUEN | CR0_EVENTQEN | CR0_PRIQEN | CR0_CMDQEN);
    expect(rig.mem.read32(SYNC_WORD)).toBe(0x222);
  });

  it("a PRI response handled by the trap never reaches the endpoint", () => {
    const { rig } = trapped((e) => (e.name === "CMD_PRI_RESP" && e.seq === 1 ? "handled" : "pass"));
    const ep = new FakeEndpoint(rig.dev);
    rig.unit.attachEndpoint(ep);
    rig.submit(cmd.priResp(rig.dev, 5, 3, 2));
    expect(ep.responses).toEqual([]);
    rig.submit(cmd.priResp(rig.dev, 5, 4, 2));
    expect(ep.responses.map((r) => r.groupIndex)).toEqual([4]);
  });
});

describe("SMMUv3 trap points: stall resumes", () => {
  it("a deferred CMD_RESUME keeps the transaction stalled until the VMM completes it", () => {
    const VA = 0x12_3456_7000;
    let defer = true;
    const rig = new SmmuRig({ stall: true, trap: (e) => (e.kind === "command" && e.name === "CMD_RESUME" && defer ? "defer" : "pass") }).bringUp();
    const root = rig.alloc();
    rig.ste(rig.dev, { config: 5, ctx: CD_TABLE });
    rig.cd(CD_TABLE, { ttb0: root, asid: 7, s: true });
    const master = new PlatformDmaMaster({ sid: rig.dev, mem: rig.mem });
    master.attach(rig.unit);
    rig.unit.attachEndpoint(master);
    expect(master.start({ addr: VA, length: 4, direction: "write", pattern: Uint8Array.of(1, 2, 3, 4) })).toBe("stalled");
    const [ev] = rig.events();
    mapPath(rig, root, VA, 0x9000n | S1_PAGE);
    rig.submit(cmd.resume(rig.dev, ev?.stag ?? -1, 1), cmd.sync());
    const seq = rig.unit.deferred;
    expect([master.status, rig.unit.debug.outstandingStalls, seq]).toEqual(["stalled", 1, 1]);
    defer = false;
    rig.unit.completeDeferred(seq ?? 0, "pass");
    expect([master.status, rig.unit.debug.outstandingStalls, rig.mem.read32(0x9000)]).toEqual(["ok", 0, 0x0403_0201]);
  });
});

describe("SMMUv3 trap points: registers", () => {
  it("a refused write leaves the register; a read trap answers for it; a reply that does not fit is EINVAL", () => {
    let mode: "pass" | "refuse" | "bad" = "pass";
    const rig = new SmmuRig({
      trap: (e) => {
        if (e.kind === "mmio-write" && e.offset === SR.GERROR_IRQ_CFG1) return mode === "refuse" ? "handled" : mode === "bad" ? { value: 1n } : "pass";
        if (e.kind === "mmio-read" && e.offset === SR.IDR0 && mode !== "pass") return { value: 0xfeedn };
        return "pass";
      },
    });
    rig.setReg(SR.GERROR_IRQ_CFG1, 0x11);
    mode = "refuse";
    rig.setReg(SR.GERROR_IRQ_CFG1, 0x22);
    expect(rig.reg(SR.GERROR_IRQ_CFG1)).toBe(0x11);
    expect(rig.reg(SR.IDR0)).toBe(0xfeed);
    mode = "bad";
    expect(errnoOf(() => rig.setReg(SR.GERROR_IRQ_CFG1, 0x33))).toBe(Errno.EINVAL);
    mode = "pass";
    expect(rig.reg(SR.GERROR_IRQ_CFG1)).toBe(0x11);
    expect(rig.reg(SR.IDR0)).not.toBe(0xfeed);
  });
});
