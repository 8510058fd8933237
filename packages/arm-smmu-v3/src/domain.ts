import { Errno, type HostPasid, KernelError, isKernelError } from "@vsva/kernel";
import { ArmTableWriter, type PteProt, s1StartLevel } from "@vsva/iommu-hw";
import {
  type CacheInvalidateInfo,
  EMPTY_NESTING_INFO,
  type GpasidBindData,
  type IommuDevice,
  IommuProt,
  type MapPagesResult,
  type NestingInfo,
  type NestingParentOps,
  type PagingDomainOps,
} from "@vsva/iommu-core";
import { MAIR_IDX_CACHE, encodeCd } from "./cd-table.js";
import { atcInv, tlbiNhAsid, tlbiNhVa, tlbiRange, tlbiS12Vmall, tlbiS2Ipa } from "./commands.js";
import type { SmmuHardware, SmmuMaster, StreamConfig } from "./smmu.js";

const PAGE = 4096;
const PGSIZES = PAGE | 2 ** 21 | 2 ** 30;

/**
 * What paging domains share (`struct arm_smmu_domain`): an AArch64 table
 * built by pt-arm's writer, the masters attached, map/unmap as the core's
 * primitives, and the flush after unmap: TLB invalidation by page (or the
 * whole context past 32 pages) plus ATC_INV for every attached master,
 * then CMD_SYNC. The context tag (ASID or VMID) is taken at the first
 * attach and given back at free, after a context-wide TLBI, as
 * `arm_smmu_domain_free` does.
 */
abstract class SmmuPagingBase {
  readonly pgsizeBitmap = PGSIZES;
  readonly aperture: { readonly start: number; readonly end: number };
  readonly writer: ArmTableWriter;
  readonly attached = new Set<SmmuMaster>();
  /** ASID (stage 1) or VMID (stage 2); 0 until the first attach. */
  tag = 0;
  freed = false;
  protected readonly hw: SmmuHardware;

  protected constructor(hw: SmmuHardware, writer: ArmTableWriter) {
    this.hw = hw;
    this.writer = writer;
    this.aperture = { start: 0, end: 2 ** writer.inputBits - 1 };
  }

  protected abstract allocTag(): number;
  protected abstract freeTag(tag: number): void;
  /** The stream configuration a master attached here gets. */
  protected abstract config(): StreamConfig;
  /** Programs whatever must exist before the STE points here (the CD at SSID 0 for stage 1). EINVAL/ENOMEM. */
  protected abstract prepare(m: SmmuMaster): void;
  protected abstract tlbiRange(iova: number, size: number): Uint32Array[];
  protected abstract tlbiAll(): Uint32Array;

  /** ENODEV (not behind this SMMU), EINVAL (sub-device: SMMUv3 has no aux domains), EBUSY, ENOSPC (no ASID/VMID), ENOMEM. */
  attachDev(dev: IommuDevice): void {
    const hw = this.hw;
    if (dev.isSubDevice) throw new KernelError(Errno.EINVAL, `${dev.toString()}: SMMUv3 has no aux domains`);
    const m = hw.master(dev);
    if (this.attached.has(m)) throw new KernelError(Errno.EBUSY, `${dev.toString()} is already attached`);
    if (m.config.kind !== "abort") throw new KernelError(Errno.EBUSY, `${dev.toString()} is attached elsewhere`);
    const fresh = this.tag === 0;
    // Only a first attach can fail (`arm_smmu_domain_finalise`: context and tables); re-attaching a
    // finalised domain, as the core does with a default domain after a detach, must not.
    if (fresh) {
      hw.kernel.faults.inject("smmu.attach");
      this.tag = this.allocTag();
    }
    try {
      this.prepare(m);
    } catch (e) {
      if (fresh) {
        this.freeTag(this.tag);
        this.tag = 0;
      }
      throw e;
    }
    m.config = this.config();
    this.attached.add(m);
    hw.installSte(m);
  }

  /** Aborting STE (or CDs only, when SVA binds remain), then the context's TLB entries and the device's ATC go. */
  detachDev(dev: IommuDevice): void {
    const hw = this.hw;
    if (!hw.hasMaster(dev)) return;
    const m = hw.master(dev);
    if (!this.attached.delete(m)) return;
    m.config = { kind: "abort" };
    hw.installSte(m);
    this.unprepare(m);
    hw.flush("detach", [this.tlbiAll(), ...(hw.caps.ats ? [atcInv(m.sid, undefined, 0, 0)] : [])]);
  }

  /** Undoes {@link prepare}. Cannot fail. */
  protected unprepare(_m: SmmuMaster): void {
    // Stage 2 programs nothing besides the STE.
  }

  free(): void {
    if (this.freed) return;
    for (const m of [...this.attached]) this.detachDev(m.dev);
    const hw = this.hw;
    if (this.tag !== 0) {
      hw.flush("domain-free", [this.tlbiAll()]);
      this.freeTag(this.tag);
      this.tag = 0;
    }
    for (const pa of this.writer.tablePages()) hw.pages.freePages(pa);
    this.freed = true;
  }

  mapPages(iova: number, paddr: number, pgsize: number, pgcount: number, prot: number): MapPagesResult {
    try {
      this.hw.kernel.faults.inject("smmu.map");
      // All or nothing: the writer plans the whole range before it writes.
      this.writer.map(iova, paddr, pgsize * pgcount, this.pteProt(prot), pgsize);
      return { mapped: pgsize * pgcount, error: null };
    } catch (e) {
      return { mapped: 0, error: e instanceof Error ? e : new KernelError(Errno.EIO, String(e)) };
    }
  }

  protected abstract pteProt(prot: number): PteProt;

  unmapPages(iova: number, pgsize: number, pgcount: number): number {
    try {
      return this.writer.unmap(iova, pgsize * pgcount);
    } catch (e) {
      if (!isKernelError(e)) throw e;
      this.hw.warn("unmap", `unmap [0x${iova.toString(16)}, +0x${(pgsize * pgcount).toString(16)}): ${e.message}`);
      return 0;
    }
  }

  iovaToPhys(iova: number): number | null {
    const m = this.writer.lookup(iova);
    return m === null ? null : m.pa + (iova - m.va);
  }

  /** Nothing to do: the SMMU caches no invalid descriptors (no caching mode to honour). */
  syncMap(_iova: number, _size: number): void {
    // No-op by design.
  }

  flushIotlb(iova: number, size: number): void {
    if (this.tag === 0) return;
    this.hw.flush("iotlb", [...this.tlbiRange(iova, size), ...this.#atc(iova, size)]);
  }

  flushIotlbAll(): void {
    if (this.tag === 0) return;
    this.hw.flush("iotlb-all", [this.tlbiAll(), ...this.#atc(0, 0)]);
  }

  /** ATC_INV without SubstreamID for each attached master (`arm_smmu_atc_inv_domain`). */
  #atc(iova: number, size: number): Uint32Array[] {
    if (!this.hw.caps.ats) return [];
    return [...this.attached].map((m) => atcInv(m.sid, undefined, iova, size));
  }
}

/**
 * A stage-1 paging domain: 48-bit (or OAS-limited) input, its CD written at
 * SSID 0 of each attached master's CD table, requests without SubstreamID
 * routed there by S1DSS = SSID0. Leaves are EL0-accessible (AP[1] = 1: the
 * unit treats requests without PASID as unprivileged) unless IOMMU_PRIV;
 * stage 1 cannot express write-only, so IOMMU_WRITE implies read
 * (io-pgtable-arm does the same).
 */
export class SmmuS1Domain extends SmmuPagingBase implements PagingDomainOps {
  readonly kind = "paging" as const;
  readonly #inputBits: number;

  /** ENOMEM for the root table. */
  constructor(hw: SmmuHardware) {
    const inputBits = Math.min(48, Math.max(32, hw.caps.oasBits));
    super(hw, ArmTableWriter.stage1(hw.mem, { inputBits, attrIndx: MAIR_IDX_CACHE, ...tableAlloc(hw, "smmu.s1-table") }));
    this.#inputBits = inputBits;
  }

  protected allocTag(): number {
    return this.hw.asids.alloc();
  }

  protected freeTag(tag: number): void {
    this.hw.asids.free(tag);
  }

  protected config(): StreamConfig {
    return { kind: "s1", asid: this.tag };
  }

  protected prepare(m: SmmuMaster): void {
    this.hw.writeCd(m, 0, encodeCd({ asid: this.tag, ttb0: this.writer.root, t0sz: 64 - this.#inputBits, ips: this.hw.caps.oasCode, ha: false, stall: m.stallEnabled, shared: false }));
  }

  protected override unprepare(m: SmmuMaster): void {
    this.hw.clearCd(m, 0);
  }

  protected tlbiRange(iova: number, size: number): Uint32Array[] {
    return tlbiRange((va) => tlbiNhVa(this.tag, va), () => tlbiNhAsid(this.tag), iova, size);
  }

  protected tlbiAll(): Uint32Array {
    return tlbiNhAsid(this.tag);
  }

  protected pteProt(prot: number): PteProt {
    return { read: true, write: (prot & IommuProt.WRITE) !== 0, exec: (prot & IommuProt.NOEXEC) === 0, user: (prot & IommuProt.PRIV) === 0 };
  }

  /** The first level's start level (for tests and traces). */
  get startLevel(): number {
    return s1StartLevel(this.#inputBits);
  }
}

/**
 * A stage-2 paging domain: IPA size min(OAS, 48), a VMID, and VTCR-like
 * STE fields. The start level is chosen so one 4 KiB table covers the
 * whole IPA space (start = 4 − ⌈(IPA − 12) / 9⌉), which never needs
 * concatenated tables; Linux's io-pgtable-arm concatenates to save a level,
 * a difference that only changes walk length, not what translates.
 */
abstract class SmmuStage2Base extends SmmuPagingBase {
  readonly t0sz: number;
  readonly sl0: number;

  constructor(hw: SmmuHardware) {
    const ipaBits = Math.min(48, hw.caps.oasBits);
    const startLevel = 4 - Math.ceil((ipaBits - 12) / 9);
    const t0sz = 64 - ipaBits;
    const sl0 = 2 - startLevel;
    super(hw, ArmTableWriter.stage2(hw.mem, { t0sz, sl0, ...tableAlloc(hw, "smmu.s2-table") }));
    this.t0sz = t0sz;
    this.sl0 = sl0;
  }

  protected allocTag(): number {
    return this.hw.vmids.alloc();
  }

  protected freeTag(tag: number): void {
    this.hw.vmids.free(tag);
  }

  protected config(): StreamConfig {
    return { kind: "s2", vmid: this.tag, s2: { ttb: this.writer.root, t0sz: this.t0sz, sl0: this.sl0 } };
  }

  protected prepare(m: SmmuMaster): void {
    // A stage-2 stream has no CDs (a SubstreamID would be C_BAD_SUBSTREAMID): no SVA binds on it.
    if (m.svaBinds > 0) throw new KernelError(Errno.EBUSY, `${m.dev.toString()} has SVA binds; a stage-2 stream cannot keep its CDs`);
  }

  protected tlbiRange(iova: number, size: number): Uint32Array[] {
    return tlbiRange((ipa) => tlbiS2Ipa(this.tag, ipa), () => tlbiS12Vmall(this.tag), iova, size);
  }

  protected tlbiAll(): Uint32Array {
    return tlbiS12Vmall(this.tag);
  }

  protected pteProt(prot: number): PteProt {
    return { read: (prot & IommuProt.READ) !== 0, write: (prot & IommuProt.WRITE) !== 0, exec: (prot & IommuProt.NOEXEC) === 0 };
  }
}

export class SmmuS2Domain extends SmmuStage2Base implements PagingDomainOps {
  readonly kind = "paging" as const;
}

/**
 * A stage-2 domain asked for as a nesting parent (DOMAIN_ATTR_NESTING). It
 * translates like any stage-2 domain, but reports EMPTY nesting info (seed
 * 004, "iommu/smmu: Report empty domain nesting info"): the 2020 interface
 * bound a guest's PASID table (its CD table) to the host STE, and that
 * SMMU PASID-table binding was never merged; letting a guest own stage-1
 * CD tables needs a different UAPI (iommufd's vSTE). So vSVA through
 * bind_gpasid is refused with ENODEV, as the 5.10 core did for a driver
 * without `sva_bind_gpasid` / `cache_invalidate`.
 */
export class SmmuNestingDomain extends SmmuStage2Base implements NestingParentOps {
  readonly kind = "nesting-parent" as const;

  bindGpasid(_dev: IommuDevice, _data: GpasidBindData): void {
    throw new KernelError(Errno.ENODEV, "SMMUv3 does not bind guest page tables (no PASID-table nesting in the 2020 UAPI)");
  }

  unbindGpasid(_dev: IommuDevice, _hpasid: HostPasid): void {
    // Nothing is ever bound.
  }

  cacheInvalidate(_dev: IommuDevice, _info: CacheInvalidateInfo): void {
    throw new KernelError(Errno.ENODEV, "SMMUv3 takes no guest cache invalidations (nothing is bound)");
  }

  nestingInfo(): NestingInfo {
    return EMPTY_NESTING_INFO;
  }
}

/** Table pages from the page allocator; ENOMEM is the writer's to report (it gives back what it took). */
function tableAlloc(hw: SmmuHardware, tag: string): { alloc: () => number | null; free: (pa: number) => void; outBits: number } {
  return {
    alloc: () => {
      try {
        return hw.pages.allocPage(tag);
      } catch (e) {
        if (isKernelError(e)) return null;
        throw e;
      }
    },
    free: (pa) => hw.pages.freePages(pa),
    outBits: Math.min(hw.mem.addrBits, hw.caps.oasBits, 48),
  };
}
