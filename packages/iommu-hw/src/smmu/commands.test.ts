import { Scheduler, type SourceId } from "@vsva/kernel";
import { describe, expect, it } from "vitest";
import { CD_TABLE, CMDQ, D_AP2, S1_PAGE, S2_PAGE, SR, SYNC_WORD, SmmuRig, cmd } from "./testing/rig.js";
import { FakeEndpoint } from "../pci/testing/fake-endpoint.js";
import { armIdx, mapPath } from "./testing/tables.js";

// Staleness, as in hardware: each cache keeps serving what it holds until the matching command runs.
const VA = 0x7f_0000_0000;

function s1(o: { asid?: number; global?: boolean } = {}): { rig: SmmuRig; root: number; leaf: (va: number) => number } {
  const rig = new SmmuRig().bringUp();
  const root = rig.alloc();
  rig.ste(rig.dev, { config: 5, ctx: CD_TABLE, cdmax: 2 });
  rig.cd(CD_TABLE, { ttb0: root, asid: o.asid ?? 7 });
  const g = o.global === true ? ~(1n << 11n) : ~0n;
  for (let i = 0; i < 4; i++) mapPath(rig, root, VA + i * 4096, (BigInt(0x10_0000 + i * 4096) | S1_PAGE) & g);
  // The level-3 slot of `va` (all four pages share one level-3 table).
  const leaf = (va: number): number => {
    let t = root;
    for (let l = 0; l < 3; l++) t = Number(rig.r64(t + 8 * armIdx(va, l)) & 0xffff_ffff_f000n);
    return t + 8 * armIdx(va, 3);
  };
  return { rig, root, leaf };
}

const pa = (rig: SmmuRig, addr: number, pasid = 0, sid: SourceId = rig.dev): number => {
  const r = rig.unit.translate({ sid, pasid, addr, write: false });
  return r.ok ? r.pa : -r.reason;
};

describe("cache staleness until the matching command", () => {
  it("CFGI_STE: a changed STE is used only after the command", () => {
    const { rig } = s1();
    expect(pa(rig, VA)).toBe(0x10_0000);
    rig.ste(rig.dev, { config: 0 });
    expect(pa(rig, VA)).toBe(0x10_0000);
    expect(rig.unit.debug.checkStructureCaches().map((m) => m.cache)).toEqual(["ste", "cd"]);
    rig.submit(cmd.cfgiSte(rig.dev));
    expect(pa(rig, VA)).toBe(-0);
    expect(rig.unit.debug.checkStructureCaches()).toEqual([]);
  });

  it("CFGI_STE_RANGE covers its aligned block of StreamIDs, and CFGI_ALL everything", () => {
    const { rig } = s1();
    expect(pa(rig, VA)).toBe(0x10_0000);
    rig.ste(rig.dev, { config: 0 });
    rig.submit(cmd.cfgiSteRange(0x13, 1)); // StreamIDs 0x10..0x13; the device is 00:02.0 = 0x10
    expect(pa(rig, VA)).toBe(-0);
    rig.ste(rig.dev, { config: 4 });
    rig.submit(cmd.cfgiSteRange(0x20, 3));
    expect(pa(rig, VA)).toBe(-0);
    rig.submit(cmd.cfgiAll());
    expect(rig.unit.translate({ sid: rig.dev, addr: VA, write: false })).toMatchObject({ ok: true, pa: VA });
  });

  it("CFGI_CD and CFGI_CD_ALL: a changed CD is used only after the command", () => {
    const { rig } = s1();
    const other = rig.alloc();
    mapPath(rig, other, VA, 0x20_0000n | S1_PAGE);
    expect(pa(rig, VA)).toBe(0x10_0000);
    rig.cd(CD_TABLE, { ttb0: other, asid: 8 });
    expect(pa(rig, VA)).toBe(0x10_0000);
    rig.submit(cmd.cfgiCd(rig.dev, 1));
    expect(pa(rig, VA)).toBe(0x10_0000);
    rig.submit(cmd.cfgiCd(rig.dev, 0));
    expect(pa(rig, VA)).toBe(0x20_0000);
    rig.cd(CD_TABLE, { ttb0: other, asid: 8, v: false });
    rig.submit(cmd.cfgiCdAll(rig.dev));
    expect(pa(rig, VA)).toBe(-0x0a);
  });

  it("TLBI_NH_ASID drops that ASID's non-global entries only", () => {
    const { rig, leaf } = s1();
    expect(pa(rig, VA)).toBe(0x10_0000);
    rig.w64(leaf(VA), 0x30_0000n | S1_PAGE);
    expect(pa(rig, VA)).toBe(0x10_0000);
    expect(rig.unit.debug.checkCaches()).toHaveLength(1);
    rig.submit(cmd.nhAsid(0, 8));
    expect(pa(rig, VA)).toBe(0x10_0000);
    rig.submit(cmd.nhAsid(0, 7));
    expect(pa(rig, VA)).toBe(0x30_0000);
    expect(rig.unit.debug.checkCaches()).toEqual([]);
  });

  it("global (nG = 0) entries survive TLBI_NH_ASID and go with TLBI_NH_VA or TLBI_NH_ALL", () => {
    const { rig, leaf } = s1({ global: true });
    expect(pa(rig, VA)).toBe(0x10_0000);
    rig.w64(leaf(VA), 0x30_0000n | S1_PAGE);
    rig.submit(cmd.nhAsid(0, 7));
    expect(pa(rig, VA)).toBe(0x10_0000);
    rig.submit(cmd.nhVa(0, 7, VA));
    expect(pa(rig, VA)).toBe(0x30_0000);
  });

  it("TLBI_NH_VA drops only the pages it names; with NUM/SCALE a range", () => {
    const { rig, leaf } = s1();
    for (let i = 0; i < 4; i++) pa(rig, VA + i * 4096);
    for (let i = 0; i < 4; i++) rig.w64(leaf(VA + i * 4096), BigInt(0x40_0000 + i * 4096) | S1_PAGE);
    rig.submit(cmd.nhVa(0, 7, VA + 4096, true));
    expect([0, 1, 2, 3].map((i) => pa(rig, VA + i * 4096))).toEqual([0x10_0000, 0x40_1000, 0x10_2000, 0x10_3000]);
    rig.submit(cmd.nhVaRange(0, 7, VA + 2 * 4096, 1, 0)); // TG = 4 KiB, (1 + 1) × 2^0 pages
    expect([0, 1, 2, 3].map((i) => pa(rig, VA + i * 4096))).toEqual([0x10_0000, 0x40_1000, 0x40_2000, 0x40_3000]);
  });

  it("TLBI_S2_IPA and TLBI_S12_VMALL for a stage-2 stream", () => {
    const rig = new SmmuRig().bringUp();
    const s2 = rig.alloc();
    rig.ste(rig.dev, { config: 6, vmid: 9, s2ttb: s2 });
    mapPath(rig, s2, 0x8000, 0x50_0000n | S2_PAGE);
    mapPath(rig, s2, 0x9000, 0x51_0000n | S2_PAGE);
    const t = (a: number): number => {
      const r = rig.unit.translate({ sid: rig.dev, addr: a, write: false });
      return r.ok ? r.pa : -1;
    };
    expect([t(0x8000), t(0x9000)]).toEqual([0x50_0000, 0x51_0000]);
    let l3 = s2;
    for (let l = 0; l < 3; l++) l3 = Number(rig.r64(l3 + 8 * armIdx(0x8000, l)) & 0xffff_ffff_f000n);
    rig.w64(l3 + 8 * 8, 0x60_0000n | S2_PAGE);
    rig.w64(l3 + 8 * 9, 0x61_0000n | S2_PAGE);
    rig.submit(cmd.s2Ipa(8, 0x8000));
    expect(t(0x8000)).toBe(0x50_0000);
    rig.submit(cmd.s2Ipa(9, 0x8000, true));
    expect([t(0x8000), t(0x9000)]).toEqual([0x60_0000, 0x51_0000]);
    rig.submit(cmd.s12Vmall(9));
    expect(t(0x9000)).toBe(0x61_0000);
  });

  it("a read-only cached entry does not serve a write: the walk decides, and finds the new permission", () => {
    const { rig, leaf } = s1();
    rig.w64(leaf(VA), 0x10_0000n | S1_PAGE | D_AP2);
    expect(pa(rig, VA)).toBe(0x10_0000);
    rig.w64(leaf(VA), 0x10_0000n | S1_PAGE);
    expect(rig.unit.translate({ sid: rig.dev, pasid: 0, addr: VA, write: true }).ok).toBe(true);
  });
});

describe("command queue", () => {
  it("forwards ATC_INV to the endpoint with SubstreamID, span and Global", () => {
    const rig = new SmmuRig().bringUp();
    const ep = new FakeEndpoint(rig.dev);
    rig.unit.attachEndpoint(ep);
    rig.submit(cmd.atcInv(rig.dev, 5, 0x12_3000, 0), cmd.atcInv(rig.dev, undefined, 0x40_0000, 9), cmd.atcInv(rig.dev, 5, 0, 52, true));
    expect(ep.invalidations).toEqual([
      { pasid: 5, global: false, addr: 0x12_3000, size: 0x1000 },
      { global: false, addr: 0x40_0000, size: 0x20_0000 },
      { pasid: 5, global: true, addr: 0, size: 2 ** 64 },
    ]);
  });

  it("completes CMD_SYNC by writing MSIData to MSIAddr (MSI polling), or by the interrupt, or SEV", () => {
    const rig = new SmmuRig().bringUp();
    rig.w64(SYNC_WORD, 0xffff_ffffn);
    rig.submit(cmd.sync(1, SYNC_WORD, 0));
    expect(rig.r64(SYNC_WORD) & 0xffff_ffffn).toBe(0n);
    rig.submit(cmd.sync(1, 0x8000_0000_0000 - 4, 0x55), cmd.sync(1), cmd.sync(2), cmd.sync(0));
    expect(rig.interrupts.map((i) => [i.source, i.addr, i.data])).toEqual([["cmd-sync", 0x8000_0000_0000 - 4, 0x55], ["cmd-sync", 0, 0], ["sev", 0, 0]]);
    expect(rig.reg(SR.CMDQ_CONS)).toBe(5);
  });

  it("stops on an illegal command with CONS on it, ERR = CERROR_ILL and GERROR.CMDQ_ERR; resumes after GERRORN", () => {
    const rig = new SmmuRig().bringUp();
    const ep = new FakeEndpoint(rig.dev);
    rig.unit.attachEndpoint(ep);
    rig.submit(cmd.sync(), cmd.raw(0x7fn, 0n), cmd.atcInv(rig.dev, undefined, 0, 0));
    expect(rig.reg(SR.CMDQ_CONS)).toBe(1 | (1 << 24));
    expect(rig.reg(SR.GERROR) & 1).toBe(1);
    expect(ep.invalidations).toEqual([]);
    rig.submit(); // more PROD writes do nothing while the error is active
    expect(rig.reg(SR.CMDQ_CONS) & 0xfffff).toBe(1);
    // Linux's recovery: turn the bad command into a CMD_SYNC, then acknowledge.
    rig.w64(CMDQ + 16, 0x46n);
    rig.setReg(SR.GERRORN, rig.reg(SR.GERROR));
    expect(rig.reg(SR.CMDQ_CONS) & 0xfffff).toBe(3);
    expect(ep.invalidations).toHaveLength(1);
  });

  it("treats a set reserved bit, SSec = 1 or a feature the unit lacks as CERROR_ILL; software may move CONS past it", () => {
    for (const [c, opts] of [
      [cmd.raw(0x03n | (1n << 8n), 0n), {}],
      [cmd.raw(0x03n | (1n << 10n), 0n), {}],
      [cmd.raw(0x20n, 0n), {}],
      [cmd.atcInv(0, undefined, 0, 0), { ats: false, pri: false }],
    ] as const) {
      const rig = new SmmuRig(opts).bringUp();
      rig.submit(c);
      expect(rig.reg(SR.CMDQ_CONS)).toBe(1 << 24);
      rig.setReg(SR.CMDQ_CONS, 1);
      rig.setReg(SR.GERRORN, rig.reg(SR.GERROR));
      rig.submit(cmd.sync());
      expect(rig.reg(SR.CMDQ_CONS) & 0xfffff).toBe(2);
    }
  });

  it("reports CERROR_ABT when a command cannot be fetched", () => {
    const rig = new SmmuRig().bringUp({ cr0: 0 });
    rig.setReg64(SR.CMDQ_BASE, 0x40_0000_0000n | 8n);
    rig.setReg(SR.CR0, 8);
    rig.submit(cmd.sync());
    expect(rig.reg(SR.CMDQ_CONS) >>> 24).toBe(2);
    expect(rig.reg(SR.GERROR) & 1).toBe(1);
  });

  it("defers processing to a work item when given a scheduler: CONS moves only when it runs", () => {
    const sched = new Scheduler();
    const rig = new SmmuRig({ commands: { scheduler: sched } }).bringUp();
    rig.submit(cmd.sync(), cmd.sync());
    expect(rig.reg(SR.CMDQ_CONS)).toBe(0);
    expect(rig.unit.debug.commandsPending).toBe(true);
    sched.runUntilIdle();
    expect(rig.reg(SR.CMDQ_CONS)).toBe(2);
  });
});
