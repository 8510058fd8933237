/**
 * The idxd driver's trace events: actor "DEVICE" (a device driver), ids
 * {hpasid} when a PASID is involved.
 */
declare module "@vsva/kernel" {
  interface TraceEventRegistry {
    /** WQCFG now holds a PASID (idxd_wq_set_pasid): every descriptor of this dedicated WQ uses it. */
    "idxd.wq.set-pasid": { actor: "DEVICE"; payload: { readonly device: string; readonly wq: number; readonly priv: boolean } };
    /** WQCFG's PASID was cleared after a drain (idxd_wq_disable_pasid): nothing of it is left in the WQ. */
    "idxd.wq.clear-pasid": { actor: "DEVICE"; payload: { readonly device: string; readonly wq: number } };
    /** A user WQ was opened (the cdev's open binds the opener's mm) or closed (drain, then unbind). */
    "idxd.cdev.open": { actor: "DEVICE"; payload: { readonly device: string; readonly wq: number; readonly mode: "dedicated" | "shared" } };
    "idxd.cdev.close": { actor: "DEVICE"; payload: { readonly device: string; readonly wq: number } };
  }
}

export {};
