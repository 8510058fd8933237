/**
 * Trace events of the VT-d driver, added to the kernel's
 * registry by declaration merging. Hardware events are the unit's (`vtd.*`);
 * these say what the driver decided.
 */
declare module "@vsva/kernel" {
  interface TraceEventRegistry {
    "vtd-drv.start": { actor: "IOMMU"; payload: { readonly unit: string; readonly pasidBits: number; readonly nesting: boolean } };
    "vtd-drv.pasid-teardown": { actor: "IOMMU"; payload: { readonly unit: string; readonly pgtt: number } };
    "vtd-drv.bind-gpasid": { actor: "IOMMU"; payload: { readonly unit: string; readonly users: number; readonly programmed: boolean } };
    "vtd-drv.unbind-gpasid": { actor: "IOMMU"; payload: { readonly unit: string; readonly users: number; readonly cleared: boolean } };
    "vtd-drv.free-notified": { actor: "IOMMU"; payload: { readonly unit: string; readonly devices: number } };
    "vtd-drv.free-teardown": { actor: "IOMMU"; payload: { readonly unit: string; readonly devices: number } };
    "vtd-drv.page-request": {
      actor: "IOMMU";
      payload: { readonly unit: string; readonly addr: number; readonly groupIndex: number; readonly outcome: "reported" | "invalid" | "no-response" };
    };
    "vtd-drv.page-response": { actor: "IOMMU"; payload: { readonly unit: string; readonly groupIndex: number; readonly code: string } };
  }
}

export {};
