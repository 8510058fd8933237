/**
 * Trace events of the IOMMU core (DESIGN.md rule 5), added to the kernel's
 * registry by declaration merging.
 */
declare module "@vsva/kernel" {
  interface TraceEventRegistry {
    "iommu.probe": { actor: "IOMMU"; payload: { readonly iommu: string; readonly group: number } };
    "iommu.release": { actor: "IOMMU"; payload: { readonly iommu: string; readonly group: number } };
    "iommu.domain-alloc": { actor: "IOMMU"; payload: { readonly type: string; readonly iommu: string } };
    "iommu.domain-free": { actor: "IOMMU"; payload: { readonly type: string } };
    "iommu.attach": { actor: "IOMMU"; payload: { readonly group: number; readonly type: string } };
    "iommu.detach": { actor: "IOMMU"; payload: { readonly group: number; readonly to: number | null } };
    "iommu.map": { actor: "IOMMU"; payload: { readonly iova: number; readonly paddr: number; readonly size: number; readonly prot: number } };
    "iommu.unmap": { actor: "IOMMU"; payload: { readonly iova: number; readonly size: number; readonly unmapped: number } };
    "iommu.bind-gpasid": { actor: "IOMMU"; payload: { readonly users: number; readonly driverCalled: boolean } };
    "iommu.unbind-gpasid": { actor: "IOMMU"; payload: { readonly users: number; readonly driverCalled: boolean } };
    "iommu.cache-invalidate": { actor: "IOMMU"; payload: { readonly cache: number; readonly granularity: number } };
    "iommu.uapi-refused": { actor: "IOMMU"; payload: { readonly op: string; readonly errno: number; readonly message: string } };
  }
}

export {};
