import { describe, expect, it } from "vitest";
import { resetStats } from "@vsva/pgtable";
import { FL_P, FL_RW, FL_US, VtdRig } from "./vtd/testing/rig.js";
import { CD_TABLE, S1_PAGE, SmmuRig } from "./smmu/testing/rig.js";
import { mapPath } from "./smmu/testing/tables.js";

/**
 * `debug.lastWalk` and `debug.lastRequest` describe the last request only: a hit, a pass-through or a
 * structure fault shows no walk, and structure fetches are never counted as page-walk reads.
 */
describe("per-request accounting on VT-d", () => {
  function vtd(): { rig: VtdRig; va: number } {
    const rig = new VtdRig().bringUp();
    rig.device();
    const root = rig.alloc();
    rig.setPasid(3, { pgtt: 1, did: 1, flptr: root });
    rig.setPasid(0, { pgtt: 4, did: 2 });
    const va = 0x40_0000_0000;
    rig.flMap(root, va, 0x50_0000, { leaf: FL_P | FL_RW | FL_US });
    return { rig, va };
  }

  it("a cold first-level request: 4 walk reads, the structure fetches apart, together all the memory reads", () => {
    const { rig, va } = vtd();
    resetStats(rig.mem.stats);
    expect(rig.unit.translate({ sid: rig.dev, pasid: 3, addr: va, write: false }).ok).toBe(true);
    const a = rig.unit.debug.lastRequest;
    expect(a.walkReads).toBe(4);
    expect(rig.unit.debug.lastWalk.reads).toBe(4);
    expect(a.structureReads).toBeGreaterThan(0);
    expect(a.walkReads + a.structureReads).toBe(rig.mem.stats.reads);
  });

  it("an IOTLB hit, a pass-through request and a structure fault each reset the counters to what they did", () => {
    const { rig, va } = vtd();
    rig.unit.translate({ sid: rig.dev, pasid: 3, addr: va, write: false });
    expect(rig.unit.debug.lastWalk.reads).toBe(4);
    // A hit: nothing walked, nothing fetched.
    expect(rig.unit.translate({ sid: rig.dev, pasid: 3, addr: va + 8, write: false }).ok).toBe(true);
    expect(rig.unit.debug.lastRequest).toEqual({ walkReads: 0, walkWrites: 0, pscHits: 0, structureReads: 0 });
    // Pass-through (PGTT = 4 on the RID_PASID), its PASID entry fetched: structure reads only.
    resetStats(rig.mem.stats);
    expect(rig.unit.translate({ sid: rig.dev, addr: 0x7000, write: false })).toMatchObject({ ok: true, pa: 0x7000 });
    expect(rig.unit.debug.lastWalk.reads).toBe(0);
    expect(rig.unit.debug.lastRequest.structureReads).toBe(rig.mem.stats.reads);
    expect(rig.mem.stats.reads).toBeGreaterThan(0);
    // A structure fault (no context entry for this device): the root entry is fetched, nothing walked.
    rig.unit.translate({ sid: rig.dev, pasid: 3, addr: va + 0x1000, write: false }); // a walk, to have something stale
    resetStats(rig.mem.stats);
    const other = (rig.dev + 1) as typeof rig.dev;
    expect(rig.unit.translate({ sid: other, pasid: 3, addr: va, write: false }).ok).toBe(false);
    expect(rig.unit.debug.lastWalk.reads).toBe(0);
    expect(rig.unit.debug.lastRequest.structureReads).toBe(rig.mem.stats.reads);
  });
});

describe("per-request accounting on SMMUv3", () => {
  const VA = 0x12_3456_7000;
  function smmu(): SmmuRig {
    const rig = new SmmuRig().bringUp();
    const root = rig.alloc();
    rig.ste(rig.dev, { config: 5, ctx: CD_TABLE });
    rig.cd(CD_TABLE, { ttb0: root, asid: 7 });
    mapPath(rig, root, VA, 0x9000n | S1_PAGE);
    return rig;
  }

  it("a cold stage-1 request: STE and CD reads are structure reads, the descriptor reads walk reads", () => {
    const rig = smmu();
    resetStats(rig.mem.stats);
    expect(rig.unit.translate({ sid: rig.dev, addr: VA, write: false }).ok).toBe(true);
    const a = rig.unit.debug.lastRequest;
    expect(a.walkReads).toBe(rig.unit.debug.lastWalk.reads);
    expect(a.walkReads).toBeGreaterThan(0);
    expect(a.structureReads).toBe(16); // an STE (8 dwords) and a CD (8 dwords)
    expect(a.walkReads + a.structureReads).toBe(rig.mem.stats.reads);
  });

  it("a TLB hit, a bypass and a configuration fault each reset the counters to what they did", () => {
    const rig = smmu();
    rig.unit.translate({ sid: rig.dev, addr: VA, write: false });
    expect(rig.unit.debug.lastWalk.reads).toBeGreaterThan(0);
    expect(rig.unit.translate({ sid: rig.dev, addr: VA + 16, write: false }).ok).toBe(true);
    expect(rig.unit.debug.lastRequest).toEqual({ walkReads: 0, walkWrites: 0, walkCacheHits: 0, structureReads: 0 });
    // A stream with STE.V = 0: its STE is fetched, nothing walked.
    rig.unit.translate({ sid: rig.dev, addr: VA + 0x20_0000, write: false }); // a walk (to a missing page), to have something stale
    expect(rig.unit.debug.lastWalk.reads).toBeGreaterThan(0);
    const bad = (rig.dev + 1) as typeof rig.dev;
    rig.ste(bad, { config: 4, v: false });
    resetStats(rig.mem.stats);
    expect(rig.unit.translate({ sid: bad, addr: VA, write: false }).ok).toBe(false);
    expect(rig.unit.debug.lastWalk.reads).toBe(0);
    expect(rig.unit.debug.lastRequest.structureReads).toBe(rig.mem.stats.reads);
    // Bypass (Config = 4): the STE only.
    const byp = (rig.dev + 2) as typeof rig.dev;
    rig.ste(byp, { config: 4 });
    resetStats(rig.mem.stats);
    expect(rig.unit.translate({ sid: byp, addr: 0x5000, write: false })).toMatchObject({ ok: true, pa: 0x5000 });
    expect(rig.unit.debug.lastRequest.walkReads).toBe(0);
    expect(rig.unit.debug.lastRequest.structureReads).toBe(rig.mem.stats.reads);
  });
});
