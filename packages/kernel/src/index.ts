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
