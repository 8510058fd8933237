import { Scheduler, sourceId } from "@vsva/kernel";
import { describe, expect, it } from "vitest";
import type { DmaRequest, TranslateResult } from "../iommu-port.js";
import type { VtdInterrupt } from "./options.js";
import { FL_P, FL_RW, FL_US, IQ_BASE, R, SL_R, SL_W, STATUS, VtdRig, desc } from "./testing/rig.js";
import { FakeEndpoint } from "../pci/testing/fake-endpoint.js";

const PASID = 9;
const DID = 3;

const pa = (r: TranslateResult): number | string => (r.ok ? r.pa : `fault 0x${r.reason.toString(16)}`);

function flSetup(opts: ConstructorParameters<typeof VtdRig>[0] = {}): { rig: VtdRig; root: number; at: (addr: number, write?: boolean) => DmaRequest } {
  const rig = new VtdRig(opts).bringUp();
  rig.device();
  const root = rig.alloc();
  rig.setPasid(PASID, { pgtt: 1, did: DID, flptr: root });
  return { rig, root, at: (addr, write = false) => ({ sid: rig.dev, pasid: PASID, addr, write }) };
}

function slSetup(): { rig: VtdRig; root: number; at: (addr: number) => DmaRequest } {
  const rig = new VtdRig().bringUp();
  rig.device();
  const root = rig.alloc();
  rig.setPasid(0, { pgtt: 2, did: DID, slptr: root, aw: 2 });
  return { rig, root, at: (addr) => ({ sid: rig.dev, addr, write: false }) };
}

describe("caches serve stale entries until the matching invalidation is processed", () => {
  it("IOTLB, first level: a remapped page keeps its old translation until a PASID-based page invalidation", () => {
    const { rig, root, at } = flSetup();
    rig.flMap(root, 0x1000, 0xa000);
    expect(pa(rig.unit.translate(at(0x1000)))).toBe(0xa000);
    rig.flMap(root, 0x1000, 0xb000);
    expect(pa(rig.unit.translate(at(0x1000)))).toBe(0xa000);
    rig.submit(desc.pasidIotlb(3, DID, PASID, 0x1000, 0));
    expect(pa(rig.unit.translate(at(0x1000)))).toBe(0xb000);
  });

  it("a PASID-selective invalidation drops every page of the PASID, and only of that (DID, PASID)", () => {
    const { rig, root, at } = flSetup();
    rig.flMap(root, 0x1000, 0xa000);
    rig.flMap(root, 0x2000, 0xc000);
    rig.unit.translate(at(0x1000));
    rig.unit.translate(at(0x2000));
    rig.flMap(root, 0x1000, 0xb000);
    rig.flMap(root, 0x2000, 0xd000);
    rig.submit(desc.pasidIotlb(2, DID, PASID + 1));
    rig.submit(desc.pasidIotlb(2, DID + 1, PASID));
    expect(pa(rig.unit.translate(at(0x1000)))).toBe(0xa000);
    rig.submit(desc.pasidIotlb(2, DID, PASID));
    expect(pa(rig.unit.translate(at(0x1000)))).toBe(0xb000);
    expect(pa(rig.unit.translate(at(0x2000)))).toBe(0xd000);
  });

  it("a DID-based IOTLB invalidation (type 2) leaves first-level-only mappings alone", () => {
    const { rig, root, at } = flSetup();
    rig.flMap(root, 0x1000, 0xa000);
    rig.unit.translate(at(0x1000));
    rig.flMap(root, 0x1000, 0xb000);
    rig.submit(desc.iotlb(2, DID));
    expect(pa(rig.unit.translate(at(0x1000)))).toBe(0xa000);
  });

  it("a global IOTLB invalidation drops everything", () => {
    const { rig, root, at } = flSetup();
    rig.flMap(root, 0x1000, 0xa000);
    rig.unit.translate(at(0x1000));
    rig.flMap(root, 0x1000, 0xb000);
    rig.submit(desc.iotlb(1));
    expect(pa(rig.unit.translate(at(0x1000)))).toBe(0xb000);
  });

  it("IOTLB, second level: stale until a domain page-selective or domain-selective invalidation; PASID-based ones do not touch it", () => {
    const { rig, root, at } = slSetup();
    rig.slMap(root, 0x40_0000, 0xa000);
    rig.slMap(root, 0x80_0000, 0xe000);
    rig.unit.translate(at(0x40_0000));
    rig.unit.translate(at(0x80_0000));
    rig.slMap(root, 0x40_0000, 0xb000);
    rig.slMap(root, 0x80_0000, 0xf000);
    rig.submit(desc.pasidIotlb(2, DID, 0));
    expect(pa(rig.unit.translate(at(0x40_0000)))).toBe(0xa000);
    rig.submit(desc.iotlb(3, DID, 0x40_0000, 0));
    expect(pa(rig.unit.translate(at(0x40_0000)))).toBe(0xb000);
    expect(pa(rig.unit.translate(at(0x80_0000)))).toBe(0xe000);
    rig.submit(desc.iotlb(2, DID));
    expect(pa(rig.unit.translate(at(0x80_0000)))).toBe(0xf000);
  });

  it("a page-selective invalidation covers 2^AM pages from the aligned address", () => {
    const { rig, root, at } = flSetup();
    for (let i = 0; i < 8; i++) rig.flMap(root, 0x10000 + i * 0x1000, 0x100000 + i * 0x1000);
    for (let i = 0; i < 8; i++) rig.unit.translate(at(0x10000 + i * 0x1000));
    for (let i = 0; i < 8; i++) rig.flMap(root, 0x10000 + i * 0x1000, 0x200000 + i * 0x1000);
    rig.submit(desc.pasidIotlb(3, DID, PASID, 0x14000, 2)); // pages 0x14000..0x17fff
    expect([0, 3, 4, 7].map((i) => pa(rig.unit.translate(at(0x10000 + i * 0x1000))))).toEqual([0x100000, 0x103000, 0x204000, 0x207000]);
  });

  it("paging-structure caches: IH=1 keeps the cached directory entry, IH=0 drops it", () => {
    const { rig, root, at } = flSetup();
    rig.flMap(root, 0x20_0000, 0xa000);
    rig.unit.translate(at(0x20_0000));
    // Point the PD entry for 0x20_0000 at a fresh page table mapping the page elsewhere.
    const newPt = rig.alloc();
    rig.w64(newPt, 0xb000n | FL_P | FL_RW | FL_US);
    // The PD entry for 0x20_0000 (index 1), found by walking the hand-written tables from the root.
    const pml4e = rig.r64(root) & ~0xfffn;
    const pdpte = rig.r64(Number(pml4e)) & ~0xfffn;
    const pdeAddr = Number(pdpte) + 8 * 1;
    rig.w64(pdeAddr, BigInt(newPt) | FL_P | FL_RW | FL_US);
    rig.submit(desc.pasidIotlb(3, DID, PASID, 0x20_0000, 0, true));
    expect(pa(rig.unit.translate(at(0x20_0000)))).toBe(0xa000);
    rig.submit(desc.pasidIotlb(3, DID, PASID, 0x20_0000, 0, false));
    expect(pa(rig.unit.translate(at(0x20_0000)))).toBe(0xb000);
  });

  it("context cache: a context entry cleared in memory is still used until a device-selective context invalidation", () => {
    const { rig, root, at } = flSetup();
    rig.flMap(root, 0x1000, 0xa000);
    rig.unit.translate(at(0x1000));
    rig.setContext(rig.dev, { present: false });
    rig.submit(desc.pasidIotlb(2, DID, PASID));
    expect(pa(rig.unit.translate(at(0x1000)))).toBe(0xa000);
    rig.submit(desc.contextCache(3, 0, sourceId(0, 2, 1), 0)); // another function: no effect
    expect(pa(rig.unit.translate(at(0x1000)))).toBe(0xa000);
    rig.submit(desc.contextCache(3, 0, sourceId(0, 2, 1), 3)); // FM=3 masks the function bits
    expect(pa(rig.unit.translate(at(0x1000)))).toBe("fault 0x41");
  });

  it("PASID cache: a PASID entry cleared in memory is still used until a PASID-cache invalidation with its DID", () => {
    const { rig, root, at } = flSetup();
    rig.flMap(root, 0x1000, 0xa000);
    rig.unit.translate(at(0x1000));
    rig.setPasid(PASID, { present: false, pgtt: 1, did: DID });
    rig.submit(desc.pasidIotlb(2, DID, PASID));
    expect(pa(rig.unit.translate(at(0x1000)))).toBe(0xa000);
    rig.submit(desc.pasidCache(1, DID + 1, PASID));
    expect(pa(rig.unit.translate(at(0x1000)))).toBe(0xa000);
    rig.submit(desc.pasidCache(0, DID)); // domain-selective
    expect(pa(rig.unit.translate(at(0x1000)))).toBe("fault 0x59");
  });

  it("nested: a second-level change is served stale until a DID-based invalidation, which also drops the combined entries", () => {
    const rig = new VtdRig().bringUp();
    rig.device();
    const sl = rig.alloc();
    const gFl = 0x1000;
    const G = 0x0800_0000;
    rig.setPasid(PASID, { pgtt: 3, did: DID, slptr: sl, aw: 2, flptr: gFl });
    // Guest tables at GPA 0x1000.. (host G + gpa); a single 4 KiB mapping VA 0 -> GPA 0x9000.
    rig.w64(G + 0x1000, 0x2000n | FL_P | FL_RW | FL_US);
    rig.w64(G + 0x2000, 0x3000n | FL_P | FL_RW | FL_US);
    rig.w64(G + 0x3000, 0x4000n | FL_P | FL_RW | FL_US);
    rig.w64(G + 0x4000, 0x9000n | FL_P | FL_RW | FL_US);
    for (const g of [0x1000, 0x2000, 0x3000, 0x4000]) rig.slMap(sl, g, G + g);
    rig.slMap(sl, 0x9000, 0x00a0_0000);
    const at = { sid: rig.dev, pasid: PASID, addr: 0x10, write: false };
    expect(pa(rig.unit.translate(at))).toBe(0x00a0_0010);
    rig.slMap(sl, 0x9000, 0x00b0_0000, { leaf: SL_R | SL_W });
    rig.submit(desc.pasidIotlb(2, DID + 1, PASID));
    expect(pa(rig.unit.translate(at))).toBe(0x00a0_0010);
    rig.submit(desc.iotlb(3, DID, 0x9000, 0));
    expect(pa(rig.unit.translate(at))).toBe(0x00b0_0010);
  });
});

describe("caching mode (CM=1)", () => {
  it("caches a not-present first-level result until software invalidates after mapping", () => {
    const { rig, root, at } = flSetup({ cachingMode: true });
    expect(pa(rig.unit.translate(at(0x5000)))).toBe("fault 0x71");
    rig.flMap(root, 0x5000, 0xa000);
    expect(pa(rig.unit.translate(at(0x5000)))).toBe("fault 0x71");
    rig.submit(desc.pasidIotlb(3, DID, PASID, 0x5000, 0));
    expect(pa(rig.unit.translate(at(0x5000)))).toBe(0xa000);
  });

  it("without caching mode the same mapping is seen at once", () => {
    const { rig, root, at } = flSetup();
    expect(pa(rig.unit.translate(at(0x5000)))).toBe("fault 0x71");
    rig.flMap(root, 0x5000, 0xa000);
    expect(pa(rig.unit.translate(at(0x5000)))).toBe(0xa000);
  });

  it("caches a not-present PASID entry; a PASID-selective invalidation with the new DID revalidates it", () => {
    const rig = new VtdRig({ cachingMode: true }).bringUp();
    rig.device();
    const at = { sid: rig.dev, pasid: PASID, addr: 0x5000, write: false };
    expect(pa(rig.unit.translate(at))).toBe("fault 0x51");
    const root = rig.alloc();
    rig.setPasid(PASID, { pgtt: 1, did: DID, flptr: root });
    rig.flMap(root, 0x5000, 0xa000);
    expect(pa(rig.unit.translate(at))).toBe("fault 0x51");
    rig.submit(desc.pasidCache(1, DID, PASID));
    expect(pa(rig.unit.translate(at))).toBe(0xa000);
  });

  it("caches a not-present context entry until a device-selective context invalidation", () => {
    const rig = new VtdRig({ cachingMode: true }).bringUp();
    rig.setRoot(0);
    rig.setContext(rig.dev, { present: false });
    const at = { sid: rig.dev, addr: 0x5000, write: false };
    expect(pa(rig.unit.translate(at))).toBe("fault 0x41");
    rig.setContext(rig.dev, {});
    rig.setPasid(0, { pgtt: 4, did: 1 });
    expect(pa(rig.unit.translate(at))).toBe("fault 0x41");
    rig.submit(desc.contextCache(3, 0, rig.dev));
    expect(pa(rig.unit.translate(at))).toBe(0x5000);
  });
});

describe("device-TLB invalidations and page responses reach the endpoint", () => {
  it("forwards type 3 and type 8 with the size encoded in the address (S=1)", () => {
    const rig = new VtdRig().bringUp();
    const ep = new FakeEndpoint(rig.dev);
    rig.unit.attachEndpoint(ep);
    rig.submit(desc.deviceTlb(rig.dev, 0x7000));
    rig.submit(desc.deviceTlb(rig.dev, 0x4000 | 0x1000, true)); // bit 12 = 1, bit 13 = 0: 16 KiB at 0x4000
    rig.submit(desc.pasidDeviceTlb(rig.dev, PASID, 0xff000, { s: true })); // bits 19:12 set, bit 20 clear: 2 MiB at 0
    rig.submit(desc.pasidDeviceTlb(rig.dev, PASID, 0x3000, { g: true }));
    expect(ep.invalidations).toEqual([
      { addr: 0x7000, size: 0x1000 },
      { addr: 0x4000, size: 0x4000 },
      { pasid: PASID, global: false, addr: 0, size: 0x20_0000 },
      { pasid: PASID, global: true, addr: 0x3000, size: 0x1000 },
    ]);
  });

  it("routes a page group response (type 9) to the endpoint by requester ID", () => {
    const rig = new VtdRig().bringUp();
    const ep = new FakeEndpoint(rig.dev);
    rig.unit.attachEndpoint(ep);
    rig.submit(desc.pageResponse(rig.dev, 17, 0, PASID), desc.pageResponse(rig.dev, 18, 1), desc.pageResponse(rig.dev, 19, 0xf, PASID));
    expect(ep.responses).toEqual([
      { sid: rig.dev, pasid: PASID, groupIndex: 17, code: "success" },
      { sid: rig.dev, groupIndex: 18, code: "invalid" },
      { sid: rig.dev, pasid: PASID, groupIndex: 19, code: "failure" },
    ]);
  });

  it("refuses a second endpoint at the same source ID (EEXIST)", () => {
    const rig = new VtdRig();
    rig.unit.attachEndpoint(new FakeEndpoint(rig.dev));
    expect(() => rig.unit.attachEndpoint(new FakeEndpoint(rig.dev))).toThrow(/EEXIST/);
  });
});

describe("invalidation wait", () => {
  it("writes the status data and, with IF, sets ICS.IWC and raises the invalidation event once unmasked", () => {
    const irqs: VtdInterrupt[] = [];
    const rig = new VtdRig({ onInterrupt: (i) => irqs.push(i) }).bringUp();
    rig.unit.mmioWrite32(R.IEDATA, 0x41);
    rig.unit.mmioWrite32(R.IEADDR, 0xfee0_0000);
    rig.submit(desc.wait({ sw: true, iflag: true, data: 0xc0ffee, addr: STATUS }));
    expect(rig.mem.read32(STATUS)).toBe(0xc0ffee);
    expect(rig.unit.mmioRead32(R.ICS)).toBe(1);
    expect(irqs).toEqual([]); // IECTL.IM is set out of reset: pending
    expect(rig.unit.mmioRead32(R.IECTL) >>> 0).toBe(0xc000_0000);
    rig.unit.mmioWrite32(R.IECTL, 0);
    expect(irqs).toEqual([{ source: "invalidation", addr: 0xfee0_0000, data: 0x41 }]);
    rig.unit.mmioWrite32(R.ICS, 1);
    expect(rig.unit.mmioRead32(R.ICS)).toBe(0);
  });
});

describe("invalidation-queue errors stop the queue (FSTS.IQE, IQERCD)", () => {
  const iqei = (rig: VtdRig): number => Number(rig.reg64(R.IQERCD) & 0xfn);
  const iqe = (rig: VtdRig): boolean => (rig.unit.mmioRead32(R.FSTS) & 0x10) !== 0;

  it("an unknown type stops with IQH on it; later descriptors wait until software fixes it and clears IQE", () => {
    const rig = new VtdRig().bringUp();
    rig.submit(desc.wait({ sw: true, data: 1, addr: STATUS }), [0xan, 0n], desc.wait({ sw: true, data: 2, addr: STATUS }));
    expect(iqe(rig)).toBe(true);
    expect(iqei(rig)).toBe(3);
    expect(rig.reg64(R.IQH)).toBe(32n);
    expect(rig.mem.read32(STATUS)).toBe(1);
    // Software replaces the bad descriptor with a harmless wait and clears IQE: processing resumes.
    rig.w64(IQ_BASE + 32, 5n);
    rig.unit.mmioWrite32(R.FSTS, 0x10);
    expect(iqe(rig)).toBe(false);
    expect(rig.mem.read32(STATUS)).toBe(2);
    expect(rig.reg64(R.IQH)).toBe(96n);
  });

  it("reserved bits give IQEI=4; a reserved granularity too", () => {
    const rig = new VtdRig().bringUp();
    rig.submit([2n | (1n << 4n) | (1n << 8n), 0n]); // IOTLB global with bit 8 set
    expect(iqei(rig)).toBe(4);
    const rig2 = new VtdRig().bringUp();
    rig2.submit(desc.pasidIotlb(1, 0, 0)); // G=1 is reserved for type 6
    expect(iqei(rig2)).toBe(4);
  });

  it("non-zero upper half of a 256-bit descriptor is a reserved-field violation", () => {
    const rig = new VtdRig().bringUp();
    rig.submit([5n, 0n, 0n, 1n]);
    expect(iqei(rig)).toBe(4);
  });

  it("a tail beyond the queue gives IQEI=1, a tail not 256-bit aligned with DW=1 gives IQEI=6", () => {
    const rig = new VtdRig().bringUp();
    rig.setReg64(R.IQT, 0x2000n); // past the end of a one-page queue
    expect(iqei(rig)).toBe(1);
    const rig2 = new VtdRig().bringUp();
    rig2.setReg64(R.IQT, 0x10n);
    expect(iqei(rig2)).toBe(6);
  });

  it("a queue in no memory gives a fetch error (IQEI=2) and raises the fault event", () => {
    const irqs: VtdInterrupt[] = [];
    const rig = new VtdRig({ onInterrupt: (i) => irqs.push(i) });
    rig.setRootTable();
    rig.unit.mmioWrite32(R.FECTL, 0);
    rig.setReg64(R.IQA, 0x3000_0000_0000n | (1n << 11n));
    rig.gcmd(1 << 26);
    rig.setReg64(R.IQT, 0x20n);
    expect(iqei(rig)).toBe(2);
    expect(irqs.map((i) => i.source)).toEqual(["fault"]);
  });

  it("a 128-bit queue wraps at its end and keeps going", () => {
    const rig = new VtdRig();
    rig.setRootTable();
    rig.enableQi(false, 0); // 256 entries of 16 bytes
    for (let batch = 0; batch < 3; batch++) {
      const ds = Array.from({ length: 100 }, (_, i) => desc.wait({ sw: true, data: batch * 100 + i, addr: STATUS }));
      rig.submit(...ds);
    }
    expect(iqe(rig)).toBe(false);
    expect(rig.mem.read32(STATUS)).toBe(299);
    expect(rig.reg64(R.IQH)).toBe(BigInt((300 * 16) % 4096));
  });
});

describe("deferred invalidation processing", () => {
  it("leaves the window between IQT write and completion open until the scheduler runs the work", () => {
    const sched = new Scheduler();
    const rig = new VtdRig({ invalidation: { scheduler: sched } }).bringUp();
    rig.device();
    const root = rig.alloc();
    rig.setPasid(PASID, { pgtt: 1, did: DID, flptr: root });
    rig.flMap(root, 0x1000, 0xa000);
    const at = { sid: rig.dev, pasid: PASID, addr: 0x1000, write: false };
    rig.unit.translate(at);
    rig.flMap(root, 0x1000, 0xb000);
    rig.submit(desc.pasidIotlb(2, DID, PASID), desc.wait({ sw: true, data: 7, addr: STATUS }));
    expect(rig.unit.debug.invalidationPending).toBe(true);
    expect(pa(rig.unit.translate(at))).toBe(0xa000);
    expect(rig.mem.read32(STATUS)).toBe(0);
    sched.runUntilIdle();
    expect(rig.mem.read32(STATUS)).toBe(7);
    expect(pa(rig.unit.translate(at))).toBe(0xb000);
  });
});

describe("wait descriptors fence device-TLB invalidations", () => {
  it("writes the wait status only after every earlier device-TLB invalidation has reached the endpoint, deferred or not", () => {
    for (const deferred of [false, true]) {
      const sched = new Scheduler();
      const rig = new VtdRig(deferred ? { invalidation: { scheduler: sched } } : {}).bringUp();
      // The endpoint notes what the status word held when each invalidation reached it.
      const seenStatus: number[] = [];
      const ep = new FakeEndpoint(rig.dev);
      const record = ep.invalidateDeviceTlb.bind(ep);
      ep.invalidateDeviceTlb = (inv) => {
        seenStatus.push(rig.mem.read32(STATUS));
        record(inv);
      };
      rig.unit.attachEndpoint(ep);
      rig.submit(desc.deviceTlb(rig.dev, 0x7000), desc.pasidDeviceTlb(rig.dev, PASID, 0x3000), desc.wait({ sw: true, data: 1, addr: STATUS }));
      if (deferred) {
        expect(ep.invalidations).toEqual([]);
        expect(rig.mem.read32(STATUS)).toBe(0);
        sched.runUntilIdle();
      }
      expect(seenStatus).toEqual([0, 0]);
      expect(rig.mem.read32(STATUS)).toBe(1);
    }
  });
});
