import {
  Errno,
  type FaultInjector,
  type Ioasid,
  isKernelError,
  KernelError,
  type RateLimitedLog,
  type Scheduler,
  type Spid,
  type TraceBus,
  type Work,
  type Workqueue,
} from "@vsva/kernel";
import { AllocatorRegistry } from "./allocators.js";
import { IdBitmap } from "./id-bitmap.js";
import { FLAG_OWNER_REF, FLAG_SPID, IdState, IdTable, listAppend, listIds, listRemove, STATE_MASK } from "./id-table.js";
import { checkBlock, IoasidNotifiers } from "./notifiers.js";
import { SetState } from "./set.js";
import type {
  IoasidAllocatorOps,
  IoasidEvent,
  IoasidInfo,
  IoasidNotifierBlock,
  IoasidNotifyData,
  IoasidSet,
  IoasidSetType,
  IoasidState,
} from "./types.js";
import "./trace-events.js";

export interface IoasidCoreOptions {
  readonly scheduler: Scheduler;
  readonly trace: TraceBus;
  readonly faults: FaultInjector;
  /** Rate-limited log for failures a guest or user space can trigger (optional). */
  readonly log?: RateLimitedLog;
  /**
   * IDs the namespace holds: 1..capacity (PASID 0 is reserved for requests
   * without PASID and never allocated). Default 2^20 − 1, the PCIe 20-bit PASID
   * space; at most that.
   */
  readonly capacity?: number;
  /** Names this core's workqueue (`<name>_wq`) when several cores share one scheduler. */
  readonly name?: string;
}

export interface IoasidSnapshot {
  readonly available: number;
  readonly allocated: number;
  readonly systemNotifiers: number;
  readonly customAllocator: boolean;
  readonly sets: readonly {
    readonly id: number;
    readonly type: IoasidSetType;
    readonly quota: number;
    readonly count: number;
    readonly refcount: number;
    readonly alive: boolean;
    readonly notifiers: number;
  }[];
  readonly ids: readonly {
    readonly id: Ioasid;
    readonly state: IoasidState;
    readonly refcount: number;
    readonly set: number;
    readonly spid: Spid | null;
    readonly private: unknown;
  }[];
}

/** 20-bit PCIe PASIDs without PASID 0. */
export const IOASID_DEFAULT_CAPACITY = 0xf_ffff;
/** `INVALID_IOASID` / `IOMMU_PASID_INVALID`: never a valid ID or SPID. */
export const INVALID_IOASID = 0xffff_ffff;

const STATE_NAMES: readonly IoasidState[] = ["IDLE", "ACTIVE", "FREE_PENDING"];
const NO_PAYLOAD = Object.freeze({});

function isU32(n: number): boolean {
  return Number.isInteger(n) && n >= 0 && n <= 0xffff_ffff;
}

/**
 * One host's (or one guest's) IOASID namespace: drivers/iommu/ioasid.c as
 * extended for guest SVA ("IOASID extensions for guest SVA", iommu list, 2020). Never a global: each kernel instance owns one.
 *
 * Conventions: every operation either succeeds or throws a `KernelError`
 * with the errno the kernel would return and leaves the state unchanged. A
 * set handle that this core did not create, or whose set no longer exists, is
 * EINVAL. An ID outside 1..capacity is EINVAL; an ID inside it that is not
 * allocated is ENOENT. Naming a set that does not own the ID is EACCES for
 * every operation — the errno the extended design's `ioasid_find` and
 * `ioasid_get_locked` use for "outside the set" — so ownership failures look
 * the same whatever was attempted. Lookups that accept `null` for the set
 * skip the ownership check, as upstream does for system-wide users (the IOMMU
 * driver); only get, put and find accept it.
 */
export class IoasidCore {
  readonly capacity: number;
  /** `ioasid_wq`: where notifier handlers that must sleep queue their work. */
  readonly workqueue: Workqueue;
  readonly #trace: TraceBus;
  readonly #faults: FaultInjector;
  readonly #log: RateLimitedLog | undefined;
  readonly #table: IdTable;
  readonly #bitmap: IdBitmap;
  readonly #sets: (SetState | undefined)[] = [undefined];
  readonly #freeSids: number[] = [];
  readonly #mmSets = new Map<unknown, SetState>();
  readonly #notifiers: IoasidNotifiers;
  readonly #allocators = new AllocatorRegistry();
  /** Capacity not yet promised to a set's quota. */
  #available: number;

  constructor(opts: IoasidCoreOptions) {
    const capacity = opts.capacity ?? IOASID_DEFAULT_CAPACITY;
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > IOASID_DEFAULT_CAPACITY) {
      throw new KernelError(Errno.EINVAL, `IOASID capacity ${capacity} must be an integer in [1, ${IOASID_DEFAULT_CAPACITY}]`);
    }
    this.capacity = capacity;
    this.#available = capacity;
    this.#trace = opts.trace;
    this.#faults = opts.faults;
    this.#log = opts.log;
    this.#table = new IdTable(capacity + 1);
    this.#bitmap = new IdBitmap(capacity + 1);
    this.#bitmap.set(0); // PASID 0 (RID_PASID / IOMMU_NO_PASID) is never handed out.
    this.#notifiers = new IoasidNotifiers(opts.scheduler.atomic);
    this.workqueue = opts.scheduler.createWorkqueue(`${opts.name ?? "ioasid"}_wq`);
  }

  /** Capacity not yet given to any set's quota. */
  get available(): number {
    return this.#available;
  }

  /** IDs allocated now (ACTIVE or FREE_PENDING), across all sets. */
  get allocated(): number {
    return this.#bitmap.used - 1;
  }

  // ---------------------------------------------------------------- sets

  /**
   * `ioasid_set_alloc`. The quota is taken out of the system's available
   * capacity. Quota 0 means "all that remains" (decision, following the
   * extended ioasid.c, whose VFIO user created its per-mm sets with quota 0);
   * if nothing remains that is ENOSPC rather than a set that can never
   * allocate. The set starts with one reference.
   *
   * Errors: EINVAL bad type, quota or mm token (null/undefined); ENOSPC quota
   * beyond the available capacity; EEXIST a live mm set has this token;
   * ENOMEM (fault point `ioasid.set_alloc`).
   */
  allocSet(token: unknown, quota: number, type: IoasidSetType): IoasidSet {
    // Callers outside TypeScript's reach (a VMM parsing user input) can pass anything.
    const kind: string = type;
    if (kind !== "none" && kind !== "mm") throw new KernelError(Errno.EINVAL, `unknown IOASID set type ${kind}`);
    if (!isU32(quota)) throw new KernelError(Errno.EINVAL, `quota ${quota} is not a u32`);
    const q = quota === 0 ? this.#available : quota;
    if (q === 0 || q > this.#available) {
      throw new KernelError(Errno.ENOSPC, `out of IOASID capacity: asked ${quota}, available ${this.#available}`);
    }
    if (type === "mm") {
      if (token === null || token === undefined) throw new KernelError(Errno.EINVAL, "an mm set needs an mm token");
      if (this.#mmSets.has(token)) throw new KernelError(Errno.EEXIST, "an IOASID set with this mm token exists");
    }
    this.#faults.inject("ioasid.set_alloc");
    const sid = this.#freeSids.pop() ?? this.#sets.length;
    const s = new SetState(sid, token, type, q, this.#notifiers.atomicContext);
    this.#sets[sid] = s;
    this.#available -= q;
    this.#trace.emit("ioasid.set.alloc", "IOASID", { set: sid }, { type, quota: q, available: this.#available });
    if (type === "mm") {
      this.#mmSets.set(token, s);
      const n = this.#notifiers.activate(s);
      if (n > 0) this.#trace.emit("ioasid.notifier.mm", "IOASID", { set: sid }, { active: true, count: n });
    }
    return s;
  }

  /**
   * `ioasid_adjust_set`: change the quota, returning the difference to (or
   * taking it from) the available capacity.
   *
   * Errors: EINVAL unknown/dead set, quota 0 (the review: "0 is not supported",
   * unlike at allocation) or below the IDs the set owns now; ENOSPC growth
   * beyond the available capacity.
   */
  adjustSet(set: IoasidSet, quota: number): void {
    const s = this.#liveSet(set);
    if (!isU32(quota) || quota === 0) throw new KernelError(Errno.EINVAL, `quota ${quota} must be a u32 >= 1`);
    if (quota < s.count) throw new KernelError(Errno.EINVAL, `new quota ${quota} is below the ${s.count} IOASIDs outstanding`);
    const delta = quota - s.quota;
    if (delta > this.#available) {
      throw new KernelError(Errno.ENOSPC, `cannot grow quota by ${delta}: ${this.#available} available`);
    }
    const from = s.quota;
    this.#available -= delta;
    s.quota = quota;
    this.#trace.emit("ioasid.set.adjust", "IOASID", { set: s.id }, { from, to: quota, available: this.#available });
  }

  /** `ioasid_set_get`. EINVAL unknown or dead set. */
  setGet(set: IoasidSet): void {
    const s = this.#liveSet(set);
    s.refcount++;
    this.#trace.emit("ioasid.set.get", "IOASID", { set: s.id }, NO_PAYLOAD, s.refcount);
  }

  /**
   * `ioasid_set_put`. Dropping the last reference destroys the set: its token
   * is released at once (a new set may take it), every ID it owns is freed
   * (FREE notified to its subscribers first), its mm notifier registrations
   * go back to pending, and its quota returns to the system when its last ID
   * is reclaimed. EINVAL unknown or dead set.
   */
  setPut(set: IoasidSet): void {
    const s = this.#liveSet(set);
    s.refcount--;
    this.#trace.emit("ioasid.set.put", "IOASID", { set: s.id }, NO_PAYLOAD, s.refcount);
    if (s.refcount > 0) return;
    s.alive = false;
    if (s.type === "mm") this.#mmSets.delete(s.token);
    this.#freeAll(s);
    const n = this.#notifiers.deactivate(s);
    if (n > 0) this.#trace.emit("ioasid.notifier.mm", "IOASID", { set: s.id }, { active: false, count: n });
    this.#trace.emit("ioasid.set.dead", "IOASID", { set: s.id }, { remaining: s.count });
    if (s.count === 0) this.#releaseSet(s);
  }

  /**
   * `ioasid_free_all_in_set`: frees every ACTIVE ID of the set, as `free`
   * would (never fails for the owner). Returns how many changed state.
   */
  freeSet(set: IoasidSet): number {
    return this.#freeAll(this.#setOf(set));
  }

  /**
   * `ioasid_set_for_each_ioasid`: calls `fn` for each ID the set owns
   * (ACTIVE or FREE_PENDING), in ascending order as an xarray walk would.
   * It iterates a snapshot, so `fn` may free or put.
   */
  setForEachIoasid(set: IoasidSet, fn: (id: Ioasid, priv: unknown) => void): void {
    const s = this.#setOf(set);
    const ids = listIds(this.#table, s.ids).sort((a, b) => a - b);
    for (const id of ids) {
      if ((this.#table.set[id] ?? 0) === s.id && this.#table.stateOf(id) !== IdState.IDLE) fn(id as Ioasid, this.#table.priv[id]);
    }
  }

  /**
   * The live set created with `token`: for "mm" the unique one, for "none"
   * the oldest. Takes no reference. Null when there is none.
   */
  findSetByToken(token: unknown, type: IoasidSetType = "mm"): IoasidSet | null {
    if (type === "mm") return this.#mmSets.get(token) ?? null;
    for (const s of this.#sets) {
      if (s?.alive === true && s.type === "none" && s.token === token) return s;
    }
    return null;
  }

  // ---------------------------------------------------------------- IDs

  /**
   * `ioasid_alloc`: the lowest free ID in [min, max] (clamped to
   * 1..capacity), owned by `set`, with one reference (the owner's, dropped by
   * `free`). Notifies ALLOC. With a custom allocator registered, the allocator
   * chooses the ID.
   *
   * Errors: EINVAL unknown/dead set, min/max not u32, min > max, or the range
   * entirely outside 1..capacity; ENOSPC set quota exhausted or no free ID in
   * range; ENOMEM (fault points `ioasid.alloc`, `ioasid.alloc.store`); EIO a
   * custom allocator returned an ID out of range or already in use; any errno
   * a custom allocator fails with.
   */
  alloc(set: IoasidSet, min: number, max: number, priv?: unknown): Ioasid {
    const s = this.#liveSet(set);
    if (!isU32(min) || !isU32(max) || min > max) throw new KernelError(Errno.EINVAL, `bad IOASID range [${min}, ${max}]`);
    const lo = min < 1 ? 1 : min;
    const hi = max > this.capacity ? this.capacity : max;
    if (lo > hi) throw new KernelError(Errno.EINVAL, `range [${min}, ${max}] is outside 1..${this.capacity}`);
    if (s.count >= s.quota) {
      this.#log?.warn("ioasid.quota", "IOASID set out of quota", "IOASID");
      throw new KernelError(Errno.ENOSPC, `IOASID set ${s.id} out of quota (${s.quota})`);
    }
    this.#faults.inject("ioasid.alloc");
    const custom = this.#allocators.active;
    let id: number;
    if (custom === null) {
      id = this.#bitmap.findNextZero(lo, hi);
      if (id < 0) throw new KernelError(Errno.ENOSPC, `no free IOASID in [${lo}, ${hi}]`);
    } else {
      id = this.#customAlloc(custom, lo, hi);
    }
    const t = this.#table;
    this.#bitmap.set(id);
    t.ensure(id);
    t.state[id] = IdState.ACTIVE | FLAG_OWNER_REF;
    t.refs[id] = 1;
    t.set[id] = s.id;
    t.priv[id] = priv;
    listAppend(t, s.ids, id);
    s.count++;
    this.#trace.emit("ioasid.alloc", "IOASID", { ioasid: id, set: s.id }, { min, max, custom: custom !== null }, 1);
    this.#notify(s, id, "ALLOC");
    return id as Ioasid;
  }

  /**
   * `ioasid_get`: takes a reference.
   * Errors: EINVAL bad ID or set; ENOENT not allocated or FREE_PENDING (no new
   * references once free has been called); EACCES another set owns it.
   */
  get(set: IoasidSet | null, id: Ioasid): void {
    this.#lookup(set, id, "get");
    const refs = (this.#table.refs[id] ?? 0) + 1;
    this.#table.refs[id] = refs;
    this.#trace.emit("ioasid.get", "IOASID", { ioasid: id, set: this.#table.set[id] ?? 0 }, { bySpid: false }, refs);
  }

  /**
   * `ioasid_put`: drops a reference; returns true when that reclaimed the ID
   * (returned to the pool). Allowed on FREE_PENDING IDs — that is how holders
   * let go after FREE.
   * Errors: EINVAL bad ID or set, or a put without a reference (only the
   * owner's allocation reference is left; it is dropped by `free`); ENOENT not
   * allocated; EACCES another set owns it.
   */
  put(set: IoasidSet | null, id: Ioasid): boolean {
    const t = this.#table;
    this.#owned(set, id, "put");
    const refs = t.refs[id] ?? 0;
    if (((t.state[id] ?? 0) & FLAG_OWNER_REF) !== 0 && refs <= 1) {
      throw new KernelError(Errno.EINVAL, `put of IOASID ${id} without a reference (only the owner's remains; use free)`);
    }
    t.refs[id] = refs - 1;
    this.#trace.emit("ioasid.put", "IOASID", { ioasid: id, set: t.set[id] ?? 0 }, NO_PAYLOAD, refs - 1);
    if (refs - 1 > 0) return false;
    this.#reclaim(id);
    return true;
  }

  /**
   * `ioasid_free`: always succeeds for the owner. Marks the ID FREE_PENDING
   * (no new references), notifies FREE — once, however often free is called —
   * with the owner's reference still counted, then drops the owner's
   * reference. The ID is reclaimed when the last reference goes, possibly
   * right here. Returns whether it was reclaimed by this call.
   *
   * FREE is sent on every ACTIVE -> FREE_PENDING transition, including when
   * the owner holds the only reference (the extended ioasid.c skipped it
   * then): level sensitivity is per transition, and a subscriber that counts
   * ALLOCs needs the matching FREEs.
   *
   * Errors: EINVAL bad ID or set; ENOENT not allocated; EACCES another set owns it.
   */
  free(set: IoasidSet, id: Ioasid): boolean {
    const s = this.#owned(set, id, "free");
    if (this.#table.stateOf(id) === IdState.FREE_PENDING) return false;
    return this.#freeOne(s, id);
  }

  /**
   * `ioasid_find`: the private data of an ID. With `getter`, returns null when
   * the getter refuses the data (upstream's "object no longer valid").
   * Errors: EINVAL bad ID or set; ENOENT not allocated or FREE_PENDING;
   * EACCES another set owns it.
   */
  find(set: IoasidSet | null, id: Ioasid, getter?: (priv: unknown) => boolean): unknown {
    this.#lookup(set, id, "find");
    const p = this.#table.priv[id];
    if (getter !== undefined && !getter(p)) return null;
    return p;
  }

  /**
   * `ioasid_find_by_spid`: the IOASID a set's private ID maps to, taking a
   * reference (as step 10 of the ioasid.rst guest life-cycle table) unless `get` is false.
   * Errors: EINVAL bad set or SPID; ENOENT no such SPID in the set, or its
   * IOASID is FREE_PENDING.
   */
  findBySpid(set: IoasidSet, spid: Spid, get = true): Ioasid {
    const s = this.#setOf(set);
    if (!isU32(spid) || spid === INVALID_IOASID) throw new KernelError(Errno.EINVAL, `bad SPID ${spid}`);
    const id = s.spids.get(spid);
    if (id === undefined) throw new KernelError(Errno.ENOENT, `no SPID ${spid} in IOASID set ${s.id}`);
    if (this.#table.stateOf(id) !== IdState.ACTIVE) throw new KernelError(Errno.ENOENT, `IOASID of SPID ${spid} is being freed`);
    if (get) {
      const refs = (this.#table.refs[id] ?? 0) + 1;
      this.#table.refs[id] = refs;
      this.#trace.emit("ioasid.get", "IOASID", { ioasid: id, set: s.id, gpasid: spid }, { bySpid: true }, refs);
    }
    return id as Ioasid;
  }

  /**
   * `ioasid_attach_data`: sets the private data; `null`/`undefined` clears it
   * (`ioasid_detach_data`). Clearing is allowed on a FREE_PENDING ID (a FREE
   * handler deletes its data); setting is not.
   * Errors: EINVAL bad ID or set; ENOENT not allocated, or FREE_PENDING when
   * setting; EACCES another set owns it; EBUSY data already attached (as the
   * extended ioasid.c: clear it first, so two users cannot clobber each other).
   */
  attachData(set: IoasidSet, id: Ioasid, data: unknown): void {
    const s = this.#owned(set, id, "attach data to");
    const t = this.#table;
    const clearing = data === null || data === undefined;
    if (!clearing) {
      if (t.stateOf(id) !== IdState.ACTIVE) throw new KernelError(Errno.ENOENT, `IOASID ${id} is being freed`);
      if (t.priv[id] !== null && t.priv[id] !== undefined) {
        throw new KernelError(Errno.EBUSY, `IOASID ${id} already has private data`);
      }
    }
    t.priv[id] = clearing ? undefined : data;
    this.#trace.emit("ioasid.data.attach", "IOASID", { ioasid: id, set: s.id }, { cleared: clearing }, t.refs[id] ?? 0);
  }

  /**
   * `ioasid_attach_spid`: gives an ID its set-private alias and notifies BIND
   * (once: an ID has at most one SPID). SPIDs are unique within a set; two
   * sets may use the same SPID for different IDs.
   * Errors: EINVAL bad ID, set or SPID (INVALID_IOASID); ENOENT not allocated
   * or FREE_PENDING; EACCES another set owns it; EBUSY the ID already has a
   * different SPID; EEXIST the SPID is in use in the set; ENOMEM (fault point
   * `ioasid.attach_spid`).
   */
  attachSpid(set: IoasidSet, id: Ioasid, spid: Spid): void {
    if (!isU32(spid) || spid === INVALID_IOASID) throw new KernelError(Errno.EINVAL, `bad SPID ${spid}`);
    const s = this.#owned(set, id, "attach SPID to");
    const t = this.#table;
    if (!s.alive) throw new KernelError(Errno.EINVAL, `IOASID set ${s.id} is being destroyed`);
    if (t.stateOf(id) !== IdState.ACTIVE) throw new KernelError(Errno.ENOENT, `IOASID ${id} is being freed`);
    if (((t.state[id] ?? 0) & FLAG_SPID) !== 0 && t.spid[id] !== spid) {
      throw new KernelError(Errno.EBUSY, `IOASID ${id} already has SPID ${t.spid[id] ?? 0}`);
    }
    if (s.spids.has(spid)) throw new KernelError(Errno.EEXIST, `SPID ${spid} is in use in IOASID set ${s.id}`);
    this.#faults.inject("ioasid.attach_spid");
    s.spids.set(spid, id);
    t.spid[id] = spid;
    t.state[id] = (t.state[id] ?? 0) | FLAG_SPID;
    this.#trace.emit("ioasid.spid.attach", "IOASID", { ioasid: id, set: s.id, gpasid: spid }, NO_PAYLOAD, t.refs[id] ?? 0);
    this.#notify(s, id, "BIND");
  }

  /**
   * `ioasid_detach_spid`: removes the SPID. Notifies UNBIND (once, with the
   * SPID still visible to the handlers) when the ID is ACTIVE; on a
   * FREE_PENDING ID it detaches silently, because FREE already told every
   * subscriber to tear down ("IOMMU driver will also avoid sending UNBIND if
   * the PASID is already FREE", the KVM rules in the ioasid.rst proposal).
   * Errors: EINVAL bad ID or set, or no SPID attached (a double detach);
   * ENOENT not allocated; EACCES another set owns it.
   */
  detachSpid(set: IoasidSet, id: Ioasid): void {
    const s = this.#owned(set, id, "detach SPID from");
    const t = this.#table;
    if (((t.state[id] ?? 0) & FLAG_SPID) === 0) throw new KernelError(Errno.EINVAL, `IOASID ${id} has no SPID to detach`);
    const spid = t.spid[id] ?? 0;
    const notify = t.stateOf(id) === IdState.ACTIVE;
    if (notify) this.#notify(s, id, "UNBIND");
    // A handler cannot have detached it meanwhile: it would need this very call.
    s.spids.delete(spid);
    t.state[id] = (t.state[id] ?? 0) & ~FLAG_SPID;
    t.spid[id] = 0;
    this.#trace.emit("ioasid.spid.detach", "IOASID", { ioasid: id, set: s.id, gpasid: spid }, { notified: notify }, t.refs[id] ?? 0);
  }

  /** The state of an ID; EINVAL outside 1..capacity. */
  state(id: Ioasid): IoasidState {
    this.#checkId(id);
    return STATE_NAMES[this.#table.stateOf(id)] ?? "IDLE";
  }

  /** References held on an ID (0 when IDLE); EINVAL outside 1..capacity. */
  refcount(id: Ioasid): number {
    this.#checkId(id);
    return this.#table.refs[id] ?? 0;
  }

  /** A snapshot of an allocated ID, or null when IDLE; EINVAL outside 1..capacity. */
  info(id: Ioasid): IoasidInfo | null {
    this.#checkId(id);
    const t = this.#table;
    const st = t.stateOf(id);
    const s = this.#sets[t.set[id] ?? 0];
    if (st === IdState.IDLE || s === undefined) return null;
    return {
      id,
      state: STATE_NAMES[st] ?? "IDLE",
      refcount: t.refs[id] ?? 0,
      set: s,
      spid: ((t.state[id] ?? 0) & FLAG_SPID) !== 0 ? ((t.spid[id] ?? 0) as Spid) : null,
      private: t.priv[id],
    };
  }

  /**
   * Everything observable, as plain data: for invariant checks ("refcounts
   * equal the holders", "nothing leaked") and for tests asserting that a
   * refused operation changed nothing.
   */
  snapshot(): IoasidSnapshot {
    const sets: IoasidSnapshot["sets"][number][] = [];
    const ids: IoasidSnapshot["ids"][number][] = [];
    for (const s of this.#sets) {
      if (s === undefined) continue;
      sets.push({ id: s.id, type: s.type, quota: s.quota, count: s.count, refcount: s.refcount, alive: s.alive, notifiers: s.chain.length });
      for (const id of listIds(this.#table, s.ids)) {
        const info = this.info(id as Ioasid);
        if (info !== null) ids.push({ id: info.id, state: info.state, refcount: info.refcount, set: s.id, spid: info.spid, private: info.private });
      }
    }
    ids.sort((a, b) => a.id - b.id);
    return {
      available: this.#available,
      allocated: this.allocated,
      systemNotifiers: this.#notifiers.system.length,
      customAllocator: this.customAllocatorActive,
      sets,
      ids,
    };
  }

  // ---------------------------------------------------------------- notifiers

  /**
   * `ioasid_register_notifier`: `set` null registers system-wide (all IDs of
   * all sets, e.g. the IOMMU driver), otherwise on one set (e.g. a VM's KVM or
   * VDCM). Events are not replayed, so an mm set accepts registrations only
   * while it owns no IDs (decision: the seed states the rule for mm sets,
   * "to avoid lost events", and it holds for direct registration as much as
   * for the _mm flavour).
   * Errors: EINVAL bad block or set; EEXIST already registered in that
   * scope; EBUSY an mm set that owns IDs.
   */
  registerNotifier(set: IoasidSet | null, nb: IoasidNotifierBlock): void {
    checkBlock(nb);
    if (set === null) {
      this.#notifiers.system.register(nb);
      this.#trace.emit("ioasid.notifier.register", "IOASID", {}, { priority: nb.priority, scope: "system" });
      return;
    }
    const s = this.#liveSet(set);
    if (s.type === "mm" && s.count > 0) {
      throw new KernelError(Errno.EBUSY, `IOASID set ${s.id} is not empty; notifiers on mm sets must register before its first IOASID`);
    }
    s.chain.register(nb);
    this.#trace.emit("ioasid.notifier.register", "IOASID", { set: s.id }, { priority: nb.priority, scope: "set" });
  }

  /**
   * `ioasid_unregister_notifier`. Errors: EINVAL bad set, or a block that was
   * registered by mm token (use `unregisterNotifierMm`); ENOENT not registered.
   */
  unregisterNotifier(set: IoasidSet | null, nb: IoasidNotifierBlock): void {
    if (set === null) {
      this.#notifiers.system.unregister(nb);
      this.#trace.emit("ioasid.notifier.unregister", "IOASID", {}, { priority: nb.priority, scope: "system" });
      return;
    }
    const s = this.#setOf(set);
    if (this.#notifiers.isMmRegistered(s, nb)) {
      throw new KernelError(Errno.EINVAL, "notifier was registered by mm token; unregister it with unregisterNotifierMm");
    }
    s.chain.unregister(nb);
    this.#trace.emit("ioasid.notifier.unregister", "IOASID", { set: s.id }, { priority: nb.priority, scope: "set" });
  }

  /**
   * `ioasid_register_notifier_mm`: registers on the set whose mm token is
   * `mm`; if there is none yet, the block waits on a pending list and is
   * registered when such a set is created (and goes back to pending when that
   * set dies). The caller needs no set reference.
   * Errors: EINVAL bad block or token; EEXIST this block is already registered
   * for this token (the extended ioasid.c said EBUSY; EEXIST matches every
   * other double registration here); EBUSY the set exists and owns IDs;
   * ENOMEM (fault point `ioasid.notifier_mm`).
   */
  registerNotifierMm(mm: unknown, nb: IoasidNotifierBlock): void {
    checkBlock(nb);
    if (mm === null || mm === undefined) throw new KernelError(Errno.EINVAL, "mm token is required");
    if (this.#notifiers.findMm(mm, nb) !== undefined) {
      throw new KernelError(Errno.EEXIST, "notifier block already registered for this mm");
    }
    const s = this.#mmSets.get(mm) ?? null;
    if (s !== null && s.count > 0) {
      throw new KernelError(Errno.EBUSY, `IOASID set ${s.id} of this mm is not empty`);
    }
    this.#faults.inject("ioasid.notifier_mm");
    this.#notifiers.addMm(mm, nb, s);
    this.#trace.emit(
      "ioasid.notifier.register",
      "IOASID",
      s === null ? {} : { set: s.id },
      { priority: nb.priority, scope: s === null ? "mm-pending" : "set" },
    );
  }

  /** `ioasid_unregister_notifier_mm`, pending or active. ENOENT not registered for this token. */
  unregisterNotifierMm(mm: unknown, nb: IoasidNotifierBlock): void {
    const reg = this.#notifiers.findMm(mm, nb);
    if (reg === undefined) throw new KernelError(Errno.ENOENT, "notifier block not registered for this mm");
    const s = reg.set;
    this.#notifiers.removeMm(reg);
    this.#trace.emit(
      "ioasid.notifier.unregister",
      "IOASID",
      s === null ? {} : { set: s.id },
      { priority: nb.priority, scope: s === null ? "mm-pending" : "set" },
    );
  }

  /** Registrations for `mm` still waiting for its set. */
  pendingNotifiers(mm: unknown): number {
    return this.#notifiers.pendingCount(mm);
  }

  /** `ioasid_queue_work`: for notifier handlers that must sleep (they run atomic). */
  queueWork(work: Work): boolean {
    return this.workqueue.queueWork(work);
  }

  // ---------------------------------------------------------------- custom allocators

  /**
   * `ioasid_register_allocator`. Errors: EINVAL ops lack alloc/free; EAGAIN
   * the default allocator has IDs outstanding; EEXIST these ops are already
   * registered; ENOMEM (fault point `ioasid.register_allocator`).
   */
  registerAllocator(ops: IoasidAllocatorOps): void {
    this.#allocators.check(ops, this.allocated);
    this.#faults.inject("ioasid.register_allocator");
    const r = this.#allocators.add(ops);
    this.#trace.emit("ioasid.allocator.register", "IOASID", {}, r);
  }

  /**
   * `ioasid_unregister_allocator`. Errors: ENOENT not registered; EBUSY it is
   * the last allocator of the active ID space and IDs are outstanding.
   */
  unregisterAllocator(ops: IoasidAllocatorOps): void {
    const fallback = this.#allocators.remove(ops, this.allocated);
    this.#trace.emit("ioasid.allocator.unregister", "IOASID", {}, { fallback });
  }

  /** True while a custom allocator chooses the IDs. */
  get customAllocatorActive(): boolean {
    return this.#allocators.active !== null;
  }

  // ---------------------------------------------------------------- internals

  #checkId(id: number): void {
    if (!Number.isInteger(id) || id < 1 || id > this.capacity) {
      throw new KernelError(Errno.EINVAL, `IOASID ${id} is outside 1..${this.capacity}`);
    }
  }

  #setOf(set: IoasidSet): SetState {
    // A handle is only trusted if it is the very record this core keeps under its id.
    const handle: unknown = set;
    const sid = typeof handle === "object" && handle !== null && "id" in handle && typeof handle.id === "number" ? handle.id : 0;
    const s = this.#sets[sid];
    if (s === undefined || s !== set) throw new KernelError(Errno.EINVAL, "unknown IOASID set");
    return s;
  }

  #liveSet(set: IoasidSet): SetState {
    const s = this.#setOf(set);
    if (!s.alive) throw new KernelError(Errno.EINVAL, `IOASID set ${s.id} is being destroyed`);
    return s;
  }

  /** The owning set of an allocated ID, checking `set` owns it (null: no check). */
  #owned(set: IoasidSet | null, id: number, what: string): SetState {
    this.#checkId(id);
    const named = set === null ? null : this.#setOf(set);
    const t = this.#table;
    if (id >= t.length || t.stateOf(id) === IdState.IDLE) throw new KernelError(Errno.ENOENT, `IOASID ${id} is not allocated`);
    const owner = this.#sets[t.set[id] ?? 0];
    if (owner === undefined) throw new KernelError(Errno.ENOENT, `IOASID ${id} has no set`);
    if (named !== null && named !== owner) {
      this.#log?.warn("ioasid.owner", `cannot ${what} an IOASID outside the set`, "IOASID");
      throw new KernelError(Errno.EACCES, `cannot ${what} IOASID ${id}: set ${named.id} does not own it`);
    }
    return owner;
  }

  /** {@link #owned} plus "no new references once FREE_PENDING". */
  #lookup(set: IoasidSet | null, id: number, what: string): SetState {
    const s = this.#owned(set, id, what);
    if (this.#table.stateOf(id) !== IdState.ACTIVE) throw new KernelError(Errno.ENOENT, `IOASID ${id} is being freed`);
    return s;
  }

  #customAlloc(ops: IoasidAllocatorOps, lo: number, hi: number): number {
    const id = ops.alloc(lo, hi);
    if (!Number.isInteger(id) || id < lo || id > hi) {
      if (isU32(id) && id !== INVALID_IOASID) ops.free(id);
      throw new KernelError(Errno.EIO, `custom IOASID allocator returned ${id}, outside [${lo}, ${hi}]`);
    }
    if (this.#bitmap.test(id)) {
      // Not freed back: the ID is live here, and freeing it would pull it from under its holder.
      throw new KernelError(Errno.EIO, `custom IOASID allocator returned ${id}, which is in use`);
    }
    try {
      this.#faults.inject("ioasid.alloc.store");
    } catch (e) {
      ops.free(id);
      throw e;
    }
    return id;
  }

  #freeOne(s: SetState, id: number): boolean {
    const t = this.#table;
    t.state[id] = ((t.state[id] ?? 0) & ~STATE_MASK) | IdState.FREE_PENDING;
    this.#trace.emit("ioasid.free", "IOASID", { ioasid: id, set: s.id }, { pending: true }, t.refs[id] ?? 0);
    this.#notify(s, id, "FREE");
    // Handlers may have put their references meanwhile, never the owner's.
    const refs = (t.refs[id] ?? 1) - 1;
    t.refs[id] = refs;
    t.state[id] = (t.state[id] ?? 0) & ~FLAG_OWNER_REF;
    this.#trace.emit("ioasid.put", "IOASID", { ioasid: id, set: s.id }, NO_PAYLOAD, refs);
    if (refs > 0) return false;
    this.#reclaim(id);
    return true;
  }

  #freeAll(s: SetState): number {
    let freed = 0;
    for (const id of listIds(this.#table, s.ids)) {
      if (this.#table.stateOf(id) === IdState.ACTIVE && (this.#table.set[id] ?? 0) === s.id) {
        this.#freeOne(s, id);
        freed++;
      }
    }
    this.#trace.emit("ioasid.set.free", "IOASID", { set: s.id }, { freed });
    return freed;
  }

  #reclaim(id: number): void {
    const t = this.#table;
    const s = this.#sets[t.set[id] ?? 0];
    if (s !== undefined) {
      if (((t.state[id] ?? 0) & FLAG_SPID) !== 0) s.spids.delete(t.spid[id] ?? 0);
      listRemove(t, s.ids, id);
      s.count--;
    }
    t.state[id] = IdState.IDLE;
    t.refs[id] = 0;
    t.set[id] = 0;
    t.spid[id] = 0;
    t.priv[id] = undefined;
    this.#bitmap.clear(id);
    const custom = this.#allocators.active;
    if (custom !== null) {
      try {
        custom.free(id);
      } catch (e) {
        // Freeing cannot fail for the caller; a custom allocator that refuses is logged, not propagated.
        if (!isKernelError(e)) throw e;
        this.#log?.warn("ioasid.custom-free", `custom IOASID allocator failed to free: ${e.message}`, "IOASID");
      }
    }
    this.#trace.emit("ioasid.reclaim", "IOASID", { ioasid: id, set: s?.id ?? 0 }, NO_PAYLOAD, 0);
    if (s !== undefined && !s.alive && s.count === 0) this.#releaseSet(s);
  }

  #releaseSet(s: SetState): void {
    // Reached both from setPut and from the reclaim of a dead set's last ID; release once.
    if (this.#sets[s.id] !== s) return;
    this.#sets[s.id] = undefined;
    this.#freeSids.push(s.id);
    this.#available += s.quota;
    this.#trace.emit("ioasid.set.release", "IOASID", { set: s.id }, { available: this.#available });
  }

  #notify(s: SetState, id: number, event: IoasidEvent): void {
    if (this.#notifiers.idle(s)) return;
    const t = this.#table;
    const refcount = t.refs[id] ?? 0;
    const data: IoasidNotifyData = {
      id: id as Ioasid,
      spid: ((t.state[id] ?? 0) & FLAG_SPID) !== 0 ? ((t.spid[id] ?? 0) as Spid) : null,
      set: s,
      private: t.priv[id],
      refcount,
    };
    const spid = data.spid;
    this.#trace.emit(
      "ioasid.notify",
      "IOASID",
      spid === null ? { ioasid: id, set: s.id } : { ioasid: id, set: s.id, gpasid: spid },
      { event, blocks: this.#notifiers.blockCount(s) },
      refcount,
    );
    this.#notifiers.deliver(s, event, data);
  }
}
