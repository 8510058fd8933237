import { Errno } from "@vsva/kernel";
import { errnoOf } from "@vsva/kernel/testing";
import { describe, expect, it } from "vitest";
import { R, VtdRig } from "./testing/rig.js";
import type { TrapReply, VtdTrap } from "../trap.js";
import { VcmdCommand, VcmdStatus } from "./vcmd.js";

/** A VMM with a tiny PASID space behind the unit's trap, like a VM near its quota. */
function twoPasids(): { live: Set<number>; trap: VtdTrap } {
  const live = new Set<number>();
  const trap: VtdTrap = (e): TrapReply => {
    if (e.kind !== "vcmd") return "pass";
    if (e.cmd === VcmdCommand.ALLOC_PASID) {
      const p = [1, 2].find((x) => !live.has(x));
      if (p === undefined) return { status: VcmdStatus.NO_PASID_OR_INVALID };
      live.add(p);
      return { status: VcmdStatus.SUCCESS, result: p };
    }
    if (e.cmd === VcmdCommand.FREE_PASID) return { status: live.delete(e.operand) ? VcmdStatus.SUCCESS : VcmdStatus.NO_PASID_OR_INVALID };
    return "pass";
  };
  return { live, trap };
}

// VCRSP (VT-d §10.4 VCMD/VCRSP): IP bit 0, SC bits 2:1, result bits 27:8.
const rsp = (rig: VtdRig): { ip: number; sc: number; result: number } => {
  const v = rig.reg64(R.VCRSP);
  return { ip: Number(v & 1n), sc: Number((v >> 1n) & 3n), result: Number((v >> 8n) & 0xfffffn) };
};

describe("virtual command interface (VT-d 3.0 layout)", () => {
  it("reports PASID allocation in VCCAP and ECAP.VCS", () => {
    const rig = new VtdRig({ virtualCommand: true, trap: twoPasids().trap });
    expect(rig.reg64(R.VCCAP)).toBe(1n);
    expect((rig.reg64(R.ECAP) >> 44n) & 1n).toBe(1n);
  });

  it("allocates PASIDs until the trap runs out (SC=2), completing synchronously (IP never 1)", () => {
    const rig = new VtdRig({ virtualCommand: true, trap: twoPasids().trap });
    rig.setReg64(R.VCMD, 1n);
    expect(rsp(rig)).toEqual({ ip: 0, sc: 0, result: 1 });
    rig.setReg64(R.VCMD, 1n);
    expect(rsp(rig)).toEqual({ ip: 0, sc: 0, result: 2 });
    rig.setReg64(R.VCMD, 1n);
    expect(rsp(rig)).toMatchObject({ ip: 0, sc: 2 });
  });

  it("frees a PASID given in the operand; an unknown one is SC=2", () => {
    const backend = twoPasids();
    const rig = new VtdRig({ virtualCommand: true, trap: backend.trap });
    rig.setReg64(R.VCMD, 1n);
    rig.setReg64(R.VCMD, 2n | (1n << 8n));
    expect(rsp(rig)).toMatchObject({ sc: 0 });
    expect([...backend.live]).toEqual([]);
    rig.setReg64(R.VCMD, 2n | (5n << 8n));
    expect(rsp(rig)).toMatchObject({ sc: 2 });
  });

  it("without a trap's answer has no PASID to give (SC=2) and no other command (SC=1)", () => {
    const rig = new VtdRig({ virtualCommand: true });
    rig.setReg64(R.VCMD, 1n);
    expect(rsp(rig)).toMatchObject({ sc: 2, result: 0 });
    rig.setReg64(R.VCMD, 2n | (1n << 8n));
    expect(rsp(rig)).toMatchObject({ sc: 2 });
    rig.setReg64(R.VCMD, 3n);
    expect(rsp(rig)).toMatchObject({ sc: 1 });
  });

  it("answers an undefined command with SC=1", () => {
    const rig = new VtdRig({ virtualCommand: true, trap: twoPasids().trap });
    rig.setReg64(R.VCMD, 0x7fn);
    expect(rsp(rig)).toMatchObject({ sc: 1 });
  });

  it("treats a trap answer beyond the PASID width as no PASID", () => {
    const rig = new VtdRig({ pasidBits: 8, virtualCommand: true, trap: (e) => (e.kind === "vcmd" ? { status: VcmdStatus.SUCCESS, result: 300 } : "pass") });
    rig.setReg64(R.VCMD, 1n);
    expect(rsp(rig)).toMatchObject({ sc: 2, result: 0 });
  });

  it("refuses a trap answer VCRSP cannot hold (status beyond 2 bits, result beyond 20) with EINVAL, leaving VCRSP as it was", () => {
    let reply: TrapReply = { status: VcmdStatus.SUCCESS, result: 5 };
    const rig = new VtdRig({ virtualCommand: true, trap: (e) => (e.kind === "vcmd" ? reply : "pass") });
    rig.setReg64(R.VCMD, 1n);
    for (const bad of [{ status: 4 }, { status: 0, result: 2 ** 20 }, { status: 0.5 }]) {
      reply = bad;
      expect(errnoOf(() => rig.setReg64(R.VCMD, 1n))).toBe(Errno.EINVAL);
      expect(rsp(rig)).toEqual({ ip: 0, sc: 0, result: 5 });
    }
  });
});
