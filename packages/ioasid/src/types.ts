import type { Ioasid, NotifierBlock, Spid } from "@vsva/kernel";

/**
 * Set token types (the ioasid.rst proposal after review, iommu list, Oct 2020: `IOASID_SET_TYPE_NULL` renamed NONE).
 * A "none" token is an arbitrary value and need not be unique; an "mm" token
 * stands for an mm_struct and is unique among live sets.
 */
export type IoasidSetType = "none" | "mm";

/** An IOASID's state (the extended drivers/iommu/ioasid.c of the 2020 proposal: IDLE, ACTIVE, FREE_PENDING). */
export type IoasidState = "IDLE" | "ACTIVE" | "FREE_PENDING";

/** Notification events. Only the core sends them, as a by-product of alloc/free and attach/detach SPID. */
export type IoasidEvent = "ALLOC" | "FREE" | "BIND" | "UNBIND";
export const IoasidEvent = { ALLOC: "ALLOC", FREE: "FREE", BIND: "BIND", UNBIND: "UNBIND" } as const satisfies Record<
  IoasidEvent,
  IoasidEvent
>;

/**
 * Notifier priorities, in ascending order as `enum ioasid_notifier_prios`:
 * CPU handlers (KVM quiescing ENQCMD submission) run before DEVICE handlers
 * (VDCM), which run before IOMMU handlers, so the DMA source is quiesced
 * before the IOMMU context is torn down.
 */
export const IoasidPriority = { LAST: 0, IOMMU: 1, DEVICE: 2, CPU: 3 } as const;
export type IoasidPriority = (typeof IoasidPriority)[keyof typeof IoasidPriority];

/** What a notifier receives (`struct ioasid_nb_args` plus the refcount at the time of the event). */
export interface IoasidNotifyData {
  readonly id: Ioasid;
  /** The set-private ID, or null when none is attached. */
  readonly spid: Spid | null;
  readonly set: IoasidSet;
  readonly private: unknown;
  /** References held when the event is delivered. */
  readonly refcount: number;
}

export type IoasidNotifierBlock = NotifierBlock<IoasidEvent, IoasidNotifyData>;

/**
 * A set as its users see it: identity and read-only accounting. Handles are
 * only meaningful to the core that created them; a handle from another core,
 * or of a set that no longer exists, is refused with EINVAL.
 */
export interface IoasidSet {
  /** Small integer id, unique among this core's sets while the set exists. */
  readonly id: number;
  readonly token: unknown;
  readonly type: IoasidSetType;
  /** IDs this set may own at once. */
  readonly quota: number;
  /** IDs the set owns now, ACTIVE or FREE_PENDING (they count against the quota until reclaimed). */
  readonly count: number;
  /** Set references (`ioasid_set_get/put`). */
  readonly refcount: number;
  /** False once the last set reference is dropped: no lookups by token, no new IDs or notifiers. */
  readonly alive: boolean;
}

/**
 * A custom allocator (`struct ioasid_allocator_ops`). `alloc` returns an ID in
 * [min, max] or throws a `KernelError` (a guest's virtual-command allocator
 * fails with the errno the host returned). Allocators whose `alloc` and `free`
 * are the same functions (e.g. two instances of one class: one per vIOMMU
 * unit, `this` playing the part of `pdata`) share one ID space.
 */
export interface IoasidAllocatorOps {
  alloc(min: number, max: number): number;
  free(id: number): void;
}

/** A snapshot of one ID, for tests, invariant checks and the harness. */
export interface IoasidInfo {
  readonly id: Ioasid;
  readonly state: IoasidState;
  readonly refcount: number;
  readonly set: IoasidSet;
  readonly spid: Spid | null;
  readonly private: unknown;
}
