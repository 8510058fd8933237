export { MEM_ABORT, type U64, type MemStats, type PhysMem, u64, newStats, resetStats, u64ToBigInt, bigIntToU64, u64ToNumber, numberToU64 } from "./mem/phys-mem.js";
export { SparseMemory, type SparseMemoryOptions, type MemRegion, PAGE_SIZE, PAGE_SHIFT } from "./mem/sparse-memory.js";
export { defineLayout, type Layout, type FieldAccess, type FieldSpec, type FieldDecl } from "./layout.js";
export type { DmaRequest, TranslateOk, TranslateFault, TranslateResult, PageRequest, PageResponseCode, PageGroupResponse, IommuPort, EndpointPort } from "./iommu-port.js";
export { TaggedLru, CacheNode, type CacheStats } from "./cache/tagged-lru.js";

// Page-table formats and walkers (x86-64 first level, VT-d second level, nested).
export type {
  Stage,
  WalkFaultKind,
  Denied,
  NestedPhase,
  WalkAccess,
  FirstLevelConfig,
  SecondLevelConfig,
  WalkResult,
  SecondStage,
  PscEntry,
  PagingStructureCache,
  PscHook,
  FirstLevelWalkOptions,
  SecondLevelWalkOptions,
  WalkFirstLevel,
  WalkSecondLevel,
  WalkOutcome,
} from "./pt/types.js";
export { newWalkResult, resetWalkResult, toOutcome } from "./pt/walk-result.js";
export { walkFirstLevel } from "./pt/first-level.js";
export { walkSecondLevel, secondLevelStage } from "./pt/second-level.js";
export { WalkCache } from "./pt/walk-cache.js";
export { X86_PTE, X86_PDE_2M, X86_PDPTE_1G, X86, x86ReservedMask, x86EntryName, type X86Level, type X86ReservedOptions } from "./pt/x86-pte.js";
export { SL_PTE, SL_PDE_2M, SL_PDPTE_1G, SL, slReservedMask, type SlReservedOptions } from "./pt/sl-pte.js";
export { x86Format, slFormat, type PteProt, type LeafProt, type PageTableFormat, type X86FormatOptions, type SlFormatOptions } from "./pt/formats.js";
export { TableWriter, type PageAllocator, type Mapping, type TableWriterOptions } from "./pt/table-writer.js";
export { PagePool } from "./pt/page-pool.js";

// PCIe endpoint: config space with PASID/ATS/PRI, device TLB, PRI, DMA engine.
export { PciEndpoint, type PciEndpointOptions, normaliseRange } from "./pci/endpoint.js";
export {
  buildEndpointConfig,
  type EndpointConfig,
  type EndpointConfigOptions,
  type PciIdentity,
  type PasidCapOptions,
  type AtsCapOptions,
  type PriCapOptions,
} from "./pci/endpoint-config.js";
export { ConfigSpace, PCI_CFG_SPACE_EXP_SIZE, findCapability, findExtCapability } from "./pci/config-space.js";
export { PciHeader, PCI_CAP_ID_EXP, PciExtCapId, PasidCapCtl, AtsCapCtl, PriCtlSta, PriOutstanding } from "./pci/regs.js";
export { DeviceTlb, type AtcEntry, type DeviceTlbStats, type DeviceTlbInvalidation } from "./pci/device-tlb.js";
export { PageRequestInterface, type PageRequestOutcome, type PriStats, type PriOptions } from "./pci/pri.js";
export { DmaEngine, type DmaResult, type DmaProgram, type DmaStats, type DmaEngineOptions } from "./pci/dma-engine.js";
export { DmaWorker } from "./pci/dma-worker.js";
