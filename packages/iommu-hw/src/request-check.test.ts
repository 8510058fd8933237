import { Errno } from "@vsva/kernel";
import { errnoOf } from "@vsva/kernel/testing";
import { describe, expect, it } from "vitest";
import { VtdRig } from "./vtd/testing/rig.js";
import { SmmuRig } from "./smmu/testing/rig.js";

/** Values that are no bus address in any mode: the unit must refuse them, never return them as a physical address. */
const MALFORMED = [Number.NaN, Infinity, -Infinity, 0.5, 4096.25, -(2 ** 63) - 4096, 2 ** 64];
/** With translation off the address is the physical address: a negative one (sign-extended upper half) is none either. */
const MALFORMED_BYPASS = [...MALFORMED, -1, -(2 ** 47)];

describe("DMA request addresses are validated at the unit boundary", () => {
  it("VT-d with translation off (GSTS.TES = 0) refuses NaN, ±Infinity, negatives, fractions and 2^64 with EINVAL", () => {
    const rig = new VtdRig({ hostAddrBits: 39 });
    for (const addr of MALFORMED_BYPASS) expect(errnoOf(() => rig.unit.translate({ sid: rig.dev, addr, write: false })), String(addr)).toBe(Errno.EINVAL);
    // Beyond HAW there is nothing to pass through to.
    expect(errnoOf(() => rig.unit.translate({ sid: rig.dev, addr: 2 ** 39, write: false }))).toBe(Errno.EINVAL);
    const ok = rig.unit.translate({ sid: rig.dev, addr: 2 ** 39 - 8, write: true });
    expect(ok).toMatchObject({ ok: true, pa: 2 ** 39 - 8 });
  });

  it("VT-d with translation on refuses the same values with EINVAL and records no fault", () => {
    const rig = new VtdRig().bringUp();
    rig.device();
    rig.setPasid(0, { pgtt: 4, did: 1 });
    const fsts = rig.unit.mmioRead32(0x34);
    for (const addr of MALFORMED) expect(errnoOf(() => rig.unit.translate({ sid: rig.dev, addr, write: false })), String(addr)).toBe(Errno.EINVAL);
    expect(rig.unit.mmioRead32(0x34)).toBe(fsts);
    // An integral address beyond HAW is a well-formed request: its architected fault, not EINVAL.
    expect(rig.unit.translate({ sid: rig.dev, addr: 2 ** 60, write: false })).toMatchObject({ ok: false, reason: 0x83 });
  });

  it("SMMUv3 with SMMU_CR0.SMMUEN = 0 refuses malformed addresses and addresses beyond OAS with EINVAL", () => {
    const rig = new SmmuRig({ oas: 40 });
    for (const addr of MALFORMED_BYPASS) expect(errnoOf(() => rig.unit.translate({ sid: rig.dev, addr, write: false })), String(addr)).toBe(Errno.EINVAL);
    expect(errnoOf(() => rig.unit.translate({ sid: rig.dev, addr: 2 ** 40, write: false }))).toBe(Errno.EINVAL);
    expect(rig.unit.translate({ sid: rig.dev, addr: 0x1000, write: false })).toMatchObject({ ok: true, pa: 0x1000 });
  });

  it("SMMUv3 with SMMUEN = 1 refuses malformed addresses with EINVAL and writes no event", () => {
    const rig = new SmmuRig().bringUp();
    rig.ste(rig.dev, { config: 4 }); // bypass both stages
    for (const addr of MALFORMED) expect(errnoOf(() => rig.unit.translate({ sid: rig.dev, addr, write: false })), String(addr)).toBe(Errno.EINVAL);
    expect(rig.events()).toEqual([]);
    expect(rig.unit.translate({ sid: rig.dev, addr: 0x2000, write: false })).toMatchObject({ ok: true, pa: 0x2000 });
  });
});
