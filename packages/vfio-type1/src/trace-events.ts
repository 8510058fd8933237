/** Trace events of VFIO, added to the kernel's registry by declaration merging. */
declare module "@vsva/kernel" {
  interface TraceEventRegistry {
    "vfio.map": { actor: "VFIO"; payload: { readonly iova: number; readonly size: number; readonly pinned: number } };
    "vfio.unmap": { actor: "VFIO"; payload: { readonly iova: number; readonly size: number } };
    "vfio.set-iommu": { actor: "VFIO"; payload: { readonly type: number; readonly groups: number } };
    "vfio.pasid-alloc": { actor: "VFIO"; payload: { readonly min: number; readonly max: number } };
    "vfio.pasid-free": { actor: "VFIO"; payload: { readonly min: number; readonly max: number; readonly freed: number } };
    "vfio.nesting-op": { actor: "VFIO"; payload: { readonly op: string; readonly devices: number } };
    "vfio.release": { actor: "VFIO"; payload: { readonly mappings: number; readonly pasids: number } };
  }
}

export {};
