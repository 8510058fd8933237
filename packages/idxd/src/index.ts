// The host driver of the DSA-like accelerator (the idxd of this world).
export { Idxd, IdxdWq, type IdxdCaps, type IdxdConfig, type IdxdHw, type IdxdProbeOptions, type IdxdWqConfig, type IdxdWqType, wqMaskOperand } from "./idxd.js";
export { IA32_PASID_VALID, IdxdUserFile, UserThread, openUserWq } from "./cdev.js";
export { plugIdxd, type PlugIdxdOptions } from "./plug.js";
export { IDXD_FAULT_POINTS } from "./fault-points.js";
import "./trace-events.js";
