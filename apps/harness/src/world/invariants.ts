import type { KvmPasid } from "@vsva/kvm-pasid";
import type { Vdcm } from "@vsva/vdcm";
import type { Ioasid } from "@vsva/kernel";
import type { Host } from "./host.js";

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
 *   the VDCM dropped (see #checkVdcm).
 */
export class InvariantChecker {
  readonly spaces = new Map<number, AddressResolver>();
  readonly #vms = new Map<KvmPasid, object>();
  readonly #vdcms = new Set<Vdcm>();
  /** Host PASIDs whose BIND a KVM reported it could not act on (no page for a table): their entry may be missing. */
  readonly #refused = new Set<number>();
  #mark = 0;

  constructor(private readonly host: Host) {
    host.kernel.trace.subscribe((e) => {
      if (e.kind === "kvm.pasid.ignored" && e.payload.event === "BIND" && typeof e.ids.hpasid === "number") this.#refused.add(e.ids.hpasid);
    });
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
    return [...this.#checkDma(), ...this.#checkDeviceTlbs(), ...this.#checkIommuCaches(), ...this.#checkKvm(), ...this.#checkVdcm()];
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

  #checkDma(): string[] {
    const out: string[] = [];
    const records = this.host.port.since(this.#mark);
    const lost = this.host.port.lostSince(this.#mark);
    this.#mark = this.host.port.mark();
    if (lost > 0) out.push(`${lost} DMA translations went unchecked: the recording ring overwrote them before this check`);
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
