import { Kernel } from "@vsva/kernel";
import { IommuCore, type IommuCoreOptions } from "../iommu-core.js";
import type { Iommu } from "../iommu.js";
import { PAGE_SIZE, type PageBacking, PageAllocator } from "../page-alloc.js";
import { MockIommu, type MockIommuOptions } from "./mock-driver.js";

/** A backing with no bytes behind it: every zeroing succeeds. For tests that only count pages. */
export class NullBacking implements PageBacking {
  zero(_pa: number, _len: number): boolean {
    return true;
  }
}

export interface MockHost {
  readonly kernel: Kernel;
  readonly pages: PageAllocator;
  readonly mock: MockIommu;
  readonly core: IommuCore;
  readonly iommu: Iommu;
}

export interface MockHostOptions {
  readonly defaultDomain?: IommuCoreOptions["defaultDomain"];
  /** Pages in the allocator pool (default 4096). */
  readonly poolPages?: number;
  readonly mock?: Omit<MockIommuOptions, "faults" | "pages">;
}

/** A kernel, a page pool, an IOMMU core and one mock IOMMU registered on it: the usual test bench. */
export function mockHost(opts: MockHostOptions = {}): MockHost {
  const kernel = new Kernel();
  const pages = new PageAllocator({ base: 0x1000_0000, size: (opts.poolPages ?? 4096) * PAGE_SIZE, backing: new NullBacking(), faults: kernel.faults });
  const mock = new MockIommu({ ...opts.mock, faults: kernel.faults, pages });
  const core = new IommuCore(opts.defaultDomain === undefined ? { kernel } : { kernel, defaultDomain: opts.defaultDomain });
  const iommu = core.registerIommu("mock0", mock);
  return { kernel, pages, mock, core, iommu };
}
