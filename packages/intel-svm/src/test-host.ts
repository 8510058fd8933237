import type { Kernel } from "@vsva/kernel";
import type { PciEndpoint, PhysMem, SparseMemory, VtdOptions, VtdUnit } from "@vsva/iommu-hw";
import type { IoasidCore } from "@vsva/ioasid";
import { type Iommu, type IommuCore, type IommuDevice, type PageAllocator, encodeGpasidBindData, IOMMU_SVA_GPASID_VAL } from "@vsva/iommu-core";
import { Board, GuestMemoryView, MiB } from "@vsva/machine";
import type { IntelIommu } from "./driver.js";
import { type VtdPlatform, vtdPlatform } from "./platform.js";

/**
 * Test support (not exported): a board (`@vsva/machine`) with this driver's
 * platform — sparse RAM, the emulated VT-d unit, the IOASID core, the IOMMU
 * core with this driver registered — and PCIe endpoints with PASID/ATS/PRI
 * below the unit.
 *
 * Memory map: 0–16 MiB free for tests (guest RAM stand-ins, data pages),
 * 16–32 MiB the kernel's page pool (every page the driver allocates).
 */
export { MiB };
export const POOL_BASE = 16 * MiB;
export const POOL_SIZE = 16 * MiB;

export interface TestHost {
  readonly board: Board<VtdPlatform>;
  readonly kernel: Kernel;
  readonly mem: SparseMemory;
  readonly unit: VtdUnit;
  readonly pages: PageAllocator;
  readonly ioasid: IoasidCore;
  readonly core: IommuCore;
  readonly drv: IntelIommu;
  readonly iommu: Iommu;
}

/** `poll` is the driver's (see `QueuedInvalidationOptions.poll`): a test's VMM acts there while the driver waits. */
export function testHost(unitOpts: Partial<VtdOptions> = {}, init = true, driverOpts: { readonly qiPolls?: number; readonly poll?: () => void } = {}): TestHost {
  const board = new Board({ platform: vtdPlatform({ unit: unitOpts, init, ...driverOpts }), pool: { base: POOL_BASE, size: POOL_SIZE } });
  const { kernel, mem, pages, ioasid, core, iommu } = board;
  return { board, kernel, mem, unit: board.platform.unit, pages, ioasid, core, drv: board.platform.driver, iommu };
}

/** A DSA-like endpoint at `dev` on bus 0, enabled as its driver would (bus master, PASID with exec/priv, ATS, PRI). */
export function endpoint(h: TestHost, dev = 4, pasidWidth = 20): PciEndpoint {
  return h.board.endpoint({ bus: 0, dev, fn: 0, pasidWidth });
}

export function probe(h: TestHost, ep: PciEndpoint, pasidWidth = 20, name = "dsa0"): IommuDevice {
  return h.board.probe(ep, name, pasidWidth);
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
 * Guest RAM as the guest sees it: GPA [0, size) over the host pages from
 * `hpaBase` (a VMM's RAM block), in a 39-bit guest-physical space.
 */
export function guestRam(h: TestHost, hpaBase: number, size: number): GuestMemoryView {
  const guest = new GuestMemoryView({ host: h.mem, addrBits: 39 });
  guest.map(0, hpaBase, size);
  return guest;
}

/**
 * A guest's 4-level first-level table mapping one 4 KiB page, hand-encoded
 * (x86-64 entries: P | RW | US, addresses are guest-physical), written by the
 * guest into its own RAM. Tables at GPA 0x1000..0x4000; returns the root GPA.
 */
export function guestTable(guest: PhysMem, gva: number, gpaData: number): number {
  const P_RW_US = 0x7;
  const tables = [0x1000, 0x2000, 0x3000, 0x4000];
  const idx = (level: number): number => Math.floor(gva / 2 ** (12 + 9 * (level - 1))) % 512;
  for (let level = 4; level >= 1; level--) {
    const table = tables[4 - level] ?? 0;
    const next = level === 1 ? gpaData : (tables[5 - level] ?? 0);
    guest.write64(table + 8 * idx(level), (next | P_RW_US) >>> 0, Math.floor(next / 2 ** 32));
  }
  return tables[0] ?? 0;
}
