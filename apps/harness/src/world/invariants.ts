import type { KvmPasid } from "@vsva/kvm-pasid";
import type { Vdcm } from "@vsva/vdcm";
import type { Ioasid } from "@vsva/kernel";
import type { Vm } from "@vsva/vmm";
import type { Host } from "./host.js";
import type { DmaRecord } from "./recording-port.js";

const PAGE = 4096;

function pageOf(pa: number): number {
  return pa - (pa % PAGE);
}

/** A VM the checker watches (see InvariantChecker.watchVm). */
interface WatchedVm {
  readonly vm: Vm;
  /** The host pages behind its RAM, as they were when it was watched (a dead VM's RAM maps nothing). */
  readonly frames: ReadonlySet<number>;
  /** The IOASID set of the VM's PASIDs (by the VMM's mm), once seen. */
  setId: number | null;
  /** The recording port's mark when the VMM announced its exit; null while it runs. */
  diedAt: number | null;
  /** Whether its release has been checked (once, at the first check after its death). */
  releaseChecked: boolean;
}

/**
 * Resolves an input address of one address space to the host-physical
 * address it must reach, or null when the space does not map it. The truth a
 * DMA is held to: for an mm, what the CPU's own page tables say.
 */
export type AddressResolver = (va: number) => number | null;

/**
 * The invariants checked after every step , against the
 * address spaces the scenario has bound (PASID -> resolver):
 * - DMA of a PASID lands only where that PASID's address space maps the
 *   address; a PASID with no bound space translates nothing;
 * - the device TLB holds nothing for a PASID that is not bound, and nothing
 *   that disagrees with the space;
 * - the IOMMU's caches (IOTLB, paging-structure, context and PASID caches)
 *   agree with a fresh walk: no stale entry survived the flushes the driver
 *   should have issued;
 * - each watched VM's KVM PASID translation table, as the CPU reads it from
 *   memory, matches the VM's binds (see #checkKvm);
 * - no hardware WQ lent to a watched VDCM holds a host PASID whose reference
 *   the VDCM dropped (see #checkVdcm);
 * - no accelerator still has a descriptor of a PASID that was reclaimed (see
 *   #checkInFlight);
 * - per watched VM (see watchVm): isolation (a DMA with one of the VM's
 *   PASIDs lands only in a host page behind the VM's RAM), no DMA after its
 *   death, faults delivered only to their owner, and everything it held
 *   released once it died.
 */
export class InvariantChecker {
  readonly spaces = new Map<number, AddressResolver>();
  readonly #vms = new Map<KvmPasid, object>();
  readonly #vdcms = new Set<Vdcm>();
  /** Host PASIDs whose BIND a KVM reported it could not act on (no page for a table): their entry may be missing. */
  readonly #refused = new Set<number>();
  readonly #watched = new Map<string, WatchedVm>();
  /** Host PASID → the watched VM whose IOASID set held it when last seen: DMA with it is held to that VM. */
  readonly #owner = new Map<number, WatchedVm>();
  /** Violations seen between checks (a fault queued to the wrong guest), reported at the next check. */
  readonly #pending: string[] = [];
  #mark = 0;

  constructor(private readonly host: Host) {
    host.kernel.trace.subscribe((e) => {
      if (e.kind === "kvm.pasid.ignored" && e.payload.event === "BIND" && typeof e.ids.hpasid === "number") this.#refused.add(e.ids.hpasid);
      if (e.kind === "vmm.exit") {
        const w = this.#watched.get(e.payload.name);
        if (w?.diedAt === null) {
          this.#learnOwners();
          w.diedAt = this.host.port.mark();
        }
      }
    });
    // A guest's vIOMMU queues page requests on the guest's own bus (its context): each must be of a PASID its VM owns.
    host.kernel.trace.subscribeSystem((e) => {
      if (e.kind !== "vtd.page-request" || e.payload.outcome !== "queued") return;
      const w = this.#watched.get(e.context);
      if (w === undefined) return;
      this.#learnOwners();
      const pasid = e.payload.pasid;
      const owner = pasid === null ? undefined : this.#owner.get(pasid);
      if (owner !== w) {
        const whose = pasid === null ? "without a PASID" : owner === undefined ? `of PASID ${pasid}, which ${w.vm.name} does not own` : `of PASID ${pasid}, which is ${owner.vm.name}'s`;
        this.#pending.push(`fault delivered to the wrong owner: a page request ${whose} was queued in ${w.vm.name}'s page request queue`);
      }
    });
  }

  /**
   * Holds `vm` to the per-VM invariants from now on: its RAM's host pages
   * are taken now (watch it while it runs), its PASIDs are those of the
   * IOASID set VFIO makes for the VMM's mm.
   */
  watchVm(vm: Vm): void {
    const frames = new Set<number>();
    for (let gpa = 0; gpa < vm.ramBytes; gpa += PAGE) {
      const hpa = vm.hpa(gpa);
      if (hpa !== null) frames.add(pageOf(hpa));
    }
    this.#watched.set(vm.name, { vm, frames, setId: null, diedAt: vm.state === "dead" ? this.#mark : null, releaseChecked: false });
  }

  /** Notes which watched VM owns each host PASID now (the IOASID sets of their VMMs' mms). */
  #learnOwners(): void {
    if (this.#watched.size === 0) return;
    const snap = this.host.ioasid.snapshot();
    for (const w of this.#watched.values()) {
      if (w.diedAt !== null) continue;
      const set = this.host.ioasid.findSetByToken(w.vm.mm);
      if (set === null) continue;
      w.setId = set.id;
      for (const id of snap.ids) if (id.set === set.id) this.#owner.set(id.id, w);
    }
  }

  /** Checks `kvm`'s translation table against the binds of the IOASID set VFIO makes for `mm` (the VM's mm token). */
  watchKvm(kvm: KvmPasid, mm: object): void {
    this.#vms.set(kvm, mm);
  }

  /** Checks the hardware WQs `vdcm` has lent to its mdevs, from now on. */
  watchVdcm(vdcm: Vdcm): void {
    this.#vdcms.add(vdcm);
  }

  /** The VM is gone (its KVM destroyed): no guest can ENQCMD through its table any more. */
  unwatchKvm(kvm: KvmPasid): void {
    this.#vms.delete(kvm);
  }

  bind(pasid: number, resolve: AddressResolver): void {
    this.spaces.set(pasid, resolve);
  }

  unbind(pasid: number): void {
    this.spaces.delete(pasid);
  }

  check(): string[] {
    const records = this.host.port.since(this.#mark);
    const lost = this.host.port.lostSince(this.#mark);
    this.#mark = this.host.port.mark();
    this.#learnOwners();
    const pending = this.#pending.splice(0);
    return [
      ...(lost > 0 ? [`${lost} DMA translations went unchecked: the recording ring overwrote them before this check`] : []),
      ...this.#checkDma(records),
      ...this.#checkVms(records),
      ...pending,
      ...this.#checkDeviceTlbs(),
      ...this.#checkIommuCaches(),
      ...this.#checkKvm(),
      ...this.#checkVdcm(),
      ...this.#checkInFlight(),
    ];
  }

  /**
   * The VM boundary, whatever the scenario declared of its address spaces
   * (the host's guarantee to every other VM, the cover letter of the 2020
   * vSVA series: the guest's first level only ever walks into memory the
   * VMM mapped for it with MAP_DMA, because the host's second level holds
   * nothing else): a DMA with a VM's PASID lands in a host page behind that
   * VM's RAM; none translates after the VM's death, and no DMA write lands
   * in a page the dead VM had until the host allocator hands that page out
   * again. At the first check after a death, everything the VM held on the
   * host must be gone (VFIO's release, vfio_iommu_type1_release(), and
   * KVM's teardown).
   */
  #checkVms(records: readonly DmaRecord[]): string[] {
    if (this.#watched.size === 0) return [];
    const out: string[] = [];
    let reused: Set<number> | null = null;
    const isReused = (page: number): boolean => {
      reused ??= new Set(this.host.pages.live().flatMap((p) => Array.from({ length: 2 ** p.order }, (_, i) => p.pa + i * PAGE)));
      return reused.has(page);
    };
    for (const { seq, req, result } of records) {
      if (!result.ok) continue;
      const page = pageOf(result.pa);
      const where = `DMA ${req.write ? "write" : "read"} at 0x${req.addr.toString(16)}${req.pasid === undefined ? "" : ` with PASID ${req.pasid}`}`;
      const owner = req.pasid === undefined ? undefined : this.#owner.get(req.pasid);
      if (owner !== undefined) {
        if (owner.diedAt !== null && seq > owner.diedAt) out.push(`DMA after death: ${where} of ${owner.vm.name} translated after ${owner.vm.name} died`);
        else if (!owner.frames.has(page)) out.push(`isolation: ${where} (a PASID of ${owner.vm.name}) reached host page 0x${page.toString(16)}, outside ${owner.vm.name}'s RAM`);
      }
      if (!req.write) continue;
      for (const w of this.#watched.values()) {
        if (w.diedAt !== null && seq > w.diedAt && w.frames.has(page) && !isReused(page)) {
          out.push(`DMA after death: ${where} wrote host page 0x${page.toString(16)}, which ${w.vm.name} had until it died`);
        }
      }
    }
    for (const w of this.#watched.values()) {
      if (w.diedAt === null || w.releaseChecked) continue;
      w.releaseChecked = true;
      out.push(...this.#checkReleased(w));
    }
    return out;
  }

  #checkReleased(w: WatchedVm): string[] {
    const { vm } = w;
    const out: string[] = [];
    const dead = `after ${vm.name} died`;
    if (this.host.ioasid.findSetByToken(vm.mm) !== null) out.push(`${dead}, its IOASID set (the VMM's mm) is still there`);
    if (w.setId !== null) {
      for (const id of this.host.ioasid.snapshot().ids) {
        if (id.set === w.setId) out.push(`${dead}, IOASID ${id.id} of its set is still ${id.state} with ${id.refcount} references`);
      }
    }
    if (vm.kvm.references !== 0) out.push(`${dead}, KVM still holds ${vm.kvm.references} IOASID references`);
    if (vm.ram.view.pinStats.pinnedPages !== 0) out.push(`${dead}, ${vm.ram.view.pinStats.pinnedPages} of its RAM pages are still pinned`);
    const held = this.host.pages.live().filter((p) => p.tag.startsWith(`${vm.name} `));
    if (held.length > 0) out.push(`${dead}, host pages are still held for it: ${held.map((p) => `${2 ** p.order} ${p.tag}`).join(", ")}`);
    return out;
  }

  /**
   * KVM follows the binds (the "KVM PASID Translation Table Updates" rules of
   * the proposed Documentation/driver-api/ioasid.rst, iommu list, 2020): a
   * guest PASID is bound while the IOMMU driver has it attached as the SPID
   * of a live (ACTIVE) host PASID in the VM's set. Every such guest PASID,
   * and only those, has a valid entry in the table the CPU walks for ENQCMD,
   * naming that host PASID; KVM holds one IOASID reference per entry. A
   * FREE_PENDING PASID is not bound any more: KVM drops it in the FREE
   * notifier, before free returns. The one allowed gap is a BIND KVM refused
   * and said so (no page for a table): that guest's ENQCMD exits, which
   * stays inside the guest.
   */
  #checkKvm(): string[] {
    if (this.#vms.size === 0) return [];
    const out: string[] = [];
    const snap = this.host.ioasid.snapshot();
    const bound = new Set<number>();
    const wants = [...this.#vms].map(([kvm, mm]) => {
      const set = this.host.ioasid.findSetByToken(mm);
      const want = new Map<number, number>();
      for (const id of snap.ids) {
        if (set !== null && id.set === set.id && id.state === "ACTIVE" && id.spid !== null) {
          want.set(id.spid, id.id);
          bound.add(id.id);
        }
      }
      return { kvm, want };
    });
    // A refused BIND excuses its entry only while that host PASID stays bound.
    for (const id of this.#refused) if (!bound.has(id)) this.#refused.delete(id);
    for (const { kvm, want } of wants) {
      const got = new Map<number, number>(kvm.readTable());
      const vm = `VM ${kvm.vm}`;
      for (const [g, h] of want) {
        const at = got.get(g);
        if (at === undefined) {
          if (!this.#refused.has(h)) out.push(`${vm}: guest PASID ${g} is bound to host PASID ${h}, but KVM's translation table has no entry for it`);
        } else if (at !== h) {
          out.push(`${vm}: KVM's translation table sends guest PASID ${g} to host PASID ${at}, but it is bound to ${h}`);
        }
      }
      for (const [g, h] of got) {
        if (!want.has(g)) out.push(`${vm}: KVM's translation table still sends guest PASID ${g} to host PASID ${h}, which is not bound`);
      }
      if (kvm.references !== got.size) out.push(`${vm}: KVM holds ${kvm.references} IOASID references for ${got.size} table entries`);
    }
    return out;
  }

  /**
   * The VDCM never clears lazily (the "VDCM PASID Programming" rules of the
   * proposed ioasid.rst: the PASID table is per device, so a PASID must not
   * cross between guests on one device): whatever host PASID a hardware WQ
   * lent to an mdev holds (WQCFG read back through the host driver), the
   * VDCM holds it for that mdev, and a guest's PASID is still allocated (its
   * reference keeps it from being reclaimed and handed to someone else).
   */
  #checkVdcm(): string[] {
    const out: string[] = [];
    for (const vdcm of this.#vdcms) {
      for (const m of vdcm.mdevs) {
        // A shared WQ holds no PASID of its own: WQCFG's PASID_EN only says each ENQCMD carries one (its PASID field stays 0).
        if (m.hostWq.mode === "shared") continue;
        const hw = m.hostWq.pasid;
        if (hw === null) continue;
        const p = m.programmed;
        const where = `${m.name}: hardware WQ ${m.hostWq.id} holds host PASID ${hw}`;
        if (p === null) out.push(`${where}, but the VDCM holds nothing for it (its reference was dropped, the WQ never cleared)`);
        else if (p.hpasid !== hw) out.push(`${where}, but the VDCM holds host PASID ${p.hpasid} for it`);
        else if (p.set !== null && this.host.ioasid.state(hw as number as Ioasid) === "IDLE") out.push(`${where}, which was reclaimed: the WQ outlived its reference`);
      }
    }
    return out;
  }

  /**
   * A descriptor outlives its PASID only to run in whatever address space the
   * ID is given next: every user quiesces first (idxd's release drains, the
   * VDCM clears or drains before its reference goes), so at a step's end no
   * accelerator may still hold a descriptor, queued or running, whose PASID
   * is back in the pool.
   */
  #checkInFlight(): string[] {
    const out: string[] = [];
    for (const dev of this.host.accelerators) {
      for (const pasid of new Set(dev.inFlightPasids())) {
        if (this.host.ioasid.state(pasid as Ioasid) === "IDLE") out.push(`${dev.name}: a descriptor with PASID ${pasid} is still queued or running, but PASID ${pasid} was reclaimed: it would run in the next owner's address space`);
      }
    }
    return out;
  }

  #checkDma(records: readonly DmaRecord[]): string[] {
    const out: string[] = [];
    for (const { req, result } of records) {
      if (!result.ok) continue;
      if (req.pasid === undefined) continue; // requests without PASID are the DMA API's, not SVA's
      const resolve = this.spaces.get(req.pasid);
      const where = `DMA ${req.write ? "write" : "read"} at 0x${req.addr.toString(16)} with PASID ${req.pasid}`;
      if (resolve === undefined) {
        out.push(`${where} translated although no address space is bound there (torn down or never bound)`);
        continue;
      }
      const want = resolve(req.addr);
      if (want !== result.pa) {
        out.push(`${where} reached 0x${result.pa.toString(16)}, but the bound address space maps it to ${want === null ? "nothing" : `0x${want.toString(16)}`}`);
      }
    }
    return out;
  }

  #checkDeviceTlbs(): string[] {
    const out: string[] = [];
    for (const { ep, dev } of this.host.devices) {
      for (const { pasid, entry } of ep.deviceTlb.entries()) {
        if (pasid === undefined) continue;
        const resolve = this.spaces.get(pasid);
        if (resolve === undefined) {
          out.push(`${dev.name}: device TLB still holds 0x${entry.base.toString(16)} for PASID ${pasid}, which is not bound`);
        } else if (resolve(entry.base) !== entry.paBase) {
          out.push(`${dev.name}: device TLB maps 0x${entry.base.toString(16)} of PASID ${pasid} to 0x${entry.paBase.toString(16)}, stale against the address space`);
        }
      }
    }
    return out;
  }

  #checkIommuCaches(): string[] {
    return this.host.platform.cacheViolations();
  }
}

/** What must hold once everything is torn down: nothing allocated, referenced or bound is left. */
export function checkQuiescent(host: Host): string[] {
  const out: string[] = [];
  const live = host.pages.live();
  if (live.length > 0) {
    const byTag = new Map<string, number>();
    for (const p of live) byTag.set(p.tag, (byTag.get(p.tag) ?? 0) + 2 ** p.order);
    out.push(`kernel pages leaked at teardown: ${[...byTag].map(([t, n]) => `${n} ${t}`).join(", ")}`);
  }
  const snap = host.ioasid.snapshot();
  for (const id of snap.ids) out.push(`IOASID ${id.id} not reclaimed at quiescence (state ${id.state}, refcount ${id.refcount})`);
  for (const mm of host.mms) if (mm.state !== "freed") out.push(`${mm.name} is ${mm.state}, not freed, after its task exited (a reference leaked)`);
  if (host.up && host.core.sva.liveBonds !== 0) out.push(`${host.core.sva.liveBonds} SVA bonds left at teardown`);
  if (host.kernel.scheduler.pending() !== 0) out.push(`${host.kernel.scheduler.pending()} work items never ran`);
  return out;
}
