import { asHostPasid, Errno, type FaultInjector, type HostPasid, KernelBug, KernelError } from "@vsva/kernel";
import type { IommuDevice } from "../device.js";
import type {
  BlockedDomainOps,
  DevFeature,
  DomainAllocRequest,
  DriverDomain,
  IdentityDomainOps,
  IommuCap,
  IommuOps,
  IommuCoreUplink,
  MapPagesResult,
  NestingParentOps,
  PageResponse,
  PagingDomainOps,
  SvaBindingOps,
  SvaMm,
} from "../ops.js";
import type { PageAllocator } from "../page-alloc.js";
import { pgsizesFromBitmap } from "../pgsize.js";
import type { CacheInvalidateInfo } from "../uapi/cache-invalidate.js";
import { NestingFeature, PasidFormat } from "../uapi/constants.js";
import type { GpasidBindData } from "../uapi/gpasid-bind.js";
import type { NestingInfo } from "../uapi/nesting-info.js";

/**
 * A mock IOMMU driver in the spirit of iommufd's selftest mock: the ops
 * contract implemented over in-memory maps, with page-table pages taken from
 * a real {@link PageAllocator} (so leak checks mean something) and named
 * fault-injection points at the steps a real driver can fail:
 *
 * - `iommu.page-alloc`: every table page (root, per-level tables, per-device context);
 * - `mock.map-page`: one mapped page, failing a map part way (ENOMEM);
 * - `mock.attach`: attaching a device (ENOSPC, as out of domain IDs);
 * - `mock.bind-gpasid`: programming a nested PASID entry (ENOMEM);
 * - `mock.sva-bind`: programming a first-level PASID entry for SVA (ENOMEM).
 */
export interface MockIommuOptions {
  readonly faults: FaultInjector;
  readonly pages: PageAllocator;
  /** Default 4 KiB | 2 MiB | 1 GiB. */
  readonly pgsizeBitmap?: number;
  /** Default [0, 2^48 - 1]. */
  readonly aperture?: { readonly start: number; readonly end: number };
  readonly caps?: readonly IommuCap[];
  readonly pasidBits?: number;
  /** Features every device offers (PASID-capable devices only for "sva"). Default all. */
  readonly features?: readonly DevFeature[];
  /** What nesting parents report; default a VT-d-like report. */
  readonly nestingInfo?: NestingInfo;
  /** Source IDs this IOMMU does not translate for (probe fails with ENODEV). */
  readonly foreignSids?: readonly number[];
}

export interface MockMapping {
  readonly paddr: number;
  readonly pgsize: number;
  readonly prot: number;
}

/** One mock page table: a root page plus a page per (level, region) holding smaller mappings. */
class MockPageTable {
  readonly sizes: number[];
  readonly entries = new Map<number, MockMapping>();
  /** key `${level}:${region}` -> { pa, entries beneath } */
  readonly tables = new Map<string, { pa: number; count: number }>();
  readonly root: number;

  constructor(
    private readonly pages: PageAllocator,
    bitmap: number,
  ) {
    this.sizes = pgsizesFromBitmap(bitmap);
    this.root = pages.allocPage("mock.pt-root");
  }

  /** The entry translating `iova`, whatever its size. */
  find(iova: number): { start: number; m: MockMapping } | null {
    for (const s of this.sizes) {
      const start = Math.floor(iova / s) * s;
      const m = this.entries.get(start);
      if (m?.pgsize === s) return { start, m };
    }
    return null;
  }

  /** Maps one page; throws EEXIST over an existing mapping, ENOMEM if a table page cannot be had. */
  mapOne(iova: number, paddr: number, pgsize: number, prot: number): void {
    const level = this.sizes.indexOf(pgsize);
    if (level < 0 || iova % pgsize !== 0 || paddr % pgsize !== 0) throw new KernelBug(`mock map of a bad page size ${pgsize}`);
    for (let j = level; j < this.sizes.length; j++) {
      const s = this.sizes[j] ?? 1;
      const e = this.entries.get(Math.floor(iova / s) * s);
      if (e?.pgsize === s) throw new KernelError(Errno.EEXIST, `0x${iova.toString(16)} is already mapped`);
    }
    if (this.tables.has(this.#key(level, iova))) throw new KernelError(Errno.EEXIST, `0x${iova.toString(16)} has smaller mappings beneath`);
    // Tables for every larger level, allocated before anything is recorded so a failure leaves no trace.
    const fresh: string[] = [];
    try {
      for (let j = level + 1; j < this.sizes.length; j++) {
        const k = this.#key(j, iova);
        if (!this.tables.has(k)) {
          this.tables.set(k, { pa: this.pages.allocPage("mock.pt"), count: 0 });
          fresh.push(k);
        }
      }
    } catch (e) {
      for (const k of fresh) this.#dropTable(k);
      throw e;
    }
    for (let j = level + 1; j < this.sizes.length; j++) {
      const t = this.tables.get(this.#key(j, iova));
      if (t !== undefined) t.count++;
    }
    this.entries.set(iova, { paddr, pgsize, prot });
  }

  /** Unmaps the entry starting at `iova`; returns its size, 0 if none starts there. */
  unmapOne(iova: number): number {
    const m = this.entries.get(iova);
    if (m === undefined) return 0;
    this.entries.delete(iova);
    const level = this.sizes.indexOf(m.pgsize);
    for (let j = level + 1; j < this.sizes.length; j++) {
      const k = this.#key(j, iova);
      const t = this.tables.get(k);
      if (t === undefined) continue;
      t.count--;
      if (t.count === 0) this.#dropTable(k);
    }
    return m.pgsize;
  }

  free(): void {
    for (const k of [...this.tables.keys()]) this.#dropTable(k);
    this.entries.clear();
    this.pages.freePages(this.root);
  }

  #key(level: number, iova: number): string {
    const s = this.sizes[level] ?? 1;
    return `${level}:${Math.floor(iova / s)}`;
  }

  #dropTable(k: string): void {
    const t = this.tables.get(k);
    if (t === undefined) return;
    this.pages.freePages(t.pa);
    this.tables.delete(k);
  }
}

export interface MockBinding {
  readonly dev: IommuDevice;
  readonly data: GpasidBindData;
}

/** What a first-level PASID entry of the mock holds for an SVA bond, and what happened to it. */
export interface MockSvaEntry {
  readonly dev: IommuDevice;
  readonly mm: SvaMm;
  /** Ranges the mm's notifier asked to flush, in order. */
  readonly flushes: [start: number, end: number][];
  /** Cleared with fault reporting disabled (mm release) rather than by unbind. */
  released: boolean;
}

/** The mock's per-IOMMU state, inspectable by tests. */
export class MockIommu implements IommuOps {
  readonly name = "mock";
  readonly pasidBits: number;
  /** The core's side of the contract, once registered. */
  uplink: IommuCoreUplink | null = null;
  readonly #opts: MockIommuOptions;
  /** Device -> context page. */
  readonly contexts = new Map<IommuDevice, number>();
  /** Device -> the driver domain it points at. */
  readonly attached = new Map<IommuDevice, DriverDomain>();
  readonly enabled = new Map<IommuDevice, Set<DevFeature>>();
  readonly domains = new Set<DriverDomain>();
  /** `${physical name}/${hpasid}` -> binding, what the nested PASID entries would hold. */
  readonly pasidEntries = new Map<string, MockBinding>();
  /** `${physical name}/${pasid}` -> the SVA entry programmed there (removed at unbind or release). */
  readonly svaEntries = new Map<string, MockSvaEntry>();
  /** Every SVA entry ever programmed, also after teardown, for order checks. */
  readonly svaHistory: MockSvaEntry[] = [];
  readonly invalidations: { dev: IommuDevice; info: CacheInvalidateInfo }[] = [];
  readonly responses: { dev: IommuDevice; response: PageResponse }[] = [];
  /** Driver domain -> its page table, so tests can look inside. */
  readonly #tables = new WeakMap<DriverDomain, MockPageTable>();
  /** Driver domain -> its aux default PASID, given at the first ask (from the top of the PASID space down, clear of IOASIDs a test allocates from 1 up). */
  readonly #auxPasids = new WeakMap<DriverDomain, HostPasid>();
  #auxTaken = 0;

  constructor(opts: MockIommuOptions) {
    this.#opts = opts;
    this.pasidBits = opts.pasidBits ?? 20;
  }

  /** The mappings of one of this mock's paging domains: iova -> {paddr, pgsize, prot}. */
  mappings(domain: DriverDomain): ReadonlyMap<number, MockMapping> {
    return this.#tables.get(domain)?.entries ?? new Map<number, MockMapping>();
  }

  /** Table pages (beyond the root) a paging domain holds now. */
  tablePages(domain: DriverDomain): number {
    return this.#tables.get(domain)?.tables.size ?? 0;
  }

  capable(cap: IommuCap): boolean {
    return (this.#opts.caps ?? ["cache-coherency", "nesting"]).includes(cap);
  }

  probeDevice(dev: IommuDevice): void {
    if (this.#opts.foreignSids?.includes(dev.sid) === true) throw new KernelError(Errno.ENODEV, `${dev.name} is not behind the mock`);
    this.contexts.set(dev, this.#opts.pages.allocPage("mock.context"));
  }

  releaseDevice(dev: IommuDevice): void {
    const pa = this.contexts.get(dev);
    if (pa !== undefined) this.#opts.pages.freePages(pa);
    this.contexts.delete(dev);
    this.enabled.delete(dev);
  }

  devFeatures(dev: IommuDevice): ReadonlySet<DevFeature> {
    const all = this.#opts.features ?? ["aux", "sva", "iopf"];
    return new Set(all.filter((f) => f !== "sva" || dev.pasidWidth > 0));
  }

  enableFeature(dev: IommuDevice, feature: DevFeature): void {
    const set = this.enabled.get(dev) ?? new Set<DevFeature>();
    set.add(feature);
    this.enabled.set(dev, set);
  }

  disableFeature(dev: IommuDevice, feature: DevFeature): void {
    this.enabled.get(dev)?.delete(feature);
  }

  domainAlloc(req: DomainAllocRequest): DriverDomain {
    let d: DriverDomain;
    switch (req.type) {
      case "blocked":
        d = this.#staticDomain("blocked");
        break;
      case "identity":
        d = this.#staticDomain("identity");
        break;
      default:
        d = req.nestingParent ? this.#nestingParent() : this.#paging();
    }
    this.domains.add(d);
    return d;
  }

  svaBind(dev: IommuDevice, mm: SvaMm): SvaBindingOps {
    if (dev.isSubDevice) throw new KernelBug("the core passes physical devices to svaBind");
    const key = `${dev.name}/${mm.pasid}`;
    if (this.svaEntries.has(key) || this.pasidEntries.has(key)) throw new KernelBug(`mock: PASID ${mm.pasid} programmed twice on ${dev.name}`);
    if (mm.pasid >= 2 ** Math.min(dev.pasidWidth, this.pasidBits)) throw new KernelError(Errno.EINVAL, `PASID ${mm.pasid} beyond ${dev.name}'s table`);
    this.#opts.faults.inject("mock.sva-bind");
    const entry: MockSvaEntry = { dev, mm, flushes: [], released: false };
    this.svaEntries.set(key, entry);
    this.svaHistory.push(entry);
    let live = true;
    const end = (why: string): void => {
      if (!live) throw new KernelBug(`mock: SVA binding of PASID ${mm.pasid} on ${dev.name} ended twice (${why})`);
      live = false;
      this.svaEntries.delete(key);
    };
    return {
      pasid: mm.pasid,
      invalidateRange: (start, endVa) => {
        if (!live) throw new KernelBug(`mock: flush through an ended SVA binding of PASID ${mm.pasid}`);
        entry.flushes.push([start, endVa]);
      },
      release: () => {
        end("release");
        entry.released = true;
      },
      unbind: () => end("unbind"),
    };
  }

  connect(uplink: IommuCoreUplink): void {
    this.uplink = uplink;
  }

  pageResponse(dev: IommuDevice, response: PageResponse): void {
    this.responses.push({ dev, response });
  }

  #attach(dev: IommuDevice, d: DriverDomain): void {
    this.#opts.faults.inject("mock.attach", Errno.ENOSPC);
    this.attached.set(dev, d);
  }

  #detach(dev: IommuDevice, d: DriverDomain): void {
    if (this.attached.get(dev) !== d) throw new KernelBug(`mock: ${dev.name} detached from a domain it is not attached to`);
    this.attached.delete(dev);
  }

  #auxGetPasid(d: DriverDomain, sub: IommuDevice): HostPasid {
    if (!sub.isSubDevice || this.attached.get(sub) !== d) throw new KernelError(Errno.EINVAL, `mock: ${sub.name} is not aux-attached here`);
    let p = this.#auxPasids.get(d);
    if (p === undefined) {
      p = asHostPasid(2 ** this.pasidBits - 1 - this.#auxTaken++);
      this.#auxPasids.set(d, p);
    }
    return p;
  }

  #staticDomain(kind: "blocked" | "identity"): BlockedDomainOps | IdentityDomainOps {
    const d: BlockedDomainOps | IdentityDomainOps = {
      kind,
      attachDev: (dev: IommuDevice) => this.#attach(dev, d),
      detachDev: (dev: IommuDevice) => this.#detach(dev, d),
      free: () => {
        this.domains.delete(d);
      },
    };
    return d;
  }

  #paging(): PagingDomainOps {
    const opts = this.#opts;
    const pt = new MockPageTable(opts.pages, opts.pgsizeBitmap ?? 0x4020_1000);
    const d: PagingDomainOps = {
      kind: "paging",
      pgsizeBitmap: opts.pgsizeBitmap ?? 0x4020_1000,
      aperture: opts.aperture ?? { start: 0, end: 2 ** 48 - 1 },
      attachDev: (dev) => this.#attach(dev, d),
      detachDev: (dev) => this.#detach(dev, d),
      auxGetPasid: (sub) => this.#auxGetPasid(d, sub),
      free: () => {
        pt.free();
        this.domains.delete(d);
      },
      mapPages: (iova, paddr, pgsize, pgcount, prot) => mapPages(pt, opts.faults, iova, paddr, pgsize, pgcount, prot),
      unmapPages: (iova, pgsize, pgcount) => unmapPages(pt, iova, pgsize * pgcount),
      iovaToPhys: (iova) => {
        const f = pt.find(iova);
        return f === null ? null : f.m.paddr + (iova - f.start);
      },
      syncMap: () => undefined,
      flushIotlb: () => undefined,
      flushIotlbAll: () => undefined,
    };
    this.#tables.set(d, pt);
    return d;
  }

  #nestingParent(): NestingParentOps {
    const base = this.#paging();
    const key = (dev: IommuDevice, pasid: number) => `${dev.name}/${pasid}`;
    const info: NestingInfo = this.#opts.nestingInfo ?? {
      format: PasidFormat.INTEL_VTD,
      features: NestingFeature.BIND_PGTBL | NestingFeature.CACHE_INVLD,
      addrWidth: 48,
      pasidBits: this.pasidBits,
      vendor: { kind: "vtd", capReg: 0n, ecapReg: 0n },
    };
    const d: NestingParentOps = {
      ...base,
      kind: "nesting-parent",
      attachDev: (dev) => this.#attach(dev, d),
      detachDev: (dev) => this.#detach(dev, d),
      auxGetPasid: (sub) => this.#auxGetPasid(d, sub),
      free: () => {
        base.free();
        this.domains.delete(d);
      },
      bindGpasid: (dev, data) => {
        if (dev.isSubDevice) throw new KernelBug("the core passes physical devices to bindGpasid");
        if (this.pasidEntries.has(key(dev, data.hpasid))) throw new KernelBug(`mock: PASID ${data.hpasid} programmed twice on ${dev.name}`);
        this.#opts.faults.inject("mock.bind-gpasid");
        this.pasidEntries.set(key(dev, data.hpasid), { dev, data });
      },
      unbindGpasid: (dev, hpasid) => {
        if (!this.pasidEntries.delete(key(dev, hpasid))) throw new KernelBug(`mock: unbinding PASID ${hpasid} never bound on ${dev.name}`);
      },
      cacheInvalidate: (dev, inv) => {
        this.invalidations.push({ dev, info: inv });
      },
      nestingInfo: () => info,
    };
    const pt = this.#tables.get(base);
    if (pt !== undefined) this.#tables.set(d, pt);
    return d;
  }
}

function mapPages(pt: MockPageTable, faults: FaultInjector, iova: number, paddr: number, pgsize: number, pgcount: number, prot: number): MapPagesResult {
  let mapped = 0;
  for (let i = 0; i < pgcount; i++) {
    try {
      faults.inject("mock.map-page");
      pt.mapOne(iova + mapped, paddr + mapped, pgsize, prot);
    } catch (e) {
      return { mapped, error: e instanceof Error ? e : new KernelError(Errno.EIO, String(e)) };
    }
    mapped += pgsize;
  }
  return { mapped, error: null };
}

function unmapPages(pt: MockPageTable, iova: number, size: number): number {
  let done = 0;
  while (done < size) {
    const n = pt.unmapOne(iova + done);
    if (n === 0) break;
    done += n;
  }
  return done;
}
