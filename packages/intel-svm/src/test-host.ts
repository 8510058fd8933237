import { Kernel } from "@vsva/kernel";
import { PciEndpoint, SparseMemory, type VtdOptions, VtdUnit, pciEnableForSva } from "@vsva/iommu-hw";
import { IoasidCore } from "@vsva/ioasid";
import { type Iommu, IommuCore, type IommuDevice, PageAllocator, PhysMemBacking, encodeGpasidBindData, IOMMU_SVA_GPASID_VAL } from "@vsva/iommu-core";
import { IntelIommu } from "./driver.js";

/**
 * Test support (not exported): a host with real parts — sparse RAM, the
 * emulated VT-d unit, a PCIe endpoint with PASID/ATS/PRI below it, the IOASID
 * core, the IOMMU core with this driver registered.
 *
 * Memory map: 0–16 MiB free for tests (guest RAM stand-ins, data pages),
 * 16–32 MiB the kernel's page pool (every page the driver allocates).
 */
export const MiB = 1 << 20;
export const POOL_BASE = 16 * MiB;
export const POOL_SIZE = 16 * MiB;

export interface TestHost {
  readonly kernel: Kernel;
  readonly mem: SparseMemory;
  readonly unit: VtdUnit;
  readonly pages: PageAllocator;
  readonly ioasid: IoasidCore;
  readonly core: IommuCore;
  readonly drv: IntelIommu;
  readonly iommu: Iommu;
}

export function testHost(unitOpts: Partial<VtdOptions> = {}, init = true): TestHost {
  const kernel = new Kernel();
  const mem = new SparseMemory({ addrBits: 46, regions: [{ base: 0, size: 64 * MiB }] });
  const unit = new VtdUnit({ mem, trace: kernel.trace, name: "dmar0", ...unitOpts });
  const pages = new PageAllocator({
    base: POOL_BASE,
    size: POOL_SIZE,
    backing: new PhysMemBacking(mem),
    faults: kernel.faults,
  });
  const ioasid = new IoasidCore({ scheduler: kernel.scheduler, trace: kernel.trace, faults: kernel.faults, log: kernel.log });
  const drv = new IntelIommu({ mmio: unit, mem, pages, kernel, ioasid });
  if (init) drv.init();
  // One IOASID namespace for the driver and the core, as on a real host: the core checks PASID ownership in it.
  const core = new IommuCore({ kernel, ioasid });
  const iommu = core.registerIommu("dmar0", drv);
  return { kernel, mem, unit, pages, ioasid, core, drv, iommu };
}

/** A DSA-like endpoint at `dev` on bus 0, enabled as its driver would (bus master, PASID with exec/priv, ATS, PRI). */
export function endpoint(h: TestHost, dev = 4, pasidWidth = 20): PciEndpoint {
  const ep = new PciEndpoint({
    bus: 0,
    dev,
    fn: 0,
    mem: h.mem,
    id: { vendorId: 0x8086, deviceId: 0x0b25 },
    pasid: { maxWidth: pasidWidth, exec: true, priv: true },
    ats: {},
    pri: { outstandingCapacity: 32 },
  });
  pciEnableForSva(ep);
  ep.attach(h.unit);
  h.unit.attachEndpoint(ep);
  return ep;
}

export function probe(h: TestHost, ep: PciEndpoint, pasidWidth = 20, name = "dsa0"): IommuDevice {
  return h.core.probeDevice(h.iommu, { name, sid: ep.sid, pasidWidth });
}

/** Writes `bytes` at `addr` (optionally with a PASID) through the device; returns the DMA result. */
export function dmaWrite(ep: PciEndpoint, addr: number, bytes: Uint8Array, pasid?: number, priv = false): string {
  ep.dma.setProgram({ ...(pasid === undefined ? {} : { pasid, priv }), addr, length: bytes.length, direction: "write", pattern: bytes });
  return ep.dma.trigger();
}

export const PATTERN = Uint8Array.of(0xde, 0xad, 0xbe, 0xef);

/** A bind request as a VMM lays it out. */
export function bindBytes(hpasid: number, o: { gpgd?: number; gpasid?: number; addrWidth?: number; vtdFlags?: number } = {}): Uint8Array {
  return encodeGpasidBindData({
    hpasid: BigInt(hpasid),
    gpgd: BigInt(o.gpgd ?? 0x1000),
    addrWidth: o.addrWidth ?? 48,
    ...(o.gpasid === undefined ? {} : { gpasid: BigInt(o.gpasid), flags: BigInt(IOMMU_SVA_GPASID_VAL) }),
    vtd: { flags: BigInt(o.vtdFlags ?? 0) },
  });
}

/**
 * A guest's 4-level first-level table mapping one 4 KiB page, hand-encoded
 * (x86-64 entries: P | RW | US, addresses are guest-physical), written
 * through the GPA -> HPA map of a guest RAM region that is linear at `hpaBase`.
 * Tables at GPA 0x1000..0x4000; returns the root GPA.
 */
export function guestTable(mem: SparseMemory, hpaBase: number, gva: number, gpaData: number): number {
  const P_RW_US = 0x7;
  const tables = [0x1000, 0x2000, 0x3000, 0x4000];
  const idx = (level: number): number => Math.floor(gva / 2 ** (12 + 9 * (level - 1))) % 512;
  for (let level = 4; level >= 1; level--) {
    const table = tables[4 - level] ?? 0;
    const next = level === 1 ? gpaData : (tables[5 - level] ?? 0);
    mem.write64(hpaBase + table + 8 * idx(level), (next | P_RW_US) >>> 0, Math.floor(next / 2 ** 32));
  }
  return tables[0] ?? 0;
}
