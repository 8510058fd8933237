import { type SourceId, asHostPasid, errnoName, isKernelError } from "@vsva/kernel";
import {
  CONTEXT_ENTRY_BYTES, CapReg, ContextEntry, EcapReg, InvType, type Layout, PASID_DIR_ENTRY_BYTES, PASID_ENTRY_BYTES, PasidCacheDesc, PasidDeviceTlbDesc,
  PageGroupResponseDesc, PasidDirEntry, PasidEntry, PasidIotlbDesc, ResponseCode, type VtdInterrupt, PcGran, Pgtt, PiotlbGran, ROOT_ENTRY_BYTES, RegOffset, RootEntry, RtaddrReg, VcmdCommand, VcmdStatus,
  type VtdTrapEvent, type TrapReply, VtdUnit, pasidDirIndex, pasidTableIndex, readReg,
} from "@vsva/iommu-hw";
import { CacheInvType, IOMMU_SVA_GPASID_VAL, InvAddrFlag, InvGranularity, InvPasidFlag, type NestingInfo, type PageResponse, VtdGpasidFlag } from "@vsva/iommu-core";
import { VfioFaultRings } from "./vfio-faults.js";
import type { Vm } from "./vm.js";
import { allocPasid, bindPgtbl, cacheInvalidate, freePasids, unbindPgtbl } from "./vfio-uapi.js";

/** What the guest's first-level entry asks the host to bind (iommu_gpasid_bind_data's VT-d fields). */
interface Binding {
  readonly gpgd: number;
  readonly addrWidth: 48 | 57;
  readonly flags: number;
}

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
 *   width and the SRE/EAFE/WPE bits); not present → unbind;
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
  readonly #sids: readonly SourceId[];
  readonly #bound = new Map<number, Binding>();
  /** PASIDs the guest got through the virtual command interface and has not given back. */
  readonly #allocated = new Set<number>();
  /** PASID-cache invalidations of the current submission, in order (PASID, or null for all). */
  readonly #pcs: (number | null)[] = [];
  readonly #invs = new Map<number, PendingInv>();
  /** Page group responses of the current submission, for the host. */
  readonly #responses: PageResponse[] = [];
  /** Groups the guest was given and has not answered: `${pasid}/${group index}`. */
  readonly #pendingGroups = new Set<string>();
  #rings: VfioFaultRings | null | undefined;
  #irq: ((irq: VtdInterrupt) => void) | null = null;
  #deferredWait: number | null = null;
  #servicing = false;

  constructor(vm: Vm, opts: { readonly guestSids: readonly SourceId[]; readonly name?: string }) {
    this.vm = vm;
    this.#sids = opts.guestSids;
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
   * eventfd): takes every record from the device's fault ring; each page
   * request with a PASID goes into the guest's page request queue as if
   * the assigned device had sent it to the vIOMMU (VT-d §7.5), and its
   * group is remembered until the guest answers it. A request the vIOMMU
   * cannot take (PRQ off or full), or one without a PASID, the VMM answers
   * "invalid" itself, as VT-d hardware answers what it drops. Returns the
   * records taken. Cannot fail: a ring VFIO refuses is logged.
   */
  pollFaults(): number {
    if (this.vm.state !== "running") return 0;
    const rings = this.#faultRings();
    if (rings === null) return 0;
    let records: ReturnType<VfioFaultRings["take"]> = [];
    if (!this.#host(() => (records = rings.take()))) return 0;
    const answers: PageResponse[] = [];
    const sid = this.#sids[0];
    for (const r of records) {
      if (r.type !== "page-request") continue;
      const { prm } = r;
      const pasid = prm.pasid;
      let taken = false;
      if (pasid !== undefined && sid !== undefined) {
        taken = this.unit.pageRequest({
          sid,
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
        if (prm.last && pasid !== undefined) this.#pendingGroups.add(`${pasid}/${prm.grpid}`);
      } else if (prm.last) answers.push({ pasid: pasid === undefined ? undefined : asHostPasid(pasid), grpid: prm.grpid, code: "invalid" });
    }
    if (answers.length > 0) this.#host(() => rings.respond(answers));
    return records.length;
  }

  #faultRings(): VfioFaultRings | null {
    if (this.#rings === undefined) {
      let found: VfioFaultRings | null = null;
      this.#host(() => (found = VfioFaultRings.find(this.vm.deviceFile)));
      this.#rings = found;
    }
    return this.#rings;
  }

  /** PASIDs bound on the host for this guest now, with the guest table each uses. */
  get bound(): ReadonlyMap<number, { readonly gpgd: number }> {
    return this.#bound;
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
        const id = allocPasid(c, 1, max);
        this.#allocated.add(id);
        this.stats.pasidAllocs++;
        return { status: VcmdStatus.SUCCESS, result: id };
      }
      if (cmd === VcmdCommand.FREE_PASID) {
        if (!this.#allocated.has(operand)) return { status: VcmdStatus.NO_PASID_OR_INVALID };
        // The host unbinds whatever is still bound on it when the PASID goes (VFIO's free notifies).
        freePasids(c, operand, operand);
        this.#allocated.delete(operand);
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
        const key = `${pasid}/${grpid}`;
        if (!this.#pendingGroups.delete(key)) {
          // A response for nothing the guest was given (or answered already): the host never sees it.
          this.stats.strayResponses++;
          return "handled";
        }
        const rc = PageGroupResponseDesc.get(d, "RC");
        const code = rc === ResponseCode.SUCCESS ? "success" : rc === ResponseCode.INVALID ? "invalid" : "failure";
        this.#responses.push({ pasid: asHostPasid(pasid), grpid, code });
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
      const pasids = pc === null ? [...new Set([...this.#allocated, ...this.#bound.keys()])] : [pc];
      for (const p of pasids) ok = this.#syncPasid(p) && ok;
    }
    const responses = this.#responses.splice(0);
    if (responses.length > 0) {
      const rings = this.#faultRings();
      ok = rings !== null && this.#host(() => {
        rings.respond(responses);
        this.stats.responses += responses.length;
      }) && ok;
    }
    const invs = [...this.#invs].sort((a, b) => a[0] - b[0]);
    this.#invs.clear();
    for (const [pasid, inv] of invs) {
      // Nothing of an unbound PASID is cached on the host: its bind or unbind flushed it.
      if (!this.#bound.has(pasid)) continue;
      ok = this.#host(() => {
        const pasidInfo = { flags: InvPasidFlag.PASID, pasid: BigInt(pasid) };
        if (inv.range === null) cacheInvalidate(this.vm.container, { cache: inv.cache, granularity: InvGranularity.PASID, pasidInfo });
        else {
          const r = inv.range;
          cacheInvalidate(this.vm.container, {
            cache: inv.cache,
            granularity: InvGranularity.ADDR,
            addrInfo: { flags: InvAddrFlag.PASID | (r.leaf ? InvAddrFlag.LEAF : 0), pasid: BigInt(pasid), addr: BigInt(r.addr), granuleSize: 4096n, nbGranules: BigInt(2 ** r.am) },
          });
        }
        this.stats.invalidations++;
      }) && ok;
    }
    return ok;
  }

  /** Makes the host's binding of `pasid` match the guest's PASID entry. */
  #syncPasid(pasid: number): boolean {
    const want = this.#guestBinding(pasid);
    const have = this.#bound.get(pasid);
    if (have !== undefined && want !== null && have.gpgd === want.gpgd && have.addrWidth === want.addrWidth && have.flags === want.flags) return true;
    // Drop pending invalidations: the unbind or the new bind flushes the host's caches of the PASID.
    this.#invs.delete(pasid);
    let ok = true;
    if (have !== undefined) {
      ok = this.#host(() => {
        unbindPgtbl(this.vm.container, { hpasid: BigInt(pasid), addrWidth: have.addrWidth });
        this.stats.unbinds++;
      });
      this.#bound.delete(pasid);
    }
    if (want !== null) {
      ok = this.#host(() => {
        // The guest's PASID goes with it (IOMMU_SVA_GPASID_VAL): the host records it as the PASID's SPID in the VM's set, and the
        // IOASID BIND that follows is what KVM's translation for the guest's ENQCMD listens to. Identity this session: guest = host PASID.
        bindPgtbl(this.vm.container, {
          hpasid: BigInt(pasid),
          gpasid: BigInt(pasid),
          flags: BigInt(IOMMU_SVA_GPASID_VAL),
          gpgd: BigInt(want.gpgd),
          addrWidth: want.addrWidth,
          vtd: { flags: BigInt(want.flags) },
        });
        this.#bound.set(pasid, want);
        this.stats.binds++;
      }) && ok;
    }
    return ok;
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
   * The first-level binding the guest's PASID entry asks for, on the
   * assigned device(s): null when no device has a present first-level
   * entry for `pasid` (absent, a hole, not present, another translation
   * type, or a paging mode VT-d does not define).
   */
  #guestBinding(pasid: number): Binding | null {
    if (pasid === 0) return null; // RID_PASID: requests without PASID, the container's second level covers them.
    for (const sid of this.#sids) {
      const e = this.#pasidEntry(sid, pasid);
      if (e === null || PasidEntry.get(e, "P") !== 1 || PasidEntry.get(e, "PGTT") !== Pgtt.FIRST_LEVEL) continue;
      const flpm = PasidEntry.get(e, "FLPM");
      if (flpm > 1) continue;
      let flags = 0;
      if (PasidEntry.get(e, "SRE") === 1) flags |= VtdGpasidFlag.SRE;
      if (PasidEntry.get(e, "EAFE") === 1) flags |= VtdGpasidFlag.EAFE;
      if (PasidEntry.get(e, "WPE") === 1) flags |= VtdGpasidFlag.WPE;
      return { gpgd: PasidEntry.getAddr(e, "FLPTPTR"), addrWidth: flpm === 1 ? 57 : 48, flags };
    }
    return null;
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

