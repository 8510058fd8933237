import type { IoasidEvent, IoasidSetType } from "./types.js";

/**
 * The IOASID core's trace events. Every state change emits one, with actor
 * "IOASID", ids {ioasid, set, gpasid = the SPID where one is involved} and, for
 * per-ID events, the refcount after the event.
 */
declare module "@vsva/kernel" {
  interface TraceEventRegistry {
    "ioasid.set.alloc": { actor: "IOASID"; payload: { readonly type: IoasidSetType; readonly quota: number; readonly available: number } };
    "ioasid.set.adjust": { actor: "IOASID"; payload: { readonly from: number; readonly to: number; readonly available: number } };
    "ioasid.set.get": { actor: "IOASID"; payload: Readonly<Record<string, never>> };
    "ioasid.set.put": { actor: "IOASID"; payload: Readonly<Record<string, never>> };
    /** Every ID of the set freed (`ioasid_free_all_in_set`); `freed` counts the IDs that changed state. */
    "ioasid.set.free": { actor: "IOASID"; payload: { readonly freed: number } };
    /** The last set reference dropped: token released, IDs freed; storage kept until they are reclaimed. */
    "ioasid.set.dead": { actor: "IOASID"; payload: { readonly remaining: number } };
    /** The set's storage and quota are returned to the system. */
    "ioasid.set.release": { actor: "IOASID"; payload: { readonly available: number } };
    "ioasid.alloc": { actor: "IOASID"; payload: { readonly min: number; readonly max: number; readonly custom: boolean } };
    "ioasid.get": { actor: "IOASID"; payload: { readonly bySpid: boolean } };
    "ioasid.put": { actor: "IOASID"; payload: Readonly<Record<string, never>> };
    /** ACTIVE -> FREE_PENDING (`mark_free_pending`); FREE is notified next, then the owner's reference is put. */
    "ioasid.free": { actor: "IOASID"; payload: { readonly pending: boolean } };
    /** Returned to the pool; refcount 0. */
    "ioasid.reclaim": { actor: "IOASID"; payload: Readonly<Record<string, never>> };
    "ioasid.spid.attach": { actor: "IOASID"; payload: Readonly<Record<string, never>> };
    /** `notified` is false when the ID was already FREE_PENDING (FREE stood in for UNBIND). */
    "ioasid.spid.detach": { actor: "IOASID"; payload: { readonly notified: boolean } };
    "ioasid.data.attach": { actor: "IOASID"; payload: { readonly cleared: boolean } };
    /** A notification about to be delivered to both scopes; `blocks` is how many are registered for it. */
    "ioasid.notify": { actor: "IOASID"; payload: { readonly event: IoasidEvent; readonly blocks: number } };
    "ioasid.notifier.register": { actor: "IOASID"; payload: { readonly priority: number; readonly scope: "system" | "set" | "mm-pending" } };
    "ioasid.notifier.unregister": { actor: "IOASID"; payload: { readonly priority: number; readonly scope: "system" | "set" | "mm-pending" } };
    /** Pending mm registrations moved onto a new set with their token, or back to pending when it died. */
    "ioasid.notifier.mm": { actor: "IOASID"; payload: { readonly active: boolean; readonly count: number } };
    "ioasid.allocator.register": { actor: "IOASID"; payload: { readonly active: boolean; readonly shared: boolean } };
    "ioasid.allocator.unregister": { actor: "IOASID"; payload: { readonly fallback: "default" | "custom" | "none" } };
  }
}

export {};
