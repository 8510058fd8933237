import { describe, expect, expectTypeOf, it } from "vitest";
import { Errno, type HostPasid, asHostPasid } from "@vsva/kernel";
import { errnoOf } from "@vsva/kernel/testing";
import { DsaOpcode, DsaReg, DsaWqCfg, encodeDescriptor } from "@vsva/dsa";
import { type IdxdWq, plugIdxd } from "./index.js";
import { svaMockBoard } from "./testing/index.js";

/**
 * A local copy of the shape a VDCM borrows a WQ through (it codes against
 * this structurally and never imports idxd): if IdxdWq drifts from it, this
 * file stops compiling.
 */
interface HostWq {
  readonly id: number;
  readonly mode: "dedicated" | "shared";
  readonly size: number;
  readonly pasid: HostPasid | null;
  setPasid(pasid: HostPasid, priv?: boolean): void;
  clearPasid(): void;
  drain(): void;
  drainPasid(pasid: HostPasid): void;
  movdir64b(desc: Uint8Array): void;
  enqcmd(desc: Uint8Array): "accepted" | "retry";
}

function rig(mode: "immediate" | "stepwise" = "immediate") {
  const board = svaMockBoard();
  const idxd = plugIdxd(board, {
    dev: 3,
    hw: { mode },
    config: { wqs: [{ mode: "dedicated", size: 8, type: "mdev" }, { mode: "shared", size: 8, type: "mdev" }] },
  });
  return { board, idxd };
}

/** WQCFG dword 2 as the device holds it, read over MMIO independently of the driver's getters. */
function wqcfg(idxd: ReturnType<typeof rig>["idxd"], wq: number): { PASID: number; PASID_EN: number; PRIV: number; STATE: number } {
  const v = DsaWqCfg.alloc();
  for (let i = 0; i < v.length; i++) v[i] = idxd.hw.mmioRead32(idxd.hw.wqcfgOffset(wq) + 4 * i);
  const d = DsaWqCfg.decode(v);
  return { PASID: d.PASID, PASID_EN: d.PASID_EN, PRIV: d.PRIV, STATE: d.STATE };
}

describe("the WQ handle a VDCM borrows", () => {
  it("an IdxdWq is a HostWq", () => {
    expectTypeOf<IdxdWq>().toExtend<HostWq>();
    const { idxd } = rig();
    const lent: HostWq = idxd.wq(0);
    expect([lent.id, lent.mode, lent.size, lent.pasid]).toEqual([0, "dedicated", 8, null]);
  });

  it("setPasid programs WQCFG.PASID with PASID_EN and PRIV and leaves the WQ enabled; pasid reads it back from the register", () => {
    const { idxd } = rig();
    const wq: HostWq = idxd.wq(0);
    wq.setPasid(asHostPasid(0x4_2a1), true);
    expect(wqcfg(idxd, 0)).toEqual({ PASID: 0x4_2a1, PASID_EN: 1, PRIV: 1, STATE: 1 });
    expect(wq.pasid).toBe(0x4_2a1);
    wq.setPasid(asHostPasid(7));
    expect(wqcfg(idxd, 0)).toEqual({ PASID: 7, PASID_EN: 1, PRIV: 0, STATE: 1 });
  });

  it("clearPasid leaves nothing of the old PASID in WQCFG and the WQ enabled", () => {
    const { idxd } = rig();
    const wq: HostWq = idxd.wq(0);
    wq.setPasid(asHostPasid(99), true);
    wq.clearPasid();
    expect(wqcfg(idxd, 0)).toEqual({ PASID: 0, PASID_EN: 0, PRIV: 0, STATE: 1 });
    expect(wq.pasid).toBeNull();
  });

  it("setPasid on a shared WQ is EINVAL and changes nothing; a PASID over 20 bits is EINVAL", () => {
    const { idxd } = rig();
    const before = wqcfg(idxd, 1);
    expect(errnoOf(() => idxd.wq(1).setPasid(asHostPasid(5)))).toBe(Errno.EINVAL);
    expect(errnoOf(() => idxd.wq(0).setPasid(asHostPasid(1 << 20)))).toBe(Errno.EINVAL);
    expect(wqcfg(idxd, 1)).toEqual(before);
    expect(wqcfg(idxd, 0).PASID_EN).toBe(0);
  });

  it("drain returns only once the descriptors submitted before it have run (a stepwise engine is run by the wait)", () => {
    const { idxd } = rig("stepwise");
    const wq = idxd.wq(0);
    wq.setPasid(asHostPasid(3));
    for (let i = 0; i < 3; i++) wq.movdir64b(encodeDescriptor({ opcode: DsaOpcode.NOOP }));
    expect(idxd.hw.stats.completed).toBe(0);
    wq.drain();
    expect(idxd.hw.stats.completed).toBe(3);
    expect(idxd.hw.mmioRead32(DsaReg.CMDSTS) >>> 31).toBe(0);
  });

  it("drainPasid returns once that PASID's descriptors on the shared WQ have run; a PASID wider than 20 bits is EINVAL before the device sees it", () => {
    const { idxd } = rig("stepwise");
    const wq = idxd.wq(1);
    for (let i = 0; i < 2; i++) expect(wq.enqcmd(encodeDescriptor({ opcode: DsaOpcode.NOOP, pasid: 7 }))).toBe("accepted");
    expect(idxd.hw.stats.completed).toBe(0);
    wq.drainPasid(asHostPasid(7));
    expect(idxd.hw.stats.completed).toBe(2);
    expect(errnoOf(() => wq.drainPasid(asHostPasid(1 << 20)))).toBe(Errno.EINVAL);
  });

  it("clearPasid drains first: a descriptor queued under the old PASID completes before the PASID goes", () => {
    const { idxd } = rig("stepwise");
    const wq = idxd.wq(0);
    wq.setPasid(asHostPasid(3));
    wq.movdir64b(encodeDescriptor({ opcode: DsaOpcode.NOOP }));
    wq.clearPasid();
    expect(idxd.hw.stats.completed).toBe(1);
    expect(wq.pasid).toBeNull();
  });

  it("the portal: ENQCMD to a shared WQ is accepted, to a dedicated one retried; MOVDIR64B to a shared WQ is dropped", () => {
    const { idxd } = rig();
    const noop = encodeDescriptor({ opcode: DsaOpcode.NOOP, pasid: 5 });
    expect(idxd.wq(1).enqcmd(noop)).toBe("accepted");
    expect(idxd.wq(0).enqcmd(noop)).toBe("retry");
    idxd.wq(1).movdir64b(noop);
    expect(idxd.hw.stats.dropped).toBe(1);
  });
});
