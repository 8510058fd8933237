/**
 * Trace events of the SMMUv3 driver (every layer reports what it does on the typed trace bus), added to the
 * kernel's registry by declaration merging. Hardware events are the unit's
 * (`smmu.*`); these say what the driver decided.
 */
declare module "@vsva/kernel" {
  interface TraceEventRegistry {
    "smmu-drv.start": { actor: "IOMMU"; payload: { readonly unit: string; readonly sidBits: number; readonly ssidBits: number; readonly twoLevel: boolean } };
    "smmu-drv.ste": { actor: "IOMMU"; payload: { readonly unit: string; readonly sid: number; readonly config: string } };
    "smmu-drv.cd": { actor: "IOMMU"; payload: { readonly unit: string; readonly sid: number; readonly ssid: number; readonly asid: number; readonly state: "valid" | "quiet" | "cleared" } };
    "smmu-drv.cmdq-error": { actor: "IOMMU"; payload: { readonly unit: string; readonly command: string } };
    "smmu-drv.event": { actor: "IOMMU"; payload: { readonly unit: string; readonly event: number; readonly name: string; readonly sid: number; readonly ssid: number | null; readonly addr: number } };
    "smmu-drv.page-request": {
      actor: "IOMMU";
      payload: { readonly unit: string; readonly addr: number; readonly groupIndex: number; readonly outcome: "reported" | "invalid" | "no-response" };
    };
    "smmu-drv.stall": {
      actor: "IOMMU";
      /** reported: an IO page fault for the core; retry / abort: the CMD_RESUME sent; stall-term: CMD_STALL_TERM for a master going away (stag -1). */
      payload: { readonly unit: string; readonly sid: number; readonly stag: number; readonly action: "reported" | "retry" | "abort" | "stall-term" };
    };
    "smmu-drv.page-response": { actor: "IOMMU"; payload: { readonly unit: string; readonly groupIndex: number; readonly code: string } };
  }
}

export {};
