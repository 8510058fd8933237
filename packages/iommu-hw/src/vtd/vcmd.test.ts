import { Errno } from "@vsva/kernel";
import { describe, expect, it } from "vitest";
import { R, VtdRig } from "./testing/rig.js";
import type { VcmdBackend } from "./vcmd.js";

/** A backend with a tiny PASID space, like a VM near its quota. */
class TwoPasids implements VcmdBackend {
  readonly live = new Set<number>();
  allocPasid(): number {
    for (const p of [1, 2]) {
      if (!this.live.has(p)) {
        this.live.add(p);
        return p;
      }
    }
    return -Errno.ENOSPC;
  }
  freePasid(pasid: number): number {
    return this.live.delete(pasid) ? 0 : -Errno.EINVAL;
  }
}

// VCRSP (VT-d §10.4 VCMD/VCRSP): IP bit 0, SC bits 2:1, result bits 27:8.
const rsp = (rig: VtdRig): { ip: number; sc: number; result: number } => {
  const v = rig.reg64(R.VCRSP);
  return { ip: Number(v & 1n), sc: Number((v >> 1n) & 3n), result: Number((v >> 8n) & 0xfffffn) };
};

describe("virtual command interface (VT-d 3.0 layout)", () => {
  it("reports PASID allocation in VCCAP and ECAP.VCS", () => {
    const rig = new VtdRig({ vcmd: new TwoPasids() });
    expect(rig.reg64(R.VCCAP)).toBe(1n);
    expect((rig.reg64(R.ECAP) >> 44n) & 1n).toBe(1n);
  });

  it("allocates PASIDs until the backend runs out (SC=2), completing synchronously (IP never 1)", () => {
    const rig = new VtdRig({ vcmd: new TwoPasids() });
    rig.setReg64(R.VCMD, 1n);
    expect(rsp(rig)).toEqual({ ip: 0, sc: 0, result: 1 });
    rig.setReg64(R.VCMD, 1n);
    expect(rsp(rig)).toEqual({ ip: 0, sc: 0, result: 2 });
    rig.setReg64(R.VCMD, 1n);
    expect(rsp(rig)).toMatchObject({ ip: 0, sc: 2 });
  });

  it("frees a PASID given in the operand; an unknown one is SC=2", () => {
    const backend = new TwoPasids();
    const rig = new VtdRig({ vcmd: backend });
    rig.setReg64(R.VCMD, 1n);
    rig.setReg64(R.VCMD, 2n | (1n << 8n));
    expect(rsp(rig)).toMatchObject({ sc: 0 });
    expect([...backend.live]).toEqual([]);
    rig.setReg64(R.VCMD, 2n | (5n << 8n));
    expect(rsp(rig)).toMatchObject({ sc: 2 });
  });

  it("answers an undefined command with SC=1", () => {
    const rig = new VtdRig({ vcmd: new TwoPasids() });
    rig.setReg64(R.VCMD, 0x7fn);
    expect(rsp(rig)).toMatchObject({ sc: 1 });
  });

  it("treats a backend answer beyond the PASID width as no PASID", () => {
    const rig = new VtdRig({ pasidBits: 8, vcmd: { allocPasid: () => 300, freePasid: () => 0 } });
    rig.setReg64(R.VCMD, 1n);
    expect(rsp(rig)).toMatchObject({ sc: 2, result: 0 });
  });
});
