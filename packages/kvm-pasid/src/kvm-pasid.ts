import {
  Errno,
  type FaultInjector,
  type GuestPasid,
  type HostPasid,
  type Ioasid,
  isKernelError,
  KernelError,
  NOTIFY_DONE,
  NOTIFY_OK,
  type RateLimitedLog,
  type TraceBus,
  type VmId,
} from "@vsva/kernel";
import {
  type IoasidCore,
  type IoasidEvent,
  type IoasidNotifierBlock,
  type IoasidNotifyData,
  IoasidPriority,
  type IoasidSet,
} from "@vsva/ioasid";
import type { PhysMem } from "@vsva/pgtable";
import { GP_VECTOR, GUEST_PASID_MAX, Ia32Pasid, VmcsField, VmExitReason } from "./layout.js";
import { PasidTranslationTable, type TablePageSource, type TranslationMiss } from "./translation-table.js";
import "./trace-events.js";

export interface KvmPasidOptions {
  readonly vm: VmId;
  /**
   * The VM's mm token: the token VFIO gives the VM's IOASID set. KVM registers
   * its notifier by this token, so it may start before the set exists.
   */
  readonly mm: object;
  readonly ioasid: IoasidCore;
  /** Host memory, where the translation structure lives. */
  readonly mem: PhysMem;
  /** Where the structure's pages come from (a VMM: host pages). */
  readonly pages: TablePageSource;
  readonly trace: TraceBus;
  readonly faults: FaultInjector;
  /** Rate-limited log for notifications a guest can provoke and KVM must ignore. */
  readonly log?: RateLimitedLog;
}

/** A fault the guest (#GP) or its VMM (a VM exit) receives; the host goes on untouched. */
export type GuestFault =
  | { readonly kind: "GP"; readonly vector: typeof GP_VECTOR; readonly errorCode: 0; readonly reason: string }
  | {
      readonly kind: "VMEXIT";
      readonly exitReason: VmExitReason;
      readonly guestPasid: GuestPasid;
      readonly miss: TranslationMiss;
    };

/**
 * The outcome of an ENQCMD/ENQCMDS PASID translation. On success the CPU puts
 * `hostPasid` in bits 19:0 of the enqueued payload. `reads` counts the
 * structure reads that went through the memory bus.
 */
export type EnqcmdResult =
  | { readonly ok: true; readonly guestPasid: GuestPasid; readonly hostPasid: HostPasid; readonly reads: number }
  | { readonly ok: false; readonly fault: GuestFault; readonly reads: number };

/** The outcome of a guest WRMSR to IA32_PASID: the value the MSR now holds, or #GP. */
export type MsrWriteResult = { readonly ok: true; readonly value: number } | { readonly ok: false; readonly fault: GuestFault };

interface Translation {
  readonly gpasid: GuestPasid;
  readonly hpasid: HostPasid;
  readonly set: IoasidSet;
  /** BINDs seen for this pair; only the first installs and only the last UNBIND removes. */
  binds: number;
}

function gp(reason: string): GuestFault {
  return { kind: "GP", vector: GP_VECTOR, errorCode: 0, reason };
}

/** Runs `fn`; returns the KernelError it threw, or null. Anything else is a bug and propagates. */
function attempt(fn: () => void): KernelError | null {
  try {
    fn();
    return null;
  } catch (e) {
    if (isKernelError(e)) return e;
    throw e;
  }
}

/**
 * An MSR value as two dwords. Errors: EINVAL for a value no 64-bit register
 * can hold (negative, fractional, beyond 2^64, or a number beyond 2^53 that
 * JavaScript cannot hold exactly).
 */
function msrDwords(value: bigint | number): Uint32Array {
  if (typeof value === "bigint") {
    if (value < 0n || value >= 1n << 64n) throw new KernelError(Errno.EINVAL, `MSR value ${value} is not a u64`);
    return Uint32Array.of(Number(value & 0xffff_ffffn), Number(value >> 32n));
  }
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    throw new KernelError(Errno.EINVAL, `MSR value ${String(value)} is not an exact u64 (pass a bigint beyond 2^53)`);
  }
  return Uint32Array.of(value >>> 0, Math.floor(value / 2 ** 32) >>> 0);
}

/**
 * KVM's ENQCMD support for one VM: the guest->host PASID translation
 * structure in host memory (VMCS "low/high PASID directory address"), kept in
 * step with the VM's IOASID set by a notifier at CPU priority, and the
 * translation a guest ENQCMD gets.
 *
 * The life-cycle rules it follows are those of the IOASID design (the
 * "KVM PASID Translation Table Updates" section of the proposed
 * `Documentation/driver-api/ioasid.rst`, vSVA series on the iommu list, 2020):
 * - it registers per VM, at launch, by mm token, so its notifier waits until
 *   VFIO creates the VM's set and follows that set (and the token's next one);
 * - BIND installs guest PASID -> host PASID and takes an IOASID reference;
 *   UNBIND removes it and puts the reference; FREE does the same, in the
 *   atomic handler (KVM's update is the one in-order completion of FREE);
 * - only the first BIND and the last UNBIND of a PASID change the structure
 *   (ioasid notifies once per SPID attach/detach; a publisher that notified
 *   per device would be absorbed by the bind count);
 * - the notification data is trusted for the mapping (IOASID guarantees it),
 *   but an UNBIND is checked against the IOASID: once FREE has started,
 *   `ioasid_find` fails (ENOENT) and KVM changes nothing;
 * - VM teardown drops every reference still held.
 * A notification KVM cannot act on (no page for a new table, a guest PASID
 * beyond 20 bits) leaves everything as it was and is logged: the only
 * consequence is that the guest's ENQCMD with that PASID exits, which stays
 * inside the guest's own resources.
 */
export class KvmPasid {
  readonly vm: VmId;
  readonly notifier: IoasidNotifierBlock;
  readonly #opts: KvmPasidOptions;
  readonly #table: PasidTranslationTable;
  readonly #byGuest = new Map<number, Translation>();
  readonly #byHost = new Map<number, Translation>();
  #live = true;

  /**
   * Builds the (empty) translation structure and registers the notifier by mm
   * token. Errors: ENOMEM (fault points `kvm_pasid.table_page`,
   * `ioasid.notifier_mm`); EIO bad page from the source; EEXIST/EBUSY from
   * the registration (the set already owns IDs: events would be lost).
   * Nothing is held on failure.
   */
  constructor(opts: KvmPasidOptions) {
    this.vm = opts.vm;
    this.#opts = opts;
    this.notifier = { priority: IoasidPriority.CPU, call: (event, data) => this.#onEvent(event, data) };
    this.#table = new PasidTranslationTable(opts.mem, opts.pages, opts.faults);
    const err = attempt(() => opts.ioasid.registerNotifierMm(opts.mm, this.notifier));
    if (err !== null) {
      this.#table.destroy();
      throw err;
    }
  }

  /** The value of a VMCS PASID-directory field: the host physical address of that directory. */
  vmcsRead(field: VmcsField): number {
    this.#checkLive();
    return field === VmcsField.LOW_PASID_DIR_ADDR ? this.#table.dirs.low : this.#table.dirs.high;
  }

  /** Pages the structure holds now (0 after `destroy`). */
  get pages(): number {
    return this.#table.pages;
  }

  /** IOASID references KVM holds: one per installed translation. */
  get references(): number {
    return this.#byHost.size;
  }

  /** The translations as KVM keeps them (guest PASID -> host PASID). */
  translations(): Map<GuestPasid, HostPasid> {
    return new Map([...this.#byGuest.values()].map((t) => [t.gpasid, t.hpasid]));
  }

  /** The translations as the CPU would find them in memory. */
  readTable(): Map<GuestPasid, HostPasid> {
    this.#checkLive();
    return this.#table.read();
  }

  /**
   * A guest WRMSR to IA32_PASID. #GP when a reserved bit (30:20, 63:32) is
   * set. Errors: EINVAL a value that is not a u64.
   */
  wrmsrPasid(value: bigint | number): MsrWriteResult {
    this.#checkLive();
    const v = msrDwords(value);
    if (Ia32Pasid.hasReservedBits(v)) return { ok: false, fault: this.#fault("WRMSR", gp("reserved bit set in IA32_PASID"), null) };
    return { ok: true, value: v[0] ?? 0 };
  }

  /**
   * ENQCMD in the guest: the PASID of the submitting thread (its IA32_PASID
   * value) translated through the structure. #GP when IA32_PASID.VALID is
   * clear; VM exit 72 when the guest PASID has no valid translation. Errors:
   * EINVAL a value IA32_PASID cannot hold (not a u64, or reserved bits set:
   * its WRMSR would have faulted).
   */
  enqcmd(msrValue: bigint | number): EnqcmdResult {
    this.#checkLive();
    const v = msrDwords(msrValue);
    if (Ia32Pasid.hasReservedBits(v)) throw new KernelError(Errno.EINVAL, "IA32_PASID cannot hold reserved bits");
    if (Ia32Pasid.get(v, "VALID") === 0) return { ok: false, fault: this.#fault("ENQCMD", gp("IA32_PASID.VALID is clear"), null), reads: 0 };
    return this.#translate("ENQCMD", Ia32Pasid.get(v, "PASID") as GuestPasid);
  }

  /**
   * ENQCMDS in the guest kernel: the PASID comes from the source operand's
   * bits 19:0, translated the same way; VM exit 73 on failure.
   * Errors: EINVAL a PASID beyond 20 bits.
   */
  enqcmds(pasid: number): EnqcmdResult {
    this.#checkLive();
    if (!Number.isInteger(pasid) || pasid < 0 || pasid > GUEST_PASID_MAX) {
      throw new KernelError(Errno.EINVAL, `ENQCMDS PASID ${pasid} is not 20 bits`);
    }
    return this.#translate("ENQCMDS", pasid as GuestPasid);
  }

  /**
   * VM teardown: unregisters the notifier, invalidates every translation and
   * puts every reference still held, then frees every page. Idempotent.
   */
  destroy(): void {
    if (!this.#live) return;
    this.#live = false;
    const { ioasid, mm } = this.#opts;
    const err = attempt(() => ioasid.unregisterNotifierMm(mm, this.notifier));
    if (err !== null) this.#opts.log?.warn("kvm.pasid.teardown", `KVM notifier was not registered: ${err.message}`, "KVM");
    for (const t of [...this.#byHost.values()]) this.#drop(t, "TEARDOWN");
    this.#table.destroy();
  }

  // ---------------------------------------------------------------- internals

  #translate(instruction: "ENQCMD" | "ENQCMDS", gpasid: GuestPasid): EnqcmdResult {
    const stats = this.#opts.mem.stats;
    const before = stats.reads;
    const w = this.#table.walk(gpasid);
    const reads = stats.reads - before;
    if (w.ok) return { ok: true, guestPasid: gpasid, hostPasid: w.hostPasid, reads };
    const exitReason =
      instruction === "ENQCMD" ? VmExitReason.ENQCMD_PASID_TRANSLATION_FAILURE : VmExitReason.ENQCMDS_PASID_TRANSLATION_FAILURE;
    const fault: GuestFault = { kind: "VMEXIT", exitReason, guestPasid: gpasid, miss: w.miss };
    return { ok: false, fault: this.#fault(instruction, fault, gpasid), reads };
  }

  #fault(instruction: "ENQCMD" | "ENQCMDS" | "WRMSR", fault: GuestFault, gpasid: GuestPasid | null): GuestFault {
    this.#opts.trace.emit(
      "kvm.pasid.translate-fault",
      "KVM",
      gpasid === null ? { vm: this.vm } : { vm: this.vm, gpasid },
      {
        instruction,
        fault: fault.kind,
        exitReason: fault.kind === "VMEXIT" ? fault.exitReason : null,
        reason: fault.kind === "VMEXIT" ? fault.miss : fault.reason,
      },
    );
    return fault;
  }

  /** The notifier (atomic context): never throws, whatever the data. */
  #onEvent(event: IoasidEvent, data: IoasidNotifyData): number {
    if (!this.#live) return NOTIFY_DONE;
    switch (event) {
      case "BIND":
        return this.#bind(data);
      case "UNBIND":
        return this.#unbind(data);
      case "FREE": {
        const t = this.#byHost.get(data.id);
        if (t === undefined) return NOTIFY_DONE;
        this.#drop(t, "FREE");
        return NOTIFY_OK;
      }
      default:
        return NOTIFY_DONE;
    }
  }

  #bind(data: IoasidNotifyData): number {
    if (data.spid === null) return this.#ignore("BIND", data, Errno.EINVAL, "no guest PASID attached");
    const g = data.spid as number as GuestPasid;
    const h = data.id as number as HostPasid;
    const cur = this.#byGuest.get(g);
    if (cur !== undefined) {
      if (cur.hpasid !== h || cur.set !== data.set) return this.#ignore("BIND", data, Errno.EEXIST, `guest PASID ${g} translates to ${cur.hpasid}`);
      cur.binds++;
      return NOTIFY_OK;
    }
    if (this.#byHost.has(h)) return this.#ignore("BIND", data, Errno.EEXIST, `host PASID ${h} is bound to another guest PASID`);
    if (g > GUEST_PASID_MAX) return this.#ignore("BIND", data, Errno.EINVAL, `guest PASID ${g} is beyond the 20 bits ENQCMD carries`);
    let err = attempt(() => this.#opts.ioasid.get(data.set, data.id));
    if (err !== null) return this.#ignore("BIND", data, err.errno, err.message);
    err = attempt(() => this.#table.install(g, h));
    if (err !== null) {
      // Give back the reference just taken: the ID is ACTIVE and its owner still holds one, so this cannot reclaim.
      this.#put(data.set, data.id);
      return this.#ignore("BIND", data, err.errno, err.message);
    }
    const t: Translation = { gpasid: g, hpasid: h, set: data.set, binds: 1 };
    this.#byGuest.set(g, t);
    this.#byHost.set(h, t);
    this.#opts.trace.emit("kvm.pasid.install", "KVM", { vm: this.vm, gpasid: g, hpasid: h }, {}, this.#refcount(data.id));
    return NOTIFY_OK;
  }

  #unbind(data: IoasidNotifyData): number {
    // Once FREE has begun the ID takes no new users: find fails with ENOENT, even before it is reclaimed.
    const err = attempt(() => this.#opts.ioasid.find(data.set, data.id));
    if (err !== null) return this.#ignore("UNBIND", data, err.errno, err.message);
    const t = this.#byHost.get(data.id);
    if (t === undefined) return NOTIFY_DONE;
    t.binds--;
    if (t.binds > 0) return NOTIFY_OK;
    this.#drop(t, "UNBIND");
    return NOTIFY_OK;
  }

  /** Invalidates `t` in memory, forgets it, puts KVM's reference. */
  #drop(t: Translation, cause: "UNBIND" | "FREE" | "TEARDOWN"): void {
    this.#table.remove(t.gpasid);
    this.#byGuest.delete(t.gpasid);
    this.#byHost.delete(t.hpasid);
    const id = t.hpasid as number as Ioasid;
    this.#put(t.set, id);
    this.#opts.trace.emit("kvm.pasid.remove", "KVM", { vm: this.vm, gpasid: t.gpasid, hpasid: t.hpasid }, { cause }, this.#refcount(id));
  }

  #put(set: IoasidSet, id: Ioasid): void {
    const err = attempt(() => this.#opts.ioasid.put(set, id));
    if (err !== null) this.#opts.log?.warn("kvm.pasid.put", `KVM could not put IOASID ${id}: ${err.message}`, "KVM");
  }

  #refcount(id: Ioasid): number {
    let n = 0;
    attempt(() => {
      n = this.#opts.ioasid.refcount(id);
    });
    return n;
  }

  #ignore(event: IoasidEvent, data: IoasidNotifyData, errno: number, reason: string): number {
    const ids = data.spid === null ? { vm: this.vm, hpasid: data.id } : { vm: this.vm, hpasid: data.id, gpasid: data.spid };
    this.#opts.trace.emit("kvm.pasid.ignored", "KVM", ids, { event, errno, reason });
    this.#opts.log?.warn(`kvm.pasid.${event}`, `KVM ignores ${event} of IOASID ${data.id}: ${reason}`, "KVM");
    return NOTIFY_DONE;
  }

  #checkLive(): void {
    if (!this.#live) throw new KernelError(Errno.EINVAL, `VM ${this.vm} is destroyed`);
  }
}
