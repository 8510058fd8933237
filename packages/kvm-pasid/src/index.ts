export {
  KvmPasid,
  type KvmPasidOptions,
  type EnqcmdResult,
  type GuestFault,
  type MsrWriteResult,
} from "./kvm-pasid.js";
export {
  PasidTranslationTable,
  walkPasidTranslation,
  readPasidTranslations,
  TABLE_PAGE_FAULT_POINT,
  type TablePageSource,
  type PasidDirectories,
  type TranslationMiss,
  type TranslationWalk,
} from "./translation-table.js";
export {
  MSR_IA32_PASID,
  Ia32Pasid,
  GuestPasidIndex,
  VmxPasidDirEntry,
  VmxPasidTableEntry,
  PASID_DIR_ENTRY_BYTES,
  PASID_TABLE_ENTRY_BYTES,
  PASID_DIR_ENTRIES,
  PASID_TABLE_ENTRIES,
  GUEST_PASID_MAX,
  VmcsField,
  VmExitReason,
  GP_VECTOR,
} from "./layout.js";
import "./trace-events.js";
