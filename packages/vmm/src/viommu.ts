import { type SourceId, asHostPasid, errnoName, isKernelError } from "@vsva/kernel";
import {
  CONTEXT_ENTRY_BYTES, CapReg, ContextEntry, EcapReg, InvType, type Layout, PASID_DIR_ENTRY_BYTES, PASID_ENTRY_BYTES, PasidCacheDesc, PasidDeviceTlbDesc,
  PageGroupResponseDesc, PasidDirEntry, PasidEntry, PasidIotlbDesc, ResponseCode, type VtdInterrupt, PcGran, Pgtt, PiotlbGran, ROOT_ENTRY_BYTES, RegOffset, RootEntry, RtaddrReg, VcmdCommand, VcmdStatus,
  type VtdTrapEvent, type TrapReply, VtdUnit, pasidDirIndex, pasidTableIndex, readReg,
} from "@vsva/iommu-hw";
import { CacheInvType, IOMMU_SVA_GPASID_VAL, InvAddrFlag, InvGranularity, InvPasidFlag, type NestingInfo, type PageResponse, VtdGpasidFlag } from "@vsva/iommu-core";
import type { VfioContainerFile, VfioDeviceFile } from "@vsva/vfio-type1";
import { VfioFaultRings } from "./vfio-faults.js";
import type { Vm } from "./vm.js";
import { allocPasid, bindPgtbl, cacheInvalidate, freePasids, unbindPgtbl } from "./vfio-uapi.js";

/** What the guest's first-level entry asks the host to bind (iommu_gpasid_bind_data's VT-d fields). */
interface Binding {
  readonly gpgd: number;
  readonly addrWidth: 48 | 57;
  readonly flags: number;
}

/** A guest device behind the vIOMMU: its requester ID in the guest, the VFIO container the VMM put it in, and its VFIO device file (where its DMA fault regions are). */
export interface ViommuDevice {
  readonly sid: SourceId;
  readonly container: VfioContainerFile;
  readonly file: VfioDeviceFile;
}

/**
 * How a VM's guest PASIDs relate to the host's: `identity` — the guest is
 * given host PASIDs (what a directly assigned function needs, since nothing
 * between it and the host IOMMU renumbers its DMA's PASID); `spid` — the
 * vIOMMU numbers the guest's PASIDs in a namespace of the VM's own and
 * passes each as the host PASID's SPID, so two VMs can both hold guest
 * PASID 101 (the IOASID design's SPID, Documentation/driver-api/ioasid.rst
 * as proposed with the 2020 vSVA series).
 */
export type GuestPasidMode = "identity" | "spid";

/** One PASID's share of a queue submission's IOTLB/device-TLB invalidations, merged. */
interface PendingInv {
  cache: number;
  /** null: the whole PASID; otherwise the one range asked for. */
  range: { addr: number; am: number; leaf: boolean } | null;
}

/** Counters of what the guest made the VMM do. */
export interface ViommuStats {
  /** Register writes that exit to the VMM and make it act (IQT, VCMD): each a VM exit. */
  exits: number;
  /** Queue submissions that needed the host (a deferred wait each). */
  batches: number;
  binds: number;
  unbinds: number;
  invalidations: number;
  pasidAllocs: number;
  pasidFrees: number;
  /** Host refusals turned into guest-visible errors. */
  refused: number;
  /** Page requests from VFIO's fault ring put in the guest's page request queue. */
  pageRequests: number;
  /** The guest's page group responses passed to VFIO's response ring. */
  responses: number;
  /** Page group responses for no request the guest was given: dropped. */
  strayResponses: number;
}

/**
 * The VM's virtual VT-d IOMMU (what QEMU's `intel-iommu` device with
 * `caching-mode=on` and the 2020 vSVA RFC's `x-scalable-mode=modern`
 * does): the same emulated unit as the host's, over guest memory, with
 * caching mode (CAP.CM, so the guest flushes after making entries present,
 * VT-d §6.1), the virtual command interface (ECAP.VCS, VCCAP.PAS, VT-d
 * §10.4.43–44), and capabilities no wider than the host's nesting info.
 * Through the unit's traps it shadows the guest's PASID-granular state onto
 * VFIO:
 * - a virtual command to allocate or free a PASID is a
 *   VFIO_IOMMU_PASID_REQUEST on the VM's container (guest PASID = host
 *   PASID this session);
 * - a PASID-cache invalidation makes it read the guest's PASID entry from
 *   guest memory (RTADDR → root → context → PASID directory → PASID table,
 *   VT-d §9.1, §9.4, §9.5, §9.6): present with a first-level table → bind
 *   the guest table (NESTING_OP BIND_PGTBL with FLPTR, the paging mode's
 *   width and the SRE/EAFE/WPE bits); not present → unbind. What it
 *   asks the host follows what it bound (as QEMU's vtd_pasid_cache_sync()
 *   in hw/i386/intel_iommu.c of the 2020 vSVA RFC compares the guest's
 *   entries with its cached PASID address spaces): an entry cleared again,
 *   or a flush of a PASID it never bound, asks nothing;
 * - PASID-based IOTLB and device-TLB invalidations become NESTING_OP
 *   CACHE_INVLD, one per PASID for one queue submission;
 * - the submission's invalidation wait descriptor is held back (deferred)
 *   until the host has acted, so the guest sees completion only then
 *   (VT-d §6.5.2.8: a wait completes after every earlier descriptor).
 * What the host refuses never reaches the guest as an exception: the wait
 * of that submission is passed over without its status write (an
 * invalidation the hardware never completed), so the guest's driver gives
 * up on it with its own time-out error.
 */
export class VirtualVtd {
  readonly unit: VtdUnit;
  readonly vm: Vm;
  readonly stats: ViommuStats = { exits: 0, batches: 0, binds: 0, unbinds: 0, invalidations: 0, pasidAllocs: 0, pasidFrees: 0, refused: 0, pageRequests: 0, responses: 0, strayResponses: 0 };
  /** Guest source IDs of the assigned devices behind this vIOMMU. */
  readonly #devs: readonly ViommuDevice[];
  /** What is bound on the host: guest PASID → index in #devs → the binding on that device's container. */
  readonly #bound = new Map<number, Map<number, Binding>>();
  /**
   * Guest PASIDs the guest freed while they were bound (a guest that frees
   * before it unbinds): the host tore the binding down on FREE, but the
   * VMM only learns that the guest is done with it when the guest clears
   * the entry; that PASID-cache sync still makes the unbind, with the host
   * PASID the binding had, and the host refuses it.
   */
  readonly #freedBound = new Map<number, { readonly host: number; readonly per: Map<number, Binding> }>();
  /** PASIDs the guest got through the virtual command interface and has not given back: guest PASID → host PASID. */
  readonly #allocated = new Map<number, number>();
  /** The reverse of #allocated: host PASID → guest PASID (fault records carry host PASIDs). */
  readonly #guestOf = new Map<number, number>();
  readonly #mode: GuestPasidMode;
  /** SPIDs: the lowest guest PASID the virtual command hands out. */
  readonly #firstGuestPasid: number;
  /** PASID-cache invalidations of the current submission, in order (PASID, or null for all). */
  readonly #pcs: (number | null)[] = [];
  readonly #invs = new Map<number, PendingInv>();
  /** Page group responses of the current submission, for the host, each with the index in #devs of the device it answers. */
  readonly #responses: { readonly dev: number; readonly resp: PageResponse }[] = [];
  /** Groups the guest was given and has not answered: `${requester ID}/${pasid}/${group index}` → index in #devs. */
  readonly #pendingGroups = new Map<string, number>();
  /** Each device's fault rings, found on first use (null: it has none). */
  readonly #rings = new Map<number, VfioFaultRings | null>();
  #irq: ((irq: VtdInterrupt) => void) | null = null;
  #deferredWait: number | null = null;
  #servicing = false;

  constructor(vm: Vm, opts: { readonly devices: readonly ViommuDevice[]; readonly name?: string; readonly guestPasids?: GuestPasidMode; readonly firstGuestPasid?: number }) {
    this.vm = vm;
    this.#devs = opts.devices;
    this.#mode = opts.guestPasids ?? "identity";
    this.#firstGuestPasid = opts.firstGuestPasid ?? 1;
    this.unit = new VtdUnit({
      ...capsFromNesting(vm.nesting),
      mem: vm.ram.view,
      hostAddrBits: vm.ram.view.addrBits,
      cachingMode: true,
      virtualCommand: true,
      nesting: false,
      trace: vm.kernel.trace,
      name: opts.name ?? "vdmar0",
      trap: (e) => this.#trap(e),
      onInterrupt: (irq) => this.#irq?.(irq),
    });
  }

  /** Where the vIOMMU's interrupts go: the guest's interrupt handler (its MSI, as the guest programmed it). */
  connectInterrupts(handler: (irq: VtdInterrupt) => void): void {
    this.#irq = handler;
  }

  /**
   * The VMM's handler of VFIO's fault notification (the series' fault
   * eventfd), for each device behind the vIOMMU (the assigned function and
   * each mdev, whose container's device file has rings of its own): takes
   * every record from the device's fault ring; each page request with a
   * PASID goes into the guest's page request queue as if that device had
   * sent it to the vIOMMU (VT-d §7.5: the request carries the requester ID
   * the guest knows the device by), and its group is remembered until the
   * guest answers it. A request the vIOMMU cannot take (PRQ off or full),
   * or one without a PASID the guest holds, the VMM answers "invalid"
   * itself, as VT-d hardware answers what it drops. Returns the records
   * taken. Cannot fail: a ring VFIO refuses is logged.
   */
  pollFaults(): number {
    if (this.vm.state !== "running") return 0;
    let n = 0;
    for (const [i, dev] of this.#devs.entries()) n += this.#pollDevice(i, dev);
    return n;
  }

  #pollDevice(i: number, dev: ViommuDevice): number {
    const rings = this.#faultRings(i);
    if (rings === null) return 0;
    let records: ReturnType<VfioFaultRings["take"]> = [];
    if (!this.#host(() => (records = rings.take()))) return 0;
    const answers: PageResponse[] = [];
    for (const r of records) {
      if (r.type !== "page-request") continue;
      const { prm } = r;
      // The record carries the host PASID; the guest knows its own (a record of no PASID the guest holds is answered here).
      const pasid = prm.pasid === undefined ? undefined : (this.#guestPasid(prm.pasid) ?? undefined);
      let taken = false;
      if (pasid !== undefined) {
        taken = this.unit.pageRequest({
          sid: dev.sid,
          pasid,
          priv: prm.perm.priv,
          exec: prm.perm.exec,
          addr: Number(BigInt.asIntN(64, prm.addr)),
          read: prm.perm.read,
          write: prm.perm.write,
          lastInGroup: prm.last,
          groupIndex: prm.grpid,
          ...(prm.privateData === undefined ? {} : { privateData: prm.privateData }),
        });
      }
      if (taken) {
        this.stats.pageRequests++;
        if (prm.last && pasid !== undefined) this.#pendingGroups.set(`${dev.sid}/${pasid}/${prm.grpid}`, i);
      } else if (prm.last) answers.push({ pasid: prm.pasid === undefined ? undefined : asHostPasid(prm.pasid), grpid: prm.grpid, code: "invalid" });
    }
    if (answers.length > 0) this.#host(() => rings.respond(answers));
    return records.length;
  }

  #faultRings(i: number): VfioFaultRings | null {
    let rings = this.#rings.get(i);
    if (rings === undefined) {
      const file = this.#devs[i]?.file;
      let found: VfioFaultRings | null = null;
      if (file !== undefined) this.#host(() => (found = VfioFaultRings.find(file)));
      rings = found;
      this.#rings.set(i, rings);
    }
    return rings;
  }

  /** PASIDs bound on the host for this guest now (by guest PASID, on any of its devices), with the guest table each uses. */
  get bound(): ReadonlyMap<number, { readonly gpgd: number }> {
    const out = new Map<number, Binding>();
    for (const [pasid, per] of this.#bound) {
      const first = [...per.values()][0];
      if (first !== undefined) out.set(pasid, first);
    }
    return out;
  }

  /** The guest devices (by index in the VM's order: the assigned function, then its mdevs) `pasid` is bound on at the host. */
  boundOn(pasid: number): readonly number[] {
    return [...(this.#bound.get(pasid)?.keys() ?? [])];
  }

  /** How this vIOMMU numbers the guest's PASIDs. */
  get guestPasids(): GuestPasidMode {
    return this.#mode;
  }

  /** The host PASID behind guest PASID `gpasid`, or null when the guest holds no such PASID (identity: `gpasid` itself). */
  hostPasid(gpasid: number): number | null {
    if (this.#mode === "identity") return gpasid;
    return this.#allocated.get(gpasid) ?? null;
  }

  /** The guest PASID of host PASID `hpasid`, or null when it is none of this guest's (identity: `hpasid` itself). */
  #guestPasid(hpasid: number): number | null {
    if (this.#mode === "identity") return hpasid;
    return this.#guestOf.get(hpasid) ?? null;
  }

  /**
   * The lowest guest PASID (from the VM's first guest PASID, 1 unless the
   * VMM set another; 0 is RID_PASID) not in use in this VM's own
   * namespace, or null when the namespace is full.
   */
  #freeGuestPasid(max: number): number | null {
    for (let g = this.#firstGuestPasid; g <= max; g++) if (!this.#allocated.has(g)) return g;
    return null;
  }

  /**
   * What the VMM does while a guest vCPU spins on an invalidation wait (its
   * I/O thread, or the vCPU's exit for the IQT write): carries out what the
   * held submission asks of the host, then lets the wait complete. The
   * guest's driver calls it from its polling loop (`poll`). Cannot fail.
   */
  service(): void {
    if (this.#servicing || this.vm.state !== "running") return;
    this.#servicing = true;
    try {
      const seq = this.#deferredWait;
      const ok = this.#flushBatch();
      if (seq !== null) {
        this.#deferredWait = null;
        this.unit.completeDeferred(seq, ok ? "pass" : "handled");
      }
    } finally {
      this.#servicing = false;
    }
  }

  #trap(e: VtdTrapEvent): TrapReply {
    switch (e.kind) {
      case "mmio-read":
        return "pass";
      case "mmio-write":
        if (e.offset === RegOffset.IQT) this.stats.exits++;
        return "pass";
      case "vcmd":
        this.stats.exits++;
        return this.#vcmd(e.cmd, e.operand);
      case "descriptor":
        return this.#descriptor(e.type, e.dwords, e.seq);
    }
  }

  #vcmd(cmd: number, operand: number): TrapReply {
    const c = this.vm.container;
    try {
      if (cmd === VcmdCommand.ALLOC_PASID) {
        const max = 2 ** this.unit.cfg.pasidBits - 1;
        // SPIDs: the guest's number comes from the VM's own namespace, chosen before the host is asked so a full
        // namespace costs the host nothing; identity: the guest gets the host's number.
        const guest = this.#mode === "spid" ? this.#freeGuestPasid(max) : null;
        if (this.#mode === "spid" && guest === null) {
          this.stats.refused++;
          return { status: VcmdStatus.NO_PASID_OR_INVALID };
        }
        this.#announce("PASID_REQUEST alloc", null);
        const host = allocPasid(c, 1, max);
        const id = guest ?? host;
        // The guest's number is a new PASID now: an unbind of the freed one would reach the new one (ioasid.rst's note on a late unbind).
        this.#freedBound.delete(id);
        this.#allocated.set(id, host);
        this.#guestOf.set(host, id);
        this.stats.pasidAllocs++;
        return { status: VcmdStatus.SUCCESS, result: id };
      }
      if (cmd === VcmdCommand.FREE_PASID) {
        const host = this.#allocated.get(operand);
        if (host === undefined) return { status: VcmdStatus.NO_PASID_OR_INVALID };
        // The host unbinds whatever is still bound on it when the PASID goes (VFIO's free notifies).
        this.#announce("PASID_REQUEST free", host);
        freePasids(c, host, host);
        this.#allocated.delete(operand);
        this.#guestOf.delete(host);
        const per = this.#bound.get(operand);
        if (per !== undefined) this.#freedBound.set(operand, { host, per });
        this.#bound.delete(operand);
        this.#invs.delete(operand);
        this.stats.pasidFrees++;
        return { status: VcmdStatus.SUCCESS };
      }
      return { status: VcmdStatus.UNDEFINED_COMMAND };
    } catch (err) {
      if (!isKernelError(err)) throw err;
      this.stats.refused++;
      return { status: VcmdStatus.NO_PASID_OR_INVALID };
    }
  }

  #descriptor(type: number, d: Uint32Array, seq: number): TrapReply {
    switch (type) {
      case InvType.PASID_CACHE: {
        const g = PasidCacheDesc.get(d, "G");
        this.#pcs.push(g === PcGran.PASID ? PasidCacheDesc.get(d, "PASID") : null);
        return "pass";
      }
      case InvType.PASID_IOTLB: {
        const pasid = PasidIotlbDesc.get(d, "PASID");
        const g = PasidIotlbDesc.get(d, "G");
        const range = g === PiotlbGran.PAGE ? { addr: PasidIotlbDesc.getAddr(d, "ADDR"), am: PasidIotlbDesc.get(d, "AM"), leaf: PasidIotlbDesc.get(d, "IH") === 1 } : null;
        this.#queueInv(pasid, CacheInvType.IOTLB, range);
        return "pass";
      }
      case InvType.PASID_DEVICE_TLB: {
        const pasid = PasidDeviceTlbDesc.get(d, "PASID");
        this.#queueInv(pasid, CacheInvType.DEV_IOTLB, null);
        // No endpoint sits below the virtual unit: the device TLB is the host's to flush.
        return "handled";
      }
      case InvType.PAGE_GROUP_RESPONSE: {
        const pasid = PageGroupResponseDesc.get(d, "PASID");
        const grpid = PageGroupResponseDesc.get(d, "PRGI");
        // The response names the device by the requester ID the request carried (VT-d §6.5.2.9).
        const key = `${PageGroupResponseDesc.get(d, "RID")}/${pasid}/${grpid}`;
        const dev = this.#pendingGroups.get(key);
        if (dev === undefined) {
          // A response for nothing the guest was given (or answered already): the host never sees it.
          this.stats.strayResponses++;
          return "handled";
        }
        this.#pendingGroups.delete(key);
        const rc = PageGroupResponseDesc.get(d, "RC");
        const code = rc === ResponseCode.SUCCESS ? "success" : rc === ResponseCode.INVALID ? "invalid" : "failure";
        const host = this.hostPasid(pasid);
        if (host !== null) this.#responses.push({ dev, resp: { pasid: asHostPasid(host), grpid, code } });
        // No endpoint sits below the virtual unit: the response is the host's to deliver.
        return "handled";
      }
      case InvType.WAIT:
        if (this.#pcs.length === 0 && this.#invs.size === 0 && this.#responses.length === 0) return "pass";
        this.#deferredWait = seq;
        this.stats.batches++;
        return "defer";
      default:
        return "pass";
    }
  }

  #queueInv(pasid: number, cache: number, range: PendingInv["range"]): void {
    const p = this.#invs.get(pasid);
    if (p === undefined) {
      this.#invs.set(pasid, { cache, range });
      return;
    }
    p.cache |= cache;
    // Two different ranges (or any PASID-wide request) of one PASID in one submission: one PASID-wide flush covers them.
    const same = range !== null && p.range?.addr === range.addr && p.range.am === range.am;
    if (!same) p.range = null;
  }

  /** Carries out the submission's PASID-cache syncs in order, then its merged invalidations. True when the host refused nothing. */
  #flushBatch(): boolean {
    let ok = true;
    const pcs = this.#pcs.splice(0);
    for (const pc of pcs) {
      const pasids = pc === null ? [...new Set([...this.#allocated.keys(), ...this.#bound.keys(), ...this.#freedBound.keys()])] : [pc];
      for (const p of pasids) ok = this.#syncPasid(p) && ok;
    }
    const responses = this.#responses.splice(0);
    for (let i = 0; i < this.#devs.length; i++) {
      const mine = responses.filter((r) => r.dev === i).map((r) => r.resp);
      if (mine.length === 0) continue;
      const rings = this.#faultRings(i);
      ok = rings !== null && this.#host(() => {
        rings.respond(mine);
        this.stats.responses += mine.length;
      }) && ok;
    }
    const invs = [...this.#invs].sort((a, b) => a[0] - b[0]);
    this.#invs.clear();
    for (const [pasid, inv] of invs) {
      // Nothing of an unbound PASID is cached on the host: its bind or unbind flushed it.
      const per = this.#bound.get(pasid);
      const host = this.hostPasid(pasid);
      if (per === undefined || host === null) continue;
      for (const i of per.keys()) {
        const c = this.#devs[i]?.container;
        if (c === undefined) continue;
        ok = this.#host(() => {
          const pasidInfo = { flags: InvPasidFlag.PASID, pasid: BigInt(host) };
          if (inv.range === null) cacheInvalidate(c, { cache: inv.cache, granularity: InvGranularity.PASID, pasidInfo });
          else {
            const r = inv.range;
            cacheInvalidate(c, {
              cache: inv.cache,
              granularity: InvGranularity.ADDR,
              addrInfo: { flags: InvAddrFlag.PASID | (r.leaf ? InvAddrFlag.LEAF : 0), pasid: BigInt(host), addr: BigInt(r.addr), granuleSize: 4096n, nbGranules: BigInt(2 ** r.am) },
            });
          }
          this.stats.invalidations++;
        }) && ok;
      }
    }
    return ok;
  }

  /**
   * Makes the host's binding of `pasid` on each device's container match
   * that device's guest PASID entry (QEMU puts each device behind a vIOMMU
   * in a container of its own, and a nesting container holds one group).
   */
  #syncPasid(pasid: number): boolean {
    const freed = this.#freedBound.get(pasid);
    if (freed !== undefined) return this.#syncFreed(pasid, freed);
    // SPIDs: a guest PASID the guest never allocated has no host PASID, so there is nothing the host could bind.
    const host = this.hostPasid(pasid);
    const have = this.#bound.get(pasid);
    const next = new Map<number, Binding>();
    let ok = true;
    let kept = false;
    let changed = false;
    for (const [i, dev] of this.#devs.entries()) {
      const want = this.#guestBinding(dev.sid, pasid);
      const had = have?.get(i);
      if (had !== undefined && want !== null && had.gpgd === want.gpgd && had.addrWidth === want.addrWidth && had.flags === want.flags) {
        next.set(i, had);
        kept = true;
        continue;
      }
      if (had === undefined && want === null) continue;
      changed = true;
      if (had !== undefined && host !== null) {
        ok = this.#host(() => {
          this.#announce("NESTING_OP unbind", host);
          unbindPgtbl(dev.container, { hpasid: BigInt(host), addrWidth: had.addrWidth });
          this.stats.unbinds++;
        }) && ok;
      }
      if (want === null) continue;
      if (host === null) {
        this.stats.refused++;
        ok = false;
        continue;
      }
      ok = this.#host(() => {
        // The guest's PASID goes with it (IOMMU_SVA_GPASID_VAL): the host records it as the host PASID's SPID in the VM's set, and
        // the IOASID BIND that follows is what KVM's translation for the guest's ENQCMD listens to (and what an mdev's host driver
        // looks the guest's number up by). Identity: the two numbers are one.
        this.#announce("NESTING_OP bind", host);
        bindPgtbl(dev.container, {
          hpasid: BigInt(host),
          gpasid: BigInt(pasid),
          flags: BigInt(IOMMU_SVA_GPASID_VAL),
          gpgd: BigInt(want.gpgd),
          addrWidth: want.addrWidth,
          vtd: { flags: BigInt(want.flags) },
        });
        next.set(i, want);
        this.stats.binds++;
      }) && ok;
    }
    // A device's unbind or new bind flushes the host's caches of the PASID on it; pending flushes stay while another device kept its binding.
    if (changed && !kept) this.#invs.delete(pasid);
    if (next.size > 0) this.#bound.set(pasid, next);
    else this.#bound.delete(pasid);
    return ok;
  }

  /**
   * The PASID-cache sync of a PASID the guest freed while bound: where the
   * guest has cleared its entry, the VMM unbinds as it would any cleared
   * entry (QEMU's PASID-cache sync does not know the host let the binding
   * go on FREE), with the host PASID the binding had; the host refuses
   * (the IOMMU driver finds no PASID, drivers/iommu/intel/svm.c:
   * intel_svm_unbind_gpasid() via ioasid_find(), Linux v5.10), and the
   * VMM forgets the binding either way. An entry still present binds
   * nothing: its host PASID is gone.
   */
  #syncFreed(pasid: number, freed: { readonly host: number; readonly per: Map<number, Binding> }): boolean {
    let ok = true;
    for (const [i, had] of [...freed.per]) {
      const dev = this.#devs[i];
      if (dev !== undefined && this.#guestBinding(dev.sid, pasid) !== null) continue;
      freed.per.delete(i);
      if (dev === undefined) continue;
      ok = this.#host(() => {
        this.#announce("NESTING_OP unbind", freed.host);
        unbindPgtbl(dev.container, { hpasid: BigInt(freed.host), addrWidth: had.addrWidth });
        this.stats.unbinds++;
      }) && ok;
    }
    if (freed.per.size === 0) this.#freedBound.delete(pasid);
    return ok;
  }

  /** Puts the VFIO ioctl the VMM is about to make on the host's bus (a `vmm.vfio-ioctl` event). */
  #announce(op: "PASID_REQUEST alloc" | "PASID_REQUEST free" | "NESTING_OP bind" | "NESTING_OP unbind", host: number | null): void {
    this.vm.host.kernel.trace.emit("vmm.vfio-ioctl", "VMM", { vm: this.vm.id, ...(host === null ? {} : { ioasid: host }) }, { name: this.vm.name, op });
  }

  /** A host call on the guest's behalf: a KernelError is the host refusing, counted and turned into false. */
  #host(fn: () => void): boolean {
    try {
      fn();
      return true;
    } catch (e) {
      if (!isKernelError(e)) throw e;
      this.stats.refused++;
      this.vm.kernel.log.warn("vmm.viommu", `${this.vm.name}: the host refused (-${errnoName(e.errno)}): ${e.message}`, "VMM");
      return false;
    }
  }

  /**
   * The first-level binding the guest's PASID entry of `sid` asks for:
   * null when it has no present first-level entry for `pasid` (absent, a
   * hole, not present, another translation type, or a paging mode VT-d
   * does not define).
   */
  #guestBinding(sid: SourceId, pasid: number): Binding | null {
    if (pasid === 0) return null; // RID_PASID: requests without PASID, the container's second level covers them.
    const e = this.#pasidEntry(sid, pasid);
    if (e === null || PasidEntry.get(e, "P") !== 1 || PasidEntry.get(e, "PGTT") !== Pgtt.FIRST_LEVEL) return null;
    const flpm = PasidEntry.get(e, "FLPM");
    if (flpm > 1) return null;
    let flags = 0;
    if (PasidEntry.get(e, "SRE") === 1) flags |= VtdGpasidFlag.SRE;
    if (PasidEntry.get(e, "EAFE") === 1) flags |= VtdGpasidFlag.EAFE;
    if (PasidEntry.get(e, "WPE") === 1) flags |= VtdGpasidFlag.WPE;
    return { gpgd: PasidEntry.getAddr(e, "FLPTPTR"), addrWidth: flpm === 1 ? 57 : 48, flags };
  }

  /** The guest's PASID-table entry of `pasid` for `sid`, read from guest memory as the unit would, or null where the walk stops. */
  #pasidEntry(sid: SourceId, pasid: number): Uint32Array | null {
    const mem = this.vm.ram.view;
    const read = (layout: Layout<string>, pa: number): Uint32Array | null => {
      const v = layout.alloc();
      return layout.read(mem, pa, v) ? v : null;
    };
    const rt = RtaddrReg.getAddr(readReg(this.unit, RegOffset.RTADDR, RtaddrReg), "RTA");
    const root = read(RootEntry, rt + ROOT_ENTRY_BYTES * (sid >> 8));
    if (root === null) return null;
    const devfn = sid & 0xff;
    const upper = devfn >= 0x80;
    if (RootEntry.get(root, upper ? "UP" : "LP") !== 1) return null;
    const ctx = read(ContextEntry, RootEntry.getAddr(root, upper ? "UCTP" : "LCTP") + CONTEXT_ENTRY_BYTES * (devfn & 0x7f));
    if (ctx === null || ContextEntry.get(ctx, "P") !== 1) return null;
    if (pasidDirIndex(pasid) >= 2 ** (ContextEntry.get(ctx, "PDTS") + 7)) return null;
    const dir = read(PasidDirEntry, ContextEntry.getAddr(ctx, "PASIDDIRPTR") + PASID_DIR_ENTRY_BYTES * pasidDirIndex(pasid));
    if (dir === null || PasidDirEntry.get(dir, "P") !== 1) return null;
    return read(PasidEntry, PasidDirEntry.getAddr(dir, "SMPTBLPTR") + PASID_ENTRY_BYTES * pasidTableIndex(pasid));
  }
}

/**
 * The vIOMMU's capabilities, no wider than what the host's nesting info
 * says the host can nest (the 2020 QEMU vSVA RFC checks the host's
 * CAP/ECAP from VFIO before it exposes a scalable-mode vIOMMU): PASID
 * width, first-level paging modes and page sizes, supervisor and execute
 * requests, device TLB and page requests. The guest gets no second level
 * or nesting of its own: its DMA API domains are the host's business here
 * (the guest runs with pass-through default domains).
 */
function capsFromNesting(info: NestingInfo): { pasidBits: number; firstLevel5: boolean; firstLevel1g: boolean; supervisorRequests: boolean; executeRequests: boolean; deviceTlb: boolean; pageRequests: boolean } {
  const vendor = info.vendor;
  if (vendor === null) return { pasidBits: 1, firstLevel5: false, firstLevel1g: false, supervisorRequests: false, executeRequests: false, deviceTlb: false, pageRequests: false };
  const cap = u64Dwords(vendor.capReg);
  const ecap = u64Dwords(vendor.ecapReg);
  return {
    pasidBits: Math.max(1, Math.min(20, info.pasidBits)),
    firstLevel5: info.addrWidth >= 57 && CapReg.get(cap, "FL5LP") === 1,
    firstLevel1g: CapReg.get(cap, "FL1GP") === 1,
    supervisorRequests: EcapReg.get(ecap, "SRS") === 1,
    executeRequests: EcapReg.get(ecap, "ERS") === 1,
    deviceTlb: EcapReg.get(ecap, "DT") === 1,
    pageRequests: EcapReg.get(ecap, "PRS") === 1,
  };
}

function u64Dwords(v: bigint): Uint32Array {
  return Uint32Array.of(Number(v & 0xffff_ffffn), Number((v >> 32n) & 0xffff_ffffn));
}

