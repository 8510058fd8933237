import { Kernel, sourceId } from "@vsva/kernel";
import { IoasidCore } from "@vsva/ioasid";
import { SparseMemory } from "@vsva/pgtable";
import type { IommuDevice } from "../device.js";
import { IommuCore } from "../iommu-core.js";
import type { Iommu } from "../iommu.js";
import { Mm } from "../mm/mm.js";
import { PhysMemBacking } from "../mm/phys-backing.js";
import { PAGE_SIZE, PageAllocator } from "../page-alloc.js";
import { MockIommu, type MockIommuOptions } from "./mock-driver.js";

export interface SvaHost {
  readonly kernel: Kernel;
  readonly mem: SparseMemory;
  readonly pages: PageAllocator;
  readonly ioasid: IoasidCore;
  readonly mock: MockIommu;
  readonly core: IommuCore;
  readonly iommu: Iommu;
  /** A new process address space in this host's memory. */
  newMm(name: string, levels?: 4 | 5): Mm;
  /** Probes a PASID-capable device (alone in its group unless `isolation` is given) and enables SVA on it. */
  svaDevice(name: string, fn: number, opts?: { readonly maxPasid?: number; readonly isolation?: string }): IommuDevice;
}

export interface SvaHostOptions {
  /** Pages in the pool (default 2048). */
  readonly poolPages?: number;
  /** IOASID capacity (default the full 20-bit space). */
  readonly pasidCapacity?: number;
  readonly svaPasidQuota?: number;
  readonly mock?: Omit<MockIommuOptions, "faults" | "pages">;
}

const POOL_BASE = 0x1000_0000;

/**
 * A host for SVA tests: real (sparse) physical memory that the page
 * allocator zeroes, the host's IOASID namespace, an IOMMU core using it, and
 * one mock IOMMU.
 */
export function svaHost(opts: SvaHostOptions = {}): SvaHost {
  const kernel = new Kernel();
  const size = (opts.poolPages ?? 2048) * PAGE_SIZE;
  const mem = new SparseMemory({ addrBits: 46, regions: [{ base: POOL_BASE, size }] });
  const pages = new PageAllocator({ base: POOL_BASE, size, backing: new PhysMemBacking(mem), faults: kernel.faults });
  const ioasid = new IoasidCore({
    scheduler: kernel.scheduler,
    trace: kernel.trace,
    faults: kernel.faults,
    ...(opts.pasidCapacity === undefined ? {} : { capacity: opts.pasidCapacity }),
  });
  const mock = new MockIommu({ ...opts.mock, faults: kernel.faults, pages });
  const core = new IommuCore({ kernel, ioasid, ...(opts.svaPasidQuota === undefined ? {} : { svaPasidQuota: opts.svaPasidQuota }) });
  const iommu = core.registerIommu("mock0", mock);
  return {
    kernel,
    mem,
    pages,
    ioasid,
    mock,
    core,
    iommu,
    newMm: (name, levels = 4) => new Mm({ kernel, mem, pages, levels, name }),
    svaDevice: (name, fn, o = {}) => {
      const dev = core.probeDevice(iommu, { name, sid: sourceId(0x6a, 0, fn), pasidWidth: 20, ...(o.isolation === undefined ? {} : { isolation: o.isolation }) });
      core.enableFeature(dev, "sva", o.maxPasid === undefined ? {} : { maxPasid: o.maxPasid });
      return dev;
    },
  };
}
