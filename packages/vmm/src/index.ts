// A VMM (what QEMU does with KVM and VFIO for vSVA): VMs with guest RAM over
// host pages, the VFIO nesting container and KVM's PASID translation.
import "./trace-events.js";
export { Vm, VMM_RAM_BASE, type VmOptions, type VmMdev, type VmHost, type VmState, type AssignedDevice } from "./vm.js";
export { GuestRam, type GuestRamOptions } from "./guest-ram.js";
export { VMM_FAULT_POINTS } from "./fault-points.js";
export { VirtualVtd, type ViommuStats, type GuestPasidMode } from "./viommu.js";
export { Guest, type GuestOptions, type GuestDmaRequest } from "./guest.js";
export { VfioFaultRings } from "./vfio-faults.js";
export { MdevRegions } from "./mdev-regions.js";
export { KvmEnqcmdPortal } from "./kvm-portal.js";
