// Physical memory and page-table formats: knowledge the CPU's MMU and the
// IOMMU share, below both the silicon (`@vsva/iommu-hw`) and the kernel's
// process model (`@vsva/iommu-core`).
//
// The memory bus: the PhysMem interface (read/write by address, counters),
// sparse RAM and a read-only view.
export { MEM_ABORT, u64, resetStats, newStats, u64ToBigInt, bigIntToU64, u64ToNumber, numberToU64, type U64, type MemStats, type PhysMem } from "./mem/phys-mem.js";
export { PAGE_SHIFT, PAGE_SIZE, SparseMemory, type MemRegion, type SparseMemoryOptions } from "./mem/sparse-memory.js";
export { ReadOnlyMem } from "./mem/read-only-mem.js";
export { u8set } from "./mem/block-copy.js";

// Declarative bit layouts (registers, entries, descriptors are declared once as data).
export { defineLayout, type FieldAccess, type FieldSpec, type FieldDecl, type Layout } from "./layout.js";

// x86-64 first level (4/5-level) and VT-d second level: entries, walkers, writers.
export { type Stage, type WalkFaultKind, type Denied, type NestedPhase, type WalkAccess, type FirstLevelConfig, type SecondLevelConfig, type WalkResult, type SecondStage, type PscEntry, type PagingStructureCache, type PscHook, type FirstLevelWalkOptions, type SecondLevelWalkOptions, type WalkFirstLevel, type WalkSecondLevel, type WalkOutcome } from "./pt/types.js";
export { ENTRY_SIZE, ENTRIES_PER_TABLE, TABLE_SIZE, levelShift, levelSize, addrLo, addrHi, levelIndex, offsetIn, levelPrefix, entryAddr, hawReservedHi, hawReservedLo } from "./pt/geometry.js";
export { newWalkResult, resetWalkResult, toOutcome } from "./pt/walk-result.js";
export { walkFirstLevel } from "./pt/first-level.js";
export { walkSecondLevel, secondLevelStage } from "./pt/second-level.js";
export { X86_PTE, X86_PDE_2M, X86_PDPTE_1G, x86EntryName, X86, x86ReservedMask, x86ReservedLo, x86ReservedHi, type X86Level, type X86ReservedOptions } from "./pt/x86-pte.js";
export { SL_PTE, SL_PDE_2M, SL_PDPTE_1G, SL, slReservedMask, slReservedLo, slReservedHi, type SlReservedOptions } from "./pt/sl-pte.js";
export { x86Format, slFormat, type PteProt, type LeafProt, type PageTableFormat, type X86FormatOptions, type SlFormatOptions } from "./pt/formats.js";
export { TableWriter, type PageAllocator, type Mapping, type TableWriterOptions } from "./pt/table-writer.js";
export { PagePool } from "./pt/page-pool.js";

// AArch64 VMSAv8-64 stage 1 and stage 2, 4 KiB granule.
export { Perm as ArmPerm, neededPerms, type ArmFaultKind, type ArmS2Phase, type ArmS1Config, type ArmS2Config, type ArmWalkResult, type ArmStage2, type ArmTableEntry, type ArmWalkCacheLike, type ArmWalkCacheHook, type ArmS1WalkOptions, type ArmS2WalkOptions } from "./pt-arm/types.js";
export { GRANULE_SHIFT, STRIDE, MAX_OA_BITS_4K, armLevelShift, armLevelSize, s1StartLevel, OAS_BITS, oasBits, oasCode, s2Geometry, armIndex, armStartIndex } from "./pt-arm/geometry.js";
export { ArmTableDesc, ArmS1Page, ArmS1Block2M, ArmS1Block1G, ArmS2Page, ArmS2Block2M, ArmS2Block1G, ARM, s2IsDevice, descAddr } from "./pt-arm/descriptors.js";
export { newArmWalkResult, resetArmWalkResult } from "./pt-arm/walk-result.js";
export { walkStage1, walkStage2, stage2Of } from "./pt-arm/walk.js";
export { armS1Format, armS2Format, type ArmS1FormatOptions, type ArmS2FormatOptions } from "./pt-arm/formats.js";
export { ArmTableWriter, type ArmS1WriterOptions, type ArmS2WriterOptions } from "./pt-arm/table-writer.js";
