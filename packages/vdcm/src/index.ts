// The VDCM: mdevs composed from a DSA-like accelerator's work queues (the idxd mdev vendor driver).
export { type HostWq } from "./host-wq.js";
export { Vdcm, type VdcmOptions, type MdevTarget, type HeldPasid } from "./vdcm.js";
export { VdcmMdev, type MdevProgram, VDCM_PORTAL_REGION, VDCM_PORTAL_SIZE } from "./mdev.js";
export { VirtualBar0, type VirtualCaps, VBAR0_SIZE, VBAR0_GRPCFG, VBAR0_WQCFG, VBAR0_GRPCFG_TABLE, VBAR0_WQCFG_TABLE, CMD_ERR_HW } from "./vbar0.js";
export { VDCM_FAULT_POINTS } from "./fault-points.js";
import "./trace-events.js";
