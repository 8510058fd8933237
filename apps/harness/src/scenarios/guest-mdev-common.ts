import { Guest, Vm, type VmMdev } from "@vsva/vmm";
import type { Vfio } from "@vsva/vfio-type1";
import type { StepContext } from "../world/host-scenario.js";
import { GUEST_RAM, type GuestVm } from "./guest-common.js";
import { bindToVfio, groupOf } from "./vfio-common.js";

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
  const h = ctx.host;
  const slot = ctx.step(`plug in ${o.device}; vfio-pci takes it for VM ${o.id}`, () => {
    const s = h.addDevice(o.device, o.dev);
    bindToVfio(ctx, vfio, s);
    return s;
  });
  const vm = ctx.step(`VMM starts VM ${o.id} with ${o.device} and ${o.mdev.name} (a container each, guest RAM mapped in both), KVM`, () => {
    const v = new Vm({ host: h, vfio, id: o.id, ramBytes: 2 * GUEST_RAM, device: { group: groupOf(slot.dev), name: o.device, endpoint: slot.ep }, mm: o.mm, mdevs: [o.mdev] });
    ctx.defer(`VM ${o.id}'s VMM exits (if still running): VFIO release, KVM teardown, guest RAM back to the host`, () => v.kill());
    ctx.watchVm(v);
    o.onStart?.(v);
    return v;
  });
  // The crash wrapper may have killed the VM after its start.
  if (vm.state !== "running") return null;
  const guest = ctx.step(`VM ${o.id}'s guest boots its IOMMU stack over the virtual VT-d`, () => new Guest(vm));
  return { slot, vm, guest };
}
