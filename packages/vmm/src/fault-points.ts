import { declareFaultPoints } from "@vsva/kernel";

/** Every fault-injection point of the VMM; the fail-nth sweep over a VM's life must fail each one. */
export const VMM_FAULT_POINTS = declareFaultPoints("@vsva/vmm", ["vmm.guest_ram"]);
