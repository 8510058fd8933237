import { declareFaultPoints } from "@vsva/kernel";

/**
 * Every fault-injection point of the VMM; the fail-nth sweeps over a VM's life must fail each one.
 * - `vmm.guest_ram`: a host page behind guest RAM (ENOMEM);
 * - `vmm.mdev_region`: the VMM's pread/pwrite of an mdev's region for a guest access (EIO; the guest reads all ones, its write is dropped).
 */
export const VMM_FAULT_POINTS = declareFaultPoints("@vsva/vmm", ["vmm.guest_ram", "vmm.mdev_region"]);
