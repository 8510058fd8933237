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
    /** A driver tore a guest binding down on an IOASID FREE and reported it; `users`: requesters the record still counted. */
    "iommu.gpasid-freed": { actor: "IOMMU"; payload: { readonly users: number } };
    "iommu.cache-invalidate": { actor: "IOMMU"; payload: { readonly cache: number; readonly granularity: number } };
    "iommu.uapi-refused": { actor: "IOMMU"; payload: { readonly op: string; readonly errno: number; readonly message: string } };
    "mm.mmap": { actor: "MM"; payload: { readonly mm: string; readonly start: number; readonly end: number; readonly prot: number } };
    "mm.munmap": { actor: "MM"; payload: { readonly mm: string; readonly start: number; readonly end: number; readonly pages: number } };
    "mm.mprotect": { actor: "MM"; payload: { readonly mm: string; readonly start: number; readonly end: number; readonly prot: number } };
    "mm.reclaim": { actor: "MM"; payload: { readonly mm: string; readonly start: number; readonly end: number; readonly pages: number } };
    "mm.fault": { actor: "MM"; payload: { readonly mm: string; readonly va: number; readonly write: boolean; readonly result: number } };
    "mm.invalidate-range": { actor: "MM"; payload: { readonly mm: string; readonly start: number; readonly end: number; readonly notifiers: number } };
    "mm.release": { actor: "MM"; payload: { readonly mm: string; readonly notifiers: number } };
    "mm.exit": { actor: "MM"; payload: { readonly mm: string; readonly pages: number; readonly tables: number } };
    "mm.free": { actor: "MM"; payload: { readonly mm: string; readonly pasid: number | null } };
    "sva.bind": { actor: "IOMMU"; payload: { readonly mm: string; readonly refs: number; readonly driverCalled: boolean } };
    "sva.unbind": { actor: "IOMMU"; payload: { readonly mm: string; readonly refs: number; readonly driverCalled: boolean } };
    "sva.release": { actor: "IOMMU"; payload: { readonly mm: string; readonly bonds: number } };
    "iopf.report": { actor: "IOMMU"; payload: { readonly addr: number; readonly grpid: number; readonly last: boolean; readonly queued: boolean } };
    "iopf.response": { actor: "IOMMU"; payload: { readonly grpid: number; readonly faults: number; readonly code: "success" | "invalid" | "failure"; readonly why: string } };
  }
}

export {};
