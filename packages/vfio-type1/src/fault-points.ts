import { declareFaultPoints } from "@vsva/kernel";

/** Every fault-injection point of VFIO; the fail-nth sweep over MAP_DMA must fail each one. */
export const VFIO_FAULT_POINTS = declareFaultPoints("@vsva/vfio-type1", ["vfio.pin"]);
