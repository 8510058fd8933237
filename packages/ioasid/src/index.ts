export { IoasidCore, type IoasidCoreOptions,
  type IoasidSnapshot, IOASID_DEFAULT_CAPACITY, INVALID_IOASID } from "./core.js";
export {
  type IoasidSet,
  type IoasidSetType,
  type IoasidState,
  IoasidEvent,
  IoasidPriority,
  type IoasidNotifyData,
  type IoasidNotifierBlock,
  type IoasidAllocatorOps,
  type IoasidInfo,
} from "./types.js";
import "./trace-events.js";
export { IOASID_FAULT_POINTS } from "./fault-points.js";
