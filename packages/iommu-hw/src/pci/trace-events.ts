import type { PageResponseCode } from "../iommu-port.js";

/**
 * Trace events of the PCIe endpoint model, added to the
 * kernel's registry by declaration merging. IDs carry the device's BDF and,
 * for PASID-tagged traffic, the PASID as `hpasid` (a physical function only
 * ever sees host PASIDs).
 */
declare module "@vsva/kernel" {
  interface TraceEventRegistry {
    /** An ATS translation request and its completion; `pa` is -1 and `reason` the fault code when it failed. */
    "pci.ats-translate": { actor: "DEVICE"; payload: { readonly addr: number; readonly write: boolean; readonly pa: number; readonly reason: number } };
    /** A PRI page request (one page, last in its group), as the function sends it. */
    "pci.page-request": { actor: "DEVICE"; payload: { readonly addr: number; readonly groupIndex: number; readonly read: boolean; readonly write: boolean } };
    /** A page group response as the function handled it; `expected` false sets Unexpected PRG Index. */
    "pci.page-response": { actor: "DEVICE"; payload: { readonly groupIndex: number; readonly code: PageResponseCode; readonly expected: boolean } };
    "pci.devtlb-invalidate": { actor: "DEVICE"; payload: { readonly addr: number; readonly size: number; readonly global: boolean; readonly removed: number } };
    "pci.dma-complete": { actor: "DEVICE"; payload: { readonly result: string; readonly addr: number; readonly length: number; readonly write: boolean; readonly bytes: number } };
  }
}

export {};
