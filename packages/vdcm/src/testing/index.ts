export { DsaHostWq } from "./dsa-host-wq.js";
export { MdevGuest } from "./guest.js";
export { vdcmRig, type VdcmRig, type VdcmRigOptions, type HostDriverContext, registerHostDriver, RIG_WQS, vmmUser, openMdev, type VmOnMdev, allocPasid, freePasid } from "./rig.js";
export { vdcmViolations } from "./invariants.js";
