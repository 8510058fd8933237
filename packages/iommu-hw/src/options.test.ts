import { Errno, KernelError } from "@vsva/kernel";
import { errnoOf } from "@vsva/kernel/testing";
import { SparseMemory } from "@vsva/pgtable";
import { describe, expect, it } from "vitest";
import { EcapReg, GstsReg, RegOffset } from "./vtd/regs.js";
import { VtdUnit } from "./vtd/vtd-unit.js";
import type { VtdOptions } from "./vtd/options.js";
import { readReg } from "./mmio/mmio.js";
import { SmmuUnit } from "./smmu/smmu-unit.js";
import type { SmmuOptions } from "./smmu/options.js";
import { R, VtdRig, desc } from "./vtd/testing/rig.js";

const mem = (): SparseMemory => new SparseMemory({ addrBits: 46, regions: [{ base: 0, size: 1 << 24 }] });
const messageOf = (f: () => unknown): string => {
  try {
    f();
  } catch (e) {
    if (e instanceof KernelError) return e.message;
  }
  return "";
};

describe("unit options", () => {
  it("an unknown VT-d option key is EINVAL naming the key, not silently ignored", () => {
    const o = { mem: mem(), pageRequest: false } as unknown as VtdOptions; // misspelt pageRequests
    expect(errnoOf(() => new VtdUnit(o))).toBe(Errno.EINVAL);
    expect(messageOf(() => new VtdUnit(o))).toContain('"pageRequest"');
    const c = { mem: mem(), caches: { iotbl: 4 } } as unknown as VtdOptions;
    expect(messageOf(() => new VtdUnit(c))).toContain('"iotbl"');
  });

  it("an unknown SMMUv3 option key is EINVAL naming the key", () => {
    const o = { mem: mem(), stage3: true } as unknown as SmmuOptions;
    expect(errnoOf(() => new SmmuUnit(o))).toBe(Errno.EINVAL);
    expect(messageOf(() => new SmmuUnit(o))).toContain('"stage3"');
    const c = { mem: mem(), caches: { tbl: 4 } } as unknown as SmmuOptions;
    expect(messageOf(() => new SmmuUnit(c))).toContain('"tbl"');
  });

  it("VT-d without queued invalidation: ECAP.QI = 0, GCMD.QIE has no effect, register-based invalidation works", () => {
    const rig = new VtdRig({ queuedInvalidation: false });
    const ecap = readReg(rig.unit, RegOffset.ECAP, EcapReg);
    expect([EcapReg.get(ecap, "QI"), EcapReg.get(ecap, "DT"), EcapReg.get(ecap, "PRS")]).toEqual([0, 0, 0]);
    expect(EcapReg.get(readReg(new VtdRig().unit, RegOffset.ECAP, EcapReg), "QI")).toBe(1);
    rig.setRootTable();
    rig.enableQi();
    expect(GstsReg.get(readReg(rig.unit, R.GSTS, GstsReg), "QIES")).toBe(0);
    rig.enableTranslation();
    rig.device({ dte: false, pre: false }); // DTE and PRE are reserved without DT and PRS
    rig.setPasid(0, { pgtt: 4, did: 1 });
    expect(rig.unit.translate({ sid: rig.dev, addr: 0x1000, write: false }).ok).toBe(true);
    // A descriptor written to the would-be queue is never fetched: the context stays cached.
    rig.setContext(rig.dev, { present: false, dte: false, pre: false });
    rig.submit(desc.contextCache(1));
    expect(rig.unit.translate({ sid: rig.dev, addr: 0x1000, write: false }).ok).toBe(true);
    // CCMD (global context-cache invalidation) does it.
    rig.setReg64(R.CCMD, (1n << 63n) | (1n << 61n));
    expect(rig.unit.translate({ sid: rig.dev, addr: 0x1000, write: false })).toMatchObject({ ok: false, reason: 0x41 });
  });

  it("VT-d refuses device-TLB or page-request support without queued invalidation", () => {
    expect(messageOf(() => new VtdUnit({ mem: mem(), queuedInvalidation: false, deviceTlb: true }))).toContain("ECAP.QI");
    expect(messageOf(() => new VtdUnit({ mem: mem(), queuedInvalidation: false, deviceTlb: false, pageRequests: true }))).toContain("ECAP.QI");
  });
});
