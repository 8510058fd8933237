import { Errno, type SourceId, sourceId } from "@vsva/kernel";
import { errnoOf } from "@vsva/kernel/testing";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { PagePool, ArmTableWriter } from "@vsva/pgtable";
import { CD_TABLE, CMDQ, EVENTQ, PRIQ, SR, STRTAB, SmmuRig, cmd } from "./testing/rig.js";
import { FakeEndpoint } from "../pci/testing/fake-endpoint.js";
import { joinDwords } from "../mmio/mmio.js";
import { PlatformDmaMaster } from "./platform-master.js";

const BASE = 0x40_0000_0000;
const PAGES = 16;

/** Two SubstreamIDs (ASIDs 1 and 2) with their own stage-1 tables built by the AArch64 table writer. */
function propertyRig(): { rig: SmmuRig; writers: ArmTableWriter[] } {
  const rig = new SmmuRig().bringUp();
  const pool = new PagePool(rig.mem, 0x800_0000, 0x100_0000);
  rig.ste(rig.dev, { config: 5, ctx: CD_TABLE, cdmax: 2 });
  const writers = [1, 2].map((ssid) => {
    const w = ArmTableWriter.stage1(rig.mem, { alloc: pool.alloc, free: pool.free });
    rig.cd(CD_TABLE + 64 * ssid, { ttb0: w.root, asid: ssid });
    return w;
  });
  return { rig, writers };
}

type Op =
  | { k: "map"; s: number; page: number; n: number; write: boolean; frame: number }
  | { k: "unmap"; s: number; page: number; n: number }
  | { k: "protect"; s: number; page: number; write: boolean }
  | { k: "dma"; s: number; page: number; write: boolean };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ k: fc.constant("map" as const), s: fc.integer({ min: 0, max: 1 }), page: fc.integer({ min: 0, max: PAGES - 1 }), n: fc.integer({ min: 1, max: 3 }), write: fc.boolean(), frame: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ k: fc.constant("unmap" as const), s: fc.integer({ min: 0, max: 1 }), page: fc.integer({ min: 0, max: PAGES - 1 }), n: fc.integer({ min: 1, max: 3 }) }),
  fc.record({ k: fc.constant("protect" as const), s: fc.integer({ min: 0, max: 1 }), page: fc.integer({ min: 0, max: PAGES - 1 }), write: fc.boolean() }),
  fc.record({ k: fc.constant("dma" as const), s: fc.integer({ min: 0, max: 1 }), page: fc.integer({ min: 0, max: PAGES + 1 }), write: fc.boolean() }),
);

describe("cached translations equal fresh walks after the right invalidations (property)", () => {
  it("holds for random map/unmap/protect with TLBI_NH_VA + CMD_SYNC after each change", () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 40 }), (ops) => {
        const { rig, writers } = propertyRig();
        for (const o of ops) {
          const w = writers[o.s];
          if (w === undefined) continue;
          const ssid = o.s + 1;
          const va = BASE + o.page * 4096;
          let changed: [number, number] | null = null;
          try {
            if (o.k === "map") {
              w.map(va, 0x200_0000 + o.frame * 4096, o.n * 4096, { write: o.write });
              changed = [va, o.n];
            } else if (o.k === "unmap") {
              w.unmap(va, o.n * 4096);
              changed = [va, o.n];
            } else if (o.k === "protect") {
              w.protect(va, 4096, { write: o.write });
              changed = [va, 1];
            }
          } catch {
            changed = null; // EEXIST / ENOENT: the tables are unchanged
          }
          if (o.k === "dma") {
            const cached = rig.unit.translate({ sid: rig.dev, pasid: ssid, addr: va, write: o.write });
            const fresh = rig.unit.debug.translateUncached({ sid: rig.dev, pasid: ssid, addr: va, write: o.write });
            expect(cached).toEqual(fresh);
          }
          if (changed !== null) {
            const cmds = [];
            for (let i = 0; i < changed[1]; i++) cmds.push(cmd.nhVa(0, ssid, changed[0] + i * 4096, true));
            rig.submit(...cmds, cmd.sync());
          }
          expect(rig.unit.debug.checkCaches()).toEqual([]);
        }
      }),
      { numRuns: 80 },
    );
  });

  it("reports the stale entry when the TLBI is missing", () => {
    const { rig, writers } = propertyRig();
    writers[0]?.map(BASE, 0x200_0000, 4096, { write: true });
    expect(rig.unit.translate({ sid: rig.dev, pasid: 1, addr: BASE, write: true }).ok).toBe(true);
    writers[0]?.unmap(BASE, 4096);
    const stale = rig.unit.debug.checkCaches();
    expect(stale).toHaveLength(1);
    expect(stale[0]?.cached.inputBase).toBe(BASE);
    expect(rig.unit.translate({ sid: rig.dev, pasid: 1, addr: BASE, write: true }).ok).toBe(true);
  });
});

describe("robustness: nothing software, a guest or a device does makes the unit throw", () => {
  const u32 = fc.integer({ min: 0, max: 0xffff_ffff });
  const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
  const anyNumber = fc.oneof(fc.integer({ min: -(2 ** 53), max: 2 ** 53 }), fc.double(), fc.constantFrom(Number.NaN, Infinity, -Infinity, 2 ** 63, 2 ** 64 - 4096));
  const offset = fc.oneof(fc.integer({ min: 0, max: 0x100 }).map((i) => i * 4), fc.integer({ min: 0x10080, max: 0x100d0 }), anyNumber);
  const structAddr = fc.oneof(
    fc.integer({ min: 0, max: 511 }).map((i) => STRTAB + 8 * i),
    fc.integer({ min: 0, max: 511 }).map((i) => CD_TABLE + 8 * i),
    fc.integer({ min: 0, max: 2047 }).map((i) => 0x10_0000 + 8 * i),
    fc.integer({ min: 0, max: 511 }).map((i) => CMDQ + 8 * i),
    fc.integer({ min: 0, max: 63 }).map((i) => EVENTQ + 8 * i),
    fc.integer({ min: 0, max: 63 }).map((i) => PRIQ + 8 * i),
  );
  type F =
    | { k: "w32"; off: number; v: number }
    | { k: "w64"; off: number; lo: number; hi: number }
    | { k: "mem"; at: number; v: bigint }
    | { k: "cmd"; lo: bigint; hi: bigint }
    | { k: "dma"; sid: number; pasid: number | undefined; addr: number; write: boolean; priv: boolean; exec: boolean; ats: boolean }
    | { k: "pri"; sid: number; pasid: number | undefined; addr: number; last: boolean; prgi: number };
  const fuzzArb: fc.Arbitrary<F> = fc.oneof(
    fc.record({ k: fc.constant("w32" as const), off: offset, v: fc.oneof(u32, anyNumber) }),
    fc.record({ k: fc.constant("w64" as const), off: offset, lo: u32, hi: u32 }),
    fc.record({ k: fc.constant("mem" as const), at: structAddr, v: u64 }),
    fc.record({ k: fc.constant("cmd" as const), lo: fc.oneof(u64, fc.integer({ min: 0, max: 0x50 }).map(BigInt)), hi: u64 }),
    fc.record({
      k: fc.constant("dma" as const), sid: fc.oneof(fc.constantFrom(0x10, 0x11, 0x1234), anyNumber), pasid: fc.option(fc.oneof(fc.integer({ min: 0, max: 2 ** 21 }), anyNumber), { nil: undefined }),
      addr: anyNumber, write: fc.boolean(), priv: fc.boolean(), exec: fc.boolean(), ats: fc.boolean(),
    }),
    fc.record({ k: fc.constant("pri" as const), sid: fc.oneof(fc.constantFrom(0x10, 0x11), anyNumber), pasid: fc.option(anyNumber, { nil: undefined }), addr: anyNumber, last: fc.boolean(), prgi: anyNumber }),
  );

  it("survives random register, table, command, DMA and page-request traffic", () => {
    fc.assert(
      fc.property(fc.boolean(), fc.boolean(), fc.array(fuzzArb, { maxLength: 60 }), (twoLevel, stall, ops) => {
        // With the stall model, the CD and stage 2 stall and a platform master waits on its stalls (RESUME/STALL_TERM come from the random commands).
        const rig = new SmmuRig({ stall }).bringUp({ twoLevel });
        const master = new PlatformDmaMaster({ sid: sourceId(0, 2, 1), mem: rig.mem });
        master.attach(rig.unit);
        rig.unit.attachEndpoint(new FakeEndpoint(rig.dev));
        rig.unit.attachEndpoint(master);
        rig.ste(rig.dev, { config: 7, ctx: CD_TABLE, cdmax: 4, s2ttb: 0x10_0000, eats: 1, s2r: true, s2s: stall }, twoLevel);
        rig.ste(master.sid, { config: 5, ctx: CD_TABLE }, twoLevel);
        rig.cd(CD_TABLE, { ttb0: 0x10_1000, s: stall });
        for (const o of ops) {
          switch (o.k) {
            case "w32":
              // A value that is not 32 bits is refused at the boundary (EINVAL), never truncated.
              if (Number.isInteger(o.v) && o.v >= -(2 ** 31) && o.v <= 0xffff_ffff) rig.unit.mmioWrite32(o.off, o.v);
              else expect(errnoOf(() => rig.unit.mmioWrite32(o.off, o.v))).toBe(Errno.EINVAL);
              break;
            case "w64":
              rig.unit.mmioWrite64(o.off, joinDwords(o.lo, o.hi));
              break;
            case "mem":
              rig.w64(o.at, o.v);
              break;
            case "cmd":
              rig.submit([o.lo, o.hi]);
              break;
            case "dma": {
              const req = { sid: o.sid as SourceId, addr: o.addr, write: o.write, ats: o.ats, ...(o.pasid === undefined ? {} : { pasid: o.pasid, priv: o.priv, exec: o.exec }) };
              // An address that is no 64-bit bus address (or, with SMMUEN = 0, none below OAS) is refused at the boundary.
              const bus = Number.isInteger(o.addr) && o.addr >= -(2 ** 63) && o.addr < 2 ** 64;
              const bypassOk = (rig.reg(SR.CR0ACK) & 1) === 1 || (o.addr >= 0 && o.addr < 2 ** rig.unit.cfg.oas);
              if (!bus || !bypassOk) {
                expect(errnoOf(() => rig.unit.translate(req))).toBe(Errno.EINVAL);
                break;
              }
              const r = rig.unit.translate(req);
              expect(typeof r.ok).toBe("boolean");
              if (!o.ats) master.start({ addr: o.addr, length: 16, direction: o.write ? "write" : "read" });
              break;
            }
            case "pri":
              rig.unit.pageRequest({ sid: o.sid as SourceId, ...(o.pasid === undefined ? {} : { pasid: o.pasid }), priv: false, exec: false, addr: o.addr, read: true, write: false, lastInGroup: o.last, groupIndex: o.prgi });
              break;
          }
          rig.unit.mmioRead32(o.k === "w32" || o.k === "w64" ? o.off : 0);
        }
        rig.unit.debug.checkCaches();
        rig.unit.debug.checkStructureCaches();
      }),
      { numRuns: 150 },
    );
    expect(sourceId(0, 2, 0)).toBe(0x10);
  });
});
