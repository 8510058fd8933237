import { Errno, type SourceId, sourceId } from "@vsva/kernel";
import { errnoOf } from "@vsva/kernel/testing";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { CTX_LO, IQ_BASE, PASID_DIR, PRQ_BASE, R, ROOT, VtdRig, desc } from "./testing/rig.js";
import { FakeEndpoint } from "../pci/testing/fake-endpoint.js";
import { joinDwords } from "../mmio/mmio.js";

/**
 * Whatever a guest or a buggy driver writes (registers, tables, descriptors)
 * and whatever a device sends, the unit answers with faults, errors and
 * status bits, never an exception (hardware reports bad programming through its registers).
 */

const u32 = fc.integer({ min: 0, max: 0xffff_ffff });
const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
const anyNumber = fc.oneof(fc.integer({ min: -(2 ** 53), max: 2 ** 53 }), fc.double(), fc.constantFrom(Number.NaN, Infinity, -Infinity, 2 ** 63, -(2 ** 63)));

type Op =
  | { k: "w32"; off: number; v: number }
  | { k: "w64"; off: number; lo: number; hi: number }
  | { k: "mem"; at: number; v: bigint }
  | { k: "desc"; qws: bigint[] }
  | { k: "dma"; bus: number; devfn: number; pasid: number | undefined; addr: number; write: boolean; priv: boolean; exec: boolean; ats: boolean }
  | { k: "prq"; pasid: number | undefined; addr: number; last: boolean; prgi: number };

const structureAddr = fc.oneof(
  fc.integer({ min: 0, max: 511 }).map((i) => ROOT + 8 * i),
  fc.integer({ min: 0, max: 511 }).map((i) => CTX_LO + 8 * i),
  fc.integer({ min: 0, max: 511 }).map((i) => PASID_DIR + 8 * i),
  fc.integer({ min: 0, max: 2047 }).map((i) => 0x100000 + 8 * i),
  fc.integer({ min: 0, max: 511 }).map((i) => IQ_BASE + 8 * i),
);

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ k: fc.constant("w32" as const), off: fc.oneof(fc.integer({ min: 0, max: 0x1003 }), anyNumber), v: fc.oneof(u32, anyNumber) }),
  fc.record({ k: fc.constant("w64" as const), off: fc.integer({ min: 0, max: 0x200 }).map((i) => i * 8), lo: u32, hi: u32 }),
  fc.record({ k: fc.constant("mem" as const), at: structureAddr, v: u64 }),
  fc.record({ k: fc.constant("desc" as const), qws: fc.array(u64, { minLength: 4, maxLength: 4 }) }),
  fc.record({
    k: fc.constant("dma" as const),
    bus: fc.integer({ min: 0, max: 1 }), devfn: fc.constantFrom(0x10, 0x11, 0x90),
    pasid: fc.option(fc.oneof(fc.integer({ min: 0, max: 2 ** 21 }), anyNumber), { nil: undefined }),
    addr: anyNumber, write: fc.boolean(), priv: fc.boolean(), exec: fc.boolean(), ats: fc.boolean(),
  }),
  fc.record({ k: fc.constant("prq" as const), pasid: fc.option(fc.integer({ min: 0, max: 2 ** 20 - 1 }), { nil: undefined }), addr: anyNumber, last: fc.boolean(), prgi: fc.integer({ min: 0, max: 511 }) }),
);

const fits32 = (v: number): boolean => Number.isInteger(v) && v >= -(2 ** 31) && v <= 0xffff_ffff;

function run(rig: VtdRig, op: Op): void {
  switch (op.k) {
    case "w32":
      // A value that is not 32 bits is refused at the boundary (EINVAL), never truncated.
      if (fits32(op.v)) rig.unit.mmioWrite32(op.off, op.v);
      else expect(errnoOf(() => rig.unit.mmioWrite32(op.off, op.v))).toBe(Errno.EINVAL);
      rig.unit.mmioRead32(op.off);
      return;
    case "w64":
      rig.unit.mmioWrite64(op.off, joinDwords(op.lo, op.hi));
      return;
    case "mem":
      rig.w64(op.at, op.v);
      return;
    case "desc":
      rig.submit(op.qws);
      return;
    case "dma": {
      const sid = ((op.bus << 8) | op.devfn) as SourceId;
      const dma = () => rig.unit.translate({ sid, ...(op.pasid === undefined ? {} : { pasid: op.pasid }), addr: op.addr, write: op.write, priv: op.priv, exec: op.exec, ats: op.ats });
      // An address that is no 64-bit bus address is refused at the boundary (EINVAL), never translated.
      const bus = Number.isInteger(op.addr) && op.addr >= -(2 ** 63) && op.addr < 2 ** 64;
      const tes = rig.unit.mmioRead32(R.GSTS) >>> 31 === 1;
      if (bus && (tes || (op.addr >= 0 && op.addr < 2 ** rig.unit.cfg.hostAddrBits))) dma();
      else expect(errnoOf(dma)).toBe(Errno.EINVAL);
      return;
    }
    case "prq":
      rig.unit.pageRequest({
        sid: rig.dev, ...(op.pasid === undefined ? {} : { pasid: op.pasid }), priv: false, exec: false, addr: op.addr,
        read: true, write: false, lastInGroup: op.last, groupIndex: op.prgi,
      });
      return;
  }
}

describe("robustness", () => {
  it("no sequence of register writes, table contents, descriptors, DMA or page requests makes the unit throw", () => {
    fc.assert(
      fc.property(fc.boolean(), fc.array(opArb, { minLength: 1, maxLength: 60 }), (cm, ops) => {
        const rig = new VtdRig({ cachingMode: cm, faultRecords: 2 }).bringUp();
        rig.device();
        const root = rig.alloc();
        rig.setPasid(3, { pgtt: 1, did: 1, flptr: root });
        rig.setPasid(0, { pgtt: 2, did: 2, slptr: rig.alloc(), aw: 2 });
        rig.setReg64(R.PQA, BigInt(PRQ_BASE));
        rig.unit.attachEndpoint(new FakeEndpoint(rig.dev));
        for (const op of ops) run(rig, op);
        rig.unit.debug.checkCaches();
        rig.unit.debug.checkStructureCaches();
      }),
      { numRuns: 300 },
    );
  });
});

describe("structure-cache check", () => {
  it("reports a context or PASID entry changed in memory until its invalidation is processed", () => {
    const rig = new VtdRig().bringUp();
    rig.device();
    rig.setPasid(0, { pgtt: 4, did: 1 });
    expect(rig.unit.translate({ sid: rig.dev, addr: 0x1000, write: false }).ok).toBe(true);
    expect(rig.unit.debug.checkStructureCaches()).toEqual([]);
    rig.setPasid(0, { pgtt: 4, did: 2 });
    rig.setContext(rig.dev, { pre: false });
    expect(rig.unit.debug.checkStructureCaches().map((m) => m.cache).sort()).toEqual(["context", "pasid"]);
    rig.submit(desc.contextCache(1), desc.pasidCache(3, 0));
    expect(rig.unit.debug.checkStructureCaches()).toEqual([]);
  });
});

describe("register-based invalidation", () => {
  it("CCMD and the IOTLB register invalidate at once and report the actual granularity", () => {
    const rig = new VtdRig().bringUp();
    const dev = sourceId(0, 2, 0);
    rig.device();
    const sl = rig.alloc();
    rig.setPasid(0, { pgtt: 2, did: 5, slptr: sl, aw: 2 });
    rig.slMap(sl, 0x1000, 0xa000);
    rig.unit.translate({ sid: dev, addr: 0x1000, write: false });
    rig.slMap(sl, 0x1000, 0xb000);
    const IOTLB = 0x508;
    rig.setReg64(IOTLB, (1n << 63n) | (2n << 60n) | (5n << 32n)); // IVT, DSI, DID 5
    expect(rig.reg64(IOTLB) >> 63n).toBe(0n);
    expect((rig.reg64(IOTLB) >> 57n) & 3n).toBe(2n);
    const r = rig.unit.translate({ sid: dev, addr: 0x1000, write: false });
    expect(r.ok ? r.pa : -1).toBe(0xb000);
    rig.setContext(dev, { present: false });
    rig.setReg64(R.CCMD, (1n << 63n) | (1n << 61n)); // ICC, global
    expect(rig.reg64(R.CCMD) >> 63n).toBe(0n);
    expect((rig.reg64(R.CCMD) >> 59n) & 3n).toBe(1n);
    expect(rig.unit.translate({ sid: dev, addr: 0x1000, write: false })).toMatchObject({ ok: false, reason: 0x41 });
  });
});
