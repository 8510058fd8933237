// Memory and page-table formats live in `@vsva/pgtable` (shared with the CPU's
// process model); the names a unit's user needs to build one are re-exported here.
export { MEM_ABORT, type U64, type MemStats, type PhysMem, u64, newStats, resetStats, u64ToBigInt, bigIntToU64, u64ToNumber, numberToU64 } from "@vsva/pgtable";
export { SparseMemory, type SparseMemoryOptions, type MemRegion, PAGE_SIZE, PAGE_SHIFT } from "@vsva/pgtable";
export { defineLayout, type Layout, type FieldAccess, type FieldSpec, type FieldDecl } from "@vsva/pgtable";
export type { DmaRequest, TranslateOk, TranslateFault, TranslateResult, PageRequest, PageResponseCode, PageGroupResponse, IommuPort, EndpointPort, StallResolution } from "./iommu-port.js";
export { TaggedLru, CacheNode, type CacheStats } from "./cache/tagged-lru.js";

// What the units' API takes or throws from @vsva/kernel, so a caller needs no second import:
// the branded source ID of every request (and its constructor), the error type and errnos, the
// scheduler a deferred queue runs on and the trace bus.
export { type SourceId, sourceId, formatBdf, KernelError, Errno, isKernelError, Scheduler, type TraceBus } from "@vsva/kernel";

// The register window both units implement (64-bit values as bigint) and layout-typed access to it.
export { type Mmio, readReg, writeReg, joinDwords } from "./mmio/mmio.js";
// Trap points a VMM uses on either unit (one hook for register accesses, queue entries and virtual commands).
export type {
  TrapReply, TrapReadValue, VcmdReply, MmioReadTrap, MmioWriteTrap, QueueEntryTrap, VcmdTrap, VtdTrapEvent, SmmuTrapEvent, VtdTrap, SmmuTrap, DeferredOutcome,
} from "./trap.js";

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
} from "@vsva/pgtable";
export { newWalkResult, resetWalkResult, toOutcome } from "@vsva/pgtable";
export { walkFirstLevel } from "@vsva/pgtable";
export { walkSecondLevel, secondLevelStage } from "@vsva/pgtable";
export { WalkCache } from "./pt/walk-cache.js";
export { X86_PTE, X86_PDE_2M, X86_PDPTE_1G, X86, x86ReservedMask, x86EntryName, type X86Level, type X86ReservedOptions } from "@vsva/pgtable";
export { SL_PTE, SL_PDE_2M, SL_PDPTE_1G, SL, slReservedMask, type SlReservedOptions } from "@vsva/pgtable";
export { x86Format, slFormat, type PteProt, type LeafProt, type PageTableFormat, type X86FormatOptions, type SlFormatOptions } from "@vsva/pgtable";
export { TableWriter, type PageAllocator, type Mapping, type TableWriterOptions } from "@vsva/pgtable";
export { PagePool } from "@vsva/pgtable";

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
export { DeviceTlb, type AtcEntry, type AtcHandle, type DeviceTlbStats, type DeviceTlbInvalidation } from "./pci/device-tlb.js";
export { PageRequestInterface, type PageRequestOutcome, type PriStats, type PriOptions } from "./pci/pri.js";
export { DmaEngine, type DmaResult, type DmaProgram, type DmaStats, type DmaEngineOptions } from "./pci/dma-engine.js";
export { DmaWorker } from "./pci/dma-worker.js";
export { pciEnableForSva, type PciEnableOptions } from "./pci/pci-enable.js";

// Emulated Intel VT-d remapping unit (scalable mode): the unit, its register
// and in-memory structure layouts (shared with the driver, as a kernel shares
// a spec's field definitions), descriptors and fault reasons.
export { VtdUnit } from "./vtd/vtd-unit.js";
export { VtdDebug, type CacheMismatch, type StructureCacheMismatch, type VtdRequestAccounting } from "./vtd/debug.js";
export { type IotlbEntry, type CtxInfo, type PasidInfo, CacheClass, RightsFor, type RightsForValue } from "./vtd/caches.js";
export { type VtdOptions, type VtdConfig, type VtdCacheSizes, type VtdInterrupt } from "./vtd/options.js";
export {
  RegOffset,
  REG_WINDOW,
  VerReg,
  CapReg,
  EcapReg,
  GcmdReg,
  GstsReg,
  RtaddrReg,
  CcmdReg,
  FstsReg,
  EventCtlReg,
  IqaReg,
  IqhReg,
  IqtReg,
  IcsReg,
  IqercdReg,
  PqaReg,
  PqhReg,
  PqtReg,
  PrsReg,
  FrcdReg,
  VccapReg,
  VcmdReg,
  VcrspReg,
  DEFAULT_FRO,
  DEFAULT_IRO,
  IvaReg,
  IotlbReg,
  EventDataReg,
  EventAddrReg,
  EventUaddrReg,
} from "./vtd/regs.js";
export {
  RootEntry,
  ROOT_ENTRY_BYTES,
  ContextEntry,
  CONTEXT_ENTRY_BYTES,
  PasidDirEntry,
  PASID_DIR_ENTRY_BYTES,
  PasidEntry,
  PASID_ENTRY_BYTES,
  Pgtt,
  type PgttValue,
  pasidDirIndex,
  pasidTableIndex,
} from "./vtd/structures.js";
export { pageField, signedPageNumber, addrOfPageField } from "./page-field.js";
export {
  InvType,
  ContextCacheDesc,
  IotlbDesc,
  DeviceTlbDesc,
  InterruptEntryDesc,
  WaitDesc,
  PasidIotlbDesc,
  PasidCacheDesc,
  PasidDeviceTlbDesc,
  pfsidFields,
  PageGroupResponseDesc,
  PageRequestDesc,
  CcGran,
  IotlbGran,
  PiotlbGran,
  PcGran,
  ResponseCode,
  PAGE_REQUEST_BYTES,
  PAGE_REQUEST_TYPE,
  DescType,
  INV_TYPE_NAMES,
} from "./vtd/descriptors.js";
export { FaultReason, type FaultReasonCode, faultReasonName } from "./vtd/fault-reason.js";
export { VcmdCommand, VcmdStatus } from "./vtd/vcmd.js";

// SMMUv3 (appended by the arm-smmu-v3 driver's helper; the unit's owner may reorganise):
// the emulated unit, its register and in-memory structure layouts, and the
// AArch64 (VMSAv8-64, 4 KiB granule) table formats, writer and walkers.
export { SmmuUnit } from "./smmu/smmu-unit.js";
export { SmmuDebug, type SmmuCacheMismatch, type SmmuStructureMismatch, type SmmuStats, type SmmuRequestAccounting } from "./smmu/debug.js";
export { type SmmuOptions, type SmmuConfig, type SmmuInterrupt, type SmmuCacheSizes } from "./smmu/options.js";
export {
  SmmuReg,
  SMMU_REG_WINDOW,
  Idr0Reg,
  Idr1Reg,
  Idr3Reg,
  Idr5Reg,
  Cr0Reg,
  Cr0AckReg,
  Cr1Reg,
  Cr2Reg,
  GbpaReg,
  IrqCtrlReg,
  IrqCtrlAckReg,
  GerrorReg,
  GerrornReg,
  IrqCfg0Reg,
  IrqCfg1Reg,
  StrtabBaseReg,
  StrtabBaseCfgReg,
  QueueBaseReg,
  CmdqProdReg,
  CmdqConsReg,
  OutqProdReg,
  OutqConsReg,
  CmdqError,
} from "./smmu/regs.js";
export {
  STE_BYTES,
  CD_BYTES,
  L1_DESC_BYTES,
  Ste,
  SteConfig,
  S1Dss,
  S1Fmt,
  Strw,
  L1Std,
  L1Cd,
  Cd,
  TG0_4K,
  TG1_4K,
  CMD_BYTES,
  CmdOp,
  CMD_NAMES,
  CmdCfgiSte,
  CmdCfgiSteRange,
  CmdCfgiCd,
  CmdCfgiCdAll,
  CmdTlbiNhAll,
  CmdTlbiNhAsid,
  CmdTlbiNhVa,
  CmdTlbiS12Vmall,
  CmdTlbiS2Ipa,
  CmdTlbiNsnhAll,
  CmdAtcInv,
  CmdPriResp,
  CmdSync,
  SyncCs,
  PriRespCode,
  ATC_INV_SIZE_ALL,
  EVENT_BYTES,
  EventRecord,
  EventFetchRecord,
  EventId,
  type EventIdCode,
  ABORT_NO_EVENT,
  EventClass,
  eventName,
  PRI_BYTES,
  PriEntry,
  CmdResume,
  CmdStallTerm,
  ResumeResp,
} from "./smmu/structures.js";
export { PlatformDmaMaster, type PlatformDmaMasterOptions, type PlatformDmaProgram, type PlatformDmaStatus } from "./smmu/platform-master.js";
export { ArmTableWriter, type ArmS1WriterOptions, type ArmS2WriterOptions } from "@vsva/pgtable";
export { armS1Format, armS2Format } from "@vsva/pgtable";
export { walkStage1, walkStage2 } from "@vsva/pgtable";
export { newArmWalkResult } from "@vsva/pgtable";
export { type ArmS1Config, type ArmS2Config, type ArmWalkResult, ArmPerm } from "@vsva/pgtable";
export { oasBits, oasCode, s1StartLevel, s2Geometry } from "@vsva/pgtable";
