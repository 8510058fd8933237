import { declareFaultPoints } from "@vsva/kernel";

/**
 * Every fault-injection point of the VDCM and of its testing host work queue;
 * the fail-nth sweeps must fail each one.
 * - `vdcm.mdev_alloc`: the mdev's state (virtual config space, BAR0 shadow) when it is created (ENOMEM);
 * - `vdcm.host_wq_cmd`: a WQ command the testing host work queue issues to program a PASID,
 *   refused before anything changed (the device's HW_ERR, EIO).
 */
export const VDCM_FAULT_POINTS = declareFaultPoints("@vsva/vdcm", ["vdcm.mdev_alloc", "vdcm.host_wq_cmd"]);
