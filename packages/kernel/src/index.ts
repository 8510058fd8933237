export { Errno, type ErrnoName, errnoName } from "./errno.js";
export { KernelError, KernelBug, isKernelError } from "./error.js";
export {
  type Brand,
  type Ioasid,
  type Spid,
  type HostPasid,
  type GuestPasid,
  type DomainId,
  type VmId,
  type SourceId,
  asIoasid,
  asSpid,
  asHostPasid,
  asGuestPasid,
  asDomainId,
  asVmId,
  sourceId,
  formatBdf,
} from "./ids.js";
export { AtomicContext } from "./atomic.js";
export { Scheduler, Workqueue, Work, type SchedulerStats } from "./scheduler.js";
export {
  NOTIFY_DONE,
  NOTIFY_OK,
  NOTIFY_STOP_MASK,
  NOTIFY_BAD,
  NOTIFY_STOP,
  type NotifyResult,
  type NotifierBlock,
  notifyVetoed,
  AtomicNotifierChain,
  BlockingNotifierChain,
} from "./notifier.js";
export { Kref } from "./kref.js";
export {
  type Actor,
  type TraceIds,
  type TraceEventRegistry,
  type TraceKind,
  type TraceActor,
  type TracePayload,
  type TraceEvent,
  type TraceEventOfKind,
  type TraceSubscriber,
  TraceBus,
  TraceRecorder,
  HOST_CONTEXT,
} from "./trace.js";
export { FaultInjector, type FailPointSpec, type FaultPointRegistry, declareFaultPoints } from "./fault-inject.js";
export { RateLimitedLog, type RateLimitOptions, type LogLine } from "./ratelimit.js";
export { Kernel, type KernelOptions } from "./kernel.js";
