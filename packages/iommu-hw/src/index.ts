export { MEM_ABORT, type U64, type MemStats, type PhysMem, u64, newStats, resetStats, u64ToBigInt, bigIntToU64, u64ToNumber, numberToU64 } from "./mem/phys-mem.js";
export { SparseMemory, type SparseMemoryOptions, type MemRegion, PAGE_SIZE, PAGE_SHIFT } from "./mem/sparse-memory.js";
export { defineLayout, type Layout, type FieldAccess, type FieldSpec, type FieldDecl } from "./layout.js";
export type { DmaRequest, TranslateOk, TranslateFault, TranslateResult, PageRequest, PageResponseCode, PageGroupResponse, IommuPort, EndpointPort } from "./iommu-port.js";
export { TaggedLru, CacheNode, type CacheStats } from "./cache/tagged-lru.js";
