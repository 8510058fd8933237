import { Errno, KernelError } from "@vsva/kernel";
import type { IommuDevice, SvaBindingOps, SvaMm } from "@vsva/iommu-core";
import { awOf, defaultSlWidth } from "./caps.js";
import { devTlbPasid, orderOf, piotlbPages, piotlbPasid } from "./descriptors.js";
import { FLPT_DEFAULT_DID } from "./did.js";
import { firstLevelEntry } from "./pasid-entry.js";
import { ALL_ORDER, type VtdDevice, type VtdHardware } from "./unit.js";

/**
 * Native SVA (`intel_svm_bind_mm`, first level only): the PASID entry's
 * first level is the process's own page table (`mm.pgd`), tagged with
 * FLPT_DEFAULT_DID. One binding per (physical device, mm): the core counts
 * repeated binds. Unbind clears the entry with the full flush and drains
 * page requests before the PASID can be reused; release (the mm exits first)
 * sets FPD so the DMA still in flight faults silently, then tears down the
 * same way; mmu-notifier invalidations flush the PASID's IOTLB and
 * device-TLB entries over the range.
 */
export class NativeSvm {
  /** pasid -> devices bound at it. */
  readonly #bound = new Map<number, Set<VtdDevice>>();

  constructor(
    private readonly hw: VtdHardware,
    private readonly drain: (d: VtdDevice, pasid: number) => void,
  ) {}

  isBound(d: VtdDevice, pasid: number): boolean {
    return this.#bound.get(pasid)?.has(d) === true;
  }

  /** EINVAL: no first level, 5-level tables without FL5LP, PASID beyond the table; EBUSY: entry taken; ENOMEM. */
  bind(dev: IommuDevice, mm: SvaMm): SvaBindingOps {
    const hw = this.hw;
    const d = hw.device(dev);
    const pasid = mm.pasid;
    if (!hw.caps.firstLevel) throw new KernelError(Errno.EINVAL, `${hw.name} has no first-level translation`);
    if (mm.levels === 5 && !hw.caps.fl5) throw new KernelError(Errno.EINVAL, `${mm.name}: 5-level tables without CAP.FL5LP`);
    if (pasid <= 0 || pasid >= d.table.maxPasids) throw new KernelError(Errno.EINVAL, `PASID ${pasid} beyond ${dev.toString()}'s PASID table`);
    hw.kernel.faults.inject("vtd.sva-bind");
    hw.setupPasid(
      d,
      pasid,
      firstLevelEntry({
        did: FLPT_DEFAULT_DID,
        flptr: mm.pgd,
        levels: mm.levels,
        aw: awOf(defaultSlWidth(hw.caps)),
        supervisor: false,
        pageWalkSnoop: hw.caps.smPageWalkCoherent,
      }),
    );
    const set = this.#bound.get(pasid) ?? new Set<VtdDevice>();
    set.add(d);
    this.#bound.set(pasid, set);
    let ended = false;
    const end = (silence: boolean): void => {
      if (ended) return;
      ended = true;
      if (silence) d.table.setFpd(pasid);
      this.hw.tearDownPasid(d, pasid);
      if (silence) d.table.setFpd(pasid);
      set.delete(d);
      if (set.size === 0) this.#bound.delete(pasid);
      this.drain(d, pasid);
    };
    return {
      pasid,
      invalidateRange: (start, endAddr) => {
        if (!ended) this.#invalidate(d, pasid, start, endAddr - start);
      },
      release: () => end(true),
      unbind: () => end(false),
    };
  }

  #invalidate(d: VtdDevice, pasid: number, start: number, size: number): void {
    if (!(size > 0)) return;
    let am = orderOf(Math.ceil(size / 4096));
    while (Math.floor(start / (4096 * 2 ** am)) * 4096 * 2 ** am + 4096 * 2 ** am < start + size) am++;
    const caps = this.hw.caps;
    const descs = [am > caps.maxAddressMask ? piotlbPasid(FLPT_DEFAULT_DID, pasid) : piotlbPages(FLPT_DEFAULT_DID, pasid, start, am, false)];
    if (caps.deviceTlb && !caps.cachingMode) descs.push(devTlbPasid(d, pasid, start, Math.min(am, ALL_ORDER)));
    this.hw.flushBatch("sva-invalidate", descs);
  }
}
