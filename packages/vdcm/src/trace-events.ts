/**
 * The VDCM's trace events: actor "VDCM", ids {vm, device (the mdev), gpasid,
 * hpasid}. `program` and `clear` carry the host PASID's IOASID refcount after
 * the event when the VDCM holds (held) a reference on it: after its
 * `ioasid_find_by_spid`, after its put.
 */
declare module "@vsva/kernel" {
  interface TraceEventRegistry {
    "vdcm.mdev-create": { actor: "VDCM"; payload: { readonly wq: number; readonly mode: "dedicated" | "shared" } };
    "vdcm.mdev-remove": { actor: "VDCM"; payload: { readonly wq: number } };
    /** A guest command on the virtual CMD register and the CMDSTS error it got (0 = success). */
    "vdcm.command": { actor: "VDCM"; payload: { readonly command: number; readonly operand: number; readonly err: number; readonly reason: string } };
    /**
     * The hardware WQ was given a host PASID: the guest's, translated by SPID
     * in the VM's set (a reference held from here), or the mdev's default
     * (aux-domain) PASID.
     */
    "vdcm.program": { actor: "VDCM"; payload: { readonly source: "guest-pasid" | "default-pasid"; readonly priv: boolean } };
    /** FREE of a host PASID a queue of this VM holds reached the VDCM (atomic): the clearing is queued. */
    "vdcm.free-notified": { actor: "VDCM"; payload: Readonly<Record<string, never>> };
    /** The hardware WQ was quiesced and cleared, then the reference (if any) put. */
    "vdcm.clear": { actor: "VDCM"; payload: { readonly cause: "GUEST" | "FREE" | "RELEASE" | "REMOVE" | "RESET"; readonly ref: boolean } };
    /**
     * A shared WQ's FREE: the device drained the host PASID (DRAIN_PASID),
     * so no descriptor the guest enqueued with it is left; `ok` false when
     * the device refused (logged).
     */
    "vdcm.drain-pasid": { actor: "VDCM"; payload: { readonly ok: boolean } };
    /** The VDCM was destroyed: every mdev removed, aux domains off if it turned them on. */
    "vdcm.destroy": { actor: "VDCM"; payload: Readonly<Record<string, never>> };
    /** Clearing the hardware WQ failed: the reference stays held, so the PASID can never reach another user. */
    "vdcm.clear-failed": { actor: "VDCM"; payload: { readonly errno: number; readonly reason: string } };
  }
}

export {};
