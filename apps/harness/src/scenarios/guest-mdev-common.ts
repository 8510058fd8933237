import type { Vm, VmMdev } from "@vsva/vmm";
import type { Vfio } from "@vsva/vfio-type1";
import type { StepContext } from "../world/host-scenario.js";
import { type GuestVm, bootGuestVm } from "./guest-common.js";

/**
 * A VM as `startGuestVm` makes one, with an mdev of the host's
 * accelerator in its VFIO set up as well (QEMU's `-device vfio-pci,sysfsdev=`
 * of the mdev; a container of its own, guest RAM mapped in it too); the mdev
 * must exist (created for the VMM's mm `o.mm`) before. Twice the RAM: the
 * guest kernel's pool holds a PASID directory per device.
 */
export function startVmWithMdev(ctx: StepContext, vfio: Vfio, o: VmWithMdevOptions): GuestVm {
  const g = bootVmWithMdev(ctx, vfio, o);
  if (g === null) throw new Error(`VM ${o.id} died while it booted`);
  return g;
}

export interface VmWithMdevOptions {
  readonly id: number;
  readonly dev: number;
  readonly device: string;
  readonly mm: object;
  readonly mdev: VmMdev;
  /** Told the VM as soon as the VMM has started it (a crash wrapper's victim). */
  readonly onStart?: (vm: Vm) => void;
}

/**
 * {@link startVmWithMdev} for a VM that may be killed between its steps (the
 * crash wrapper's victim): null when the VM is gone before its guest booted.
 */
export function bootVmWithMdev(ctx: StepContext, vfio: Vfio, o: VmWithMdevOptions): GuestVm | null {
  const { mm, mdev, ...rest } = o;
  return bootGuestVm(ctx, vfio, { ...rest, mdev: { mm, mdev } });
}
