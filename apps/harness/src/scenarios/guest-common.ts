import type { Mm, SvaBond } from "@vsva/iommu-core";
import { Prot } from "@vsva/iommu-core";
import { Guest, Vm, type VmMdev } from "@vsva/vmm";
import type { Vfio } from "@vsva/vfio-type1";
import type { DeviceSlot } from "../world/host.js";
import type { StepContext } from "../world/host-scenario.js";
import { PAGE, bindToVfio, groupOf } from "./vfio-common.js";

/** Guest RAM of the guest scenarios: small, so their sweeps stay quick; the guest kernel's pool is its upper half. */
export const GUEST_RAM = 512 * 1024;

export interface GuestVm {
  readonly slot: DeviceSlot;
  readonly vm: Vm;
  readonly guest: Guest;
}

/**
 * One VM as the guest scenarios use it, in three steps: a function plugged
 * in and given to vfio-pci, the VMM starting the VM with it (its death
 * deferred, and the VM held to the per-VM invariants), the guest booting its
 * IOMMU stack over the virtual VT-d.
 */
export function startGuestVm(ctx: StepContext, vfio: Vfio, o: GuestVmOptions): GuestVm {
  const g = bootGuestVm(ctx, vfio, o);
  if (g === null) throw new Error(`VM ${o.id} died while it booted`);
  return g;
}

export interface GuestVmOptions {
  readonly id: number;
  readonly dev: number;
  readonly device: string;
  /**
   * An mdev of the host's accelerator for the VM as well (QEMU's `-device
   * vfio-pci,sysfsdev=`: a container of its own, guest RAM mapped in it too),
   * created beforehand for the VMM's mm `mm`. The VM then gets twice the
   * RAM: the guest kernel's pool holds a PASID directory per device.
   */
  readonly mdev?: { readonly mm: object; readonly mdev: VmMdev };
  /** Told the VM as soon as the VMM has started it (a crash wrapper's victim). */
  readonly onStart?: (vm: Vm) => void;
}

/**
 * {@link startGuestVm} for a VM that may be killed between its steps (the
 * crash wrapper's victim): null when the VM is gone before its guest booted.
 */
export function bootGuestVm(ctx: StepContext, vfio: Vfio, o: GuestVmOptions): GuestVm | null {
  const h = ctx.host;
  const slot = ctx.step(`plug in ${o.device}; vfio-pci takes it for VM ${o.id}`, () => {
    const s = h.addDevice(o.device, o.dev);
    bindToVfio(ctx, vfio, s);
    return s;
  });
  const m = o.mdev;
  const label = m === undefined
    ? `VMM starts VM ${o.id} with ${o.device}: guest RAM over scattered host pages, all of it mapped (IOVA = GPA), KVM`
    : `VMM starts VM ${o.id} with ${o.device} and ${m.mdev.name} (a container each, guest RAM mapped in both), KVM`;
  const vm = ctx.step(label, () => {
    const device = { group: groupOf(slot.dev), name: o.device, endpoint: slot.ep };
    const v = m === undefined
      ? new Vm({ host: h, vfio, id: o.id, ramBytes: GUEST_RAM, device })
      : new Vm({ host: h, vfio, id: o.id, ramBytes: 2 * GUEST_RAM, device, mm: m.mm, mdevs: [m.mdev] });
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

export interface GuestProcess {
  readonly mm: Mm;
  readonly bond: SvaBond;
}

/**
 * A guest process that maps `pages` pages at `va`, touches the first
 * `touched` of them and binds the VM's device with SVA; the invariants hold
 * its PASID's DMA to its mapping, through the guest's table and the VM's RAM.
 * Not a step: the caller's step names it.
 */
export function guestProcess(ctx: StepContext, g: GuestVm, name: string, va: number, pages: number, touched = pages): GuestProcess {
  const mm = g.guest.newProcess(name);
  mm.mmap(va, pages * PAGE, Prot.READ | Prot.WRITE);
  for (let i = 0; i < touched; i++) mm.write(va + i * PAGE, new Uint8Array(4));
  const bond = g.guest.core.sva.bindDevice(g.guest.device, mm);
  ctx.bindSpace(bond.pasid, (addr) => {
    const m = mm.lookup(addr);
    return m === null ? null : g.vm.hpa(m.pa + (addr - m.va));
  });
  return { mm, bond };
}
