import { declareFaultPoints } from "@vsva/kernel";

/** Every fault-injection point of the idxd driver; the fail-nth sweep over probe, open, submit and close must fail each one. */
export const IDXD_FAULT_POINTS = declareFaultPoints("@vsva/idxd", [
  // probe: the driver's per-device and per-WQ structures (drivers/dma/idxd/init.c: idxd_alloc(), idxd_setup_wqs()).
  "idxd.alloc",
  // open of a user WQ: the file's context (drivers/dma/idxd/cdev.c: idxd_cdev_open(), kzalloc of the ctx).
  "idxd.cdev-ctx",
]);
