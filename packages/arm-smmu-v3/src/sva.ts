import { Errno, KernelError } from "@vsva/kernel";
import { Cd } from "@vsva/iommu-hw";
import type { IommuDevice, SvaBindingOps, SvaMm } from "@vsva/iommu-core";
import { encodeCd } from "./cd-table.js";
import { atcInv, cfgiCd, tlbiNhAsid, tlbiNhVa, tlbiRange } from "./commands.js";
import type { SmmuHardware, SmmuMaster } from "./smmu.js";

/** The T0SZ range a 4 KiB-granule CD accepts (spec-facts §B3.2; the unit's C_BAD_CD check). */
const T0SZ_MIN = 16;
const T0SZ_MAX = 39;

/** One shared ASID per mm while any device has it bound (`arm_smmu_share_asid` / `mm_context_get`). */
interface MmAsid {
  readonly asid: number;
  refs: number;
}

/**
 * Native SVA (`arm-smmu-v3-sva.c`): a CD per PASID (SubstreamID) whose TTB0
 * is the process's own AArch64 page table and whose ASID the mm shares with
 * every device it is bound to, held while bound.
 *
 * - invalidateRange: TLBI_NH_VA by the shared ASID (TLBI_NH_ASID past 32
 *   pages), ATC_INV for the SubstreamID, CMD_SYNC.
 * - release (the mm exits first): the device may still be issuing DMA, so
 *   the CD stays valid but becomes a "quiet" CD: EPD0 = 1 (every TTB0 walk
 *   is a translation fault) and R = 0 (not recorded), ASID 0. A cleared CD
 *   would produce C_BAD_CD events for that DMA; Linux 5.11's
 *   `arm_smmu_mm_release` writes its `quiet_cd` for the same reason. Then
 *   TLBI_NH_ASID and ATC_INV drop what was cached and the ASID is freed.
 *   The quiet CD is overwritten by the next bind of that SubstreamID and
 *   freed with the device.
 * - unbind: CD cleared, CFGI_CD, TLBI_NH_ASID, ATC_INV, sync; then the PRI
 *   and event queues are drained of that SubstreamID's records.
 * - stalls (a master whose CDs have S = 1): before release or unbind
 *   touches the CD, every transaction stalled on that SubstreamID is
 *   aborted with CMD_RESUME, so none waits on (or is retried against) a
 *   context that is going. The quiet CD does not stall.
 */
export class NativeSva {
  /** pasid -> masters bound at it. */
  readonly #bound = new Map<number, Set<SmmuMaster>>();
  readonly #asids = new Map<SvaMm, MmAsid>();
  /** Quiet CDs left by release, per master. */
  readonly #quiet = new Map<SmmuMaster, Set<number>>();

  constructor(
    private readonly hw: SmmuHardware,
    private readonly drain: (m: SmmuMaster, ssid: number) => void,
    /** Ends the stalled transactions of (master, SubstreamID) before its CD goes. */
    private readonly quiesce: (m: SmmuMaster, ssid: number) => void = () => undefined,
  ) {}

  isBound(m: SmmuMaster, pasid: number): boolean {
    return this.#bound.get(pasid)?.has(m) === true;
  }

  /** ASIDs held by bound mms. */
  get asidsHeld(): number {
    return this.#asids.size;
  }

  /** Forgets the quiet CDs of a master being removed (its CD table goes with it). */
  forgetMaster(m: SmmuMaster): void {
    this.#quiet.delete(m);
    for (const [pasid, set] of this.#bound) {
      set.delete(m);
      if (set.size === 0) this.#bound.delete(pasid);
    }
  }

  /**
   * EINVAL: no stage 1, an mm whose tables are not AArch64 with the 4 KiB
   * granule, a PASID outside [1, 2^ssidBits), a stream on stage 2; EBUSY:
   * the CD is in use; ENOSPC: no ASID; ENOMEM.
   */
  bind(dev: IommuDevice, mm: SvaMm): SvaBindingOps {
    const hw = this.hw;
    const m = hw.master(dev);
    const pasid = mm.pasid;
    const f = mm.format;
    if (!hw.caps.s1) throw new KernelError(Errno.EINVAL, `${hw.name} has no stage 1`);
    if (f?.arch !== "aarch64") throw new KernelError(Errno.EINVAL, `${mm.name}: ${f === undefined ? "x86-64" : f.arch} page tables cannot be walked by an SMMUv3`);
    if (f.t0sz < T0SZ_MIN || f.t0sz > T0SZ_MAX) throw new KernelError(Errno.EINVAL, `${mm.name}: T0SZ ${f.t0sz} with a ${f.granule}-byte granule is not supported`);
    if (pasid <= 0 || pasid >= 2 ** m.ssidBits) throw new KernelError(Errno.EINVAL, `PASID ${pasid} is beyond ${dev.toString()}'s ${m.ssidBits} SubstreamID bits`);
    if (m.config.kind === "s2") throw new KernelError(Errno.EINVAL, `${dev.toString()} is on a stage-2 domain: no CDs to add`);
    const quiet = this.#quiet.get(m);
    if (m.cd?.isValid(pasid) === true && quiet?.has(pasid) !== true) throw new KernelError(Errno.EBUSY, `SubstreamID ${pasid} of ${dev.toString()} is in use`);
    hw.kernel.faults.inject("smmu.sva-bind");
    const freshCd = m.cd === null;
    const a = this.#getAsid(mm);
    try {
      hw.writeCd(m, pasid, encodeCd({ asid: a.asid, ttb0: mm.pgd, t0sz: f.t0sz, ips: hw.caps.oasCode, ha: hw.caps.httu >= 1, stall: m.stallEnabled, shared: true }));
    } catch (e) {
      this.#putAsid(mm);
      if (freshCd && m.cd !== null) {
        m.cd.free();
        m.cd = null;
      }
      throw e;
    }
    // A quiet CD left by a release already counts as a CD user of the stream.
    if (quiet?.delete(pasid) !== true) m.svaBinds++;
    // The first CD user on a stream that was not on stage 1: the STE now points at the CD table.
    if (m.svaBinds === 1 && m.config.kind !== "s1") hw.installSte(m);
    const set = this.#bound.get(pasid) ?? new Set<SmmuMaster>();
    set.add(m);
    this.#bound.set(pasid, set);
    hw.kernel.trace.emit("smmu-drv.cd", "IOMMU", { device: dev.name, hpasid: pasid }, { unit: hw.name, sid: m.sid, ssid: pasid, asid: a.asid, state: "valid" });

    let ended = false;
    const finish = (): void => {
      set.delete(m);
      if (set.size === 0) this.#bound.delete(pasid);
      this.#putAsid(mm);
    };
    return {
      pasid,
      invalidateRange: (start, end) => {
        if (ended || !(end > start)) return;
        hw.flush("sva-invalidate", [...tlbiRange((va) => tlbiNhVa(a.asid, va), () => tlbiNhAsid(a.asid), start, end - start), ...this.#atc(m, pasid, start, end - start)]);
      },
      release: () => {
        if (ended) return;
        ended = true;
        this.quiesce(m, pasid);
        // S = 0 too: DMA still in flight after exit must abort quietly, not stall on a context nobody serves.
        const q = encodeCd({ asid: 0, ttb0: 0, t0sz: f.t0sz, ips: hw.caps.oasCode, ha: false, shared: false });
        Cd.set(q, "EPD0", 1);
        Cd.set(q, "R", 0);
        if (m.cd !== null) {
          m.cd.write(pasid, q);
          const qs = this.#quiet.get(m) ?? new Set<number>();
          qs.add(pasid);
          this.#quiet.set(m, qs);
        }
        hw.flush("sva-release", [cfgiCdOf(m, pasid), tlbiNhAsid(a.asid), ...this.#atc(m, pasid, 0, 0)]);
        hw.kernel.trace.emit("smmu-drv.cd", "IOMMU", { device: dev.name, hpasid: pasid }, { unit: hw.name, sid: m.sid, ssid: pasid, asid: 0, state: "quiet" });
        finish();
      },
      unbind: () => {
        if (ended) return;
        ended = true;
        this.quiesce(m, pasid);
        m.cd?.clear(pasid);
        hw.flush("sva-unbind", [cfgiCdOf(m, pasid), tlbiNhAsid(a.asid), ...this.#atc(m, pasid, 0, 0)]);
        m.svaBinds--;
        if (m.svaBinds === 0 && m.config.kind !== "s1") hw.installSte(m);
        hw.kernel.trace.emit("smmu-drv.cd", "IOMMU", { device: dev.name, hpasid: pasid }, { unit: hw.name, sid: m.sid, ssid: pasid, asid: a.asid, state: "cleared" });
        finish();
        this.drain(m, pasid);
      },
    };
  }

  #atc(m: SmmuMaster, ssid: number, addr: number, size: number): Uint32Array[] {
    return this.hw.caps.ats ? [atcInv(m.sid, ssid, addr, size)] : [];
  }

  #getAsid(mm: SvaMm): MmAsid {
    const held = this.#asids.get(mm);
    if (held !== undefined) {
      held.refs++;
      return held;
    }
    const a = { asid: this.hw.asids.alloc(), refs: 1 };
    this.#asids.set(mm, a);
    return a;
  }

  #putAsid(mm: SvaMm): void {
    const a = this.#asids.get(mm);
    if (a === undefined || --a.refs > 0) return;
    this.#asids.delete(mm);
    this.hw.asids.free(a.asid);
  }
}

function cfgiCdOf(m: SmmuMaster, ssid: number): Uint32Array {
  return cfgiCd(m.sid, ssid);
}
