import { Errno, Kernel, KernelBug, KernelError, type SourceId, type VmId, asVmId, isKernelError, sourceId } from "@vsva/kernel";
import type { PhysMem } from "@vsva/pgtable";
import type { IoasidCore } from "@vsva/ioasid";
import type { NestingInfo, PageAllocator } from "@vsva/iommu-core";
import type { PciEndpoint } from "@vsva/iommu-hw";
import { KvmPasid } from "@vsva/kvm-pasid";
import { GuestRamPages, type Vfio, type VfioContainerFile, VfioDeviceFile, VfioExtension, VfioIoctl, VfioUser } from "@vsva/vfio-type1";
import "./trace-events.js";
import { GuestRam, PAGE } from "./guest-ram.js";
import { cString, fdArg, mapDma, nestingInfo } from "./vfio-uapi.js";
import { type GuestPasidMode, type ViommuDevice, VirtualVtd } from "./viommu.js";

/** Where the VMM maps guest RAM in its own address space (QEMU's RAM block `host` pointer): MAP_DMA's vaddr is this + GPA. */
export const VMM_RAM_BASE = 0x7f00_0000_0000;

/** What a VM needs of its host: the kernel (clock, trace, faults), RAM and its page allocator, the IOASID namespace. A `@vsva/machine` Board is one. */
export interface VmHost {
  readonly kernel: Kernel;
  readonly mem: PhysMem;
  readonly pages: PageAllocator;
  readonly ioasid: IoasidCore;
}

/** A PCIe function the host administrator gave to vfio-pci for this VM. */
export interface AssignedDevice {
  /** Its IOMMU group number (/dev/vfio/N). */
  readonly group: number;
  /** Its name in VFIO (the device name GROUP_GET_DEVICE_FD takes). */
  readonly name: string;
  /**
   * The function itself: its BAR is mapped straight into the guest (QEMU
   * mmaps vfio-pci's BAR regions into guest-physical space, so the guest
   * driver's register accesses reach the device without an exit), which is
   * how a guest driver programs its DMA engine.
   */
  readonly endpoint: PciEndpoint;
}

/** An mdev the host administrator created for this VM (the VDCM's, on a WQ of the host's accelerator). */
export interface VmMdev {
  /** Its IOMMU group number (/dev/vfio/N). */
  readonly group: number;
  /** Its name in VFIO. */
  readonly name: string;
  /** Where it sits in the guest's PCI hierarchy. */
  readonly guestBdf: { readonly bus: number; readonly dev: number; readonly fn: number };
}

export interface VmOptions {
  readonly host: VmHost;
  readonly vfio: Vfio;
  /** VM number: the kernel context is `vm<id>` and KVM's VM ID is it. */
  readonly id: number;
  /** Guest RAM in bytes (a multiple of 64 KiB), at GPA 0. */
  readonly ramBytes: number;
  readonly device: AssignedDevice;
  /** Seeds which host page backs which guest page (default: the VM number). */
  readonly scatterSeed?: number;
  /** Guest-physical address width (default 39). */
  readonly addrBits?: number;
  /** Where the assigned device sits in the guest's PCI hierarchy (default 00:04.0). */
  readonly guestBdf?: { readonly bus: number; readonly dev: number; readonly fn: number };
  /**
   * How the vIOMMU numbers guest PASIDs (default `identity`: the host's
   * numbers). `spid`: a namespace of the VM's own, each guest PASID the
   * SPID of a host PASID; only devices whose PASIDs the host translates
   * (mdevs, ENQCMD through KVM) can use them: an assigned function's DMA
   * carries the guest's number to the host IOMMU untranslated.
   */
  readonly guestPasids?: GuestPasidMode;
  /**
   * `spid` only: the lowest guest PASID the vIOMMU's virtual command hands
   * the guest (default 1). The guest cannot ask for a range: the virtual
   * command allocates from the whole PASID space, and the host partitions
   * the guest's range by its own policy (the comment in Linux's
   * drivers/iommu/intel/iommu.c: intel_vcmd_ioasid_alloc(), v5.10). EINVAL
   * unless an integer from 1 up to the PASID space's last.
   */
  readonly firstGuestPasid?: number;
  /**
   * The VMM process's mm (default a fresh one): given when the host made
   * something for this VM before it started that names it by its VMM's mm,
   * as the VDCM's `createMdev(name, wq, { vm, mm })` does.
   */
  readonly mm?: object;
  /** mdevs the VMM opens into the VM's container, after the assigned function. */
  readonly mdevs?: readonly VmMdev[];
}

export type VmState = "running" | "dead";

/**
 * A virtual machine as QEMU with KVM and VFIO makes one (the flow of the
 * 2020 vSVA series' cover letter, "VFIO: expose virtual Shared Virtual
 * Addressing to VMs"): guest RAM backed by scattered host pages; a guest
 * kernel context on the host's clock; a VMM process that opens a VFIO
 * container of the nesting type, attaches the assigned device's group and
 * maps all guest RAM with MAP_DMA at IOVA = GPA (the second level of every
 * later nested bind); KVM's PASID translation for the VM, registered by
 * the VMM's mm, so it follows the IOASID set VFIO makes for that mm; and
 * the VM's virtual VT-d ({@link VirtualVtd}), shadowed onto the container.
 *
 * `kill()` is the VMM process dying: its files close (VFIO's release
 * unbinds, unmaps, unpins and frees every PASID of the VM), KVM's VM goes,
 * and guest RAM is returned to the host.
 */
export class Vm {
  readonly id: VmId;
  readonly name: string;
  readonly host: VmHost;
  /** The guest's kernel services: a context of the host's system. */
  readonly kernel: Kernel;
  readonly ram: GuestRam;
  /** The VMM process. */
  readonly vmm: VfioUser;
  /** The VMM's mm: the token of the VM's IOASID set and of KVM's notifier. */
  readonly mm: object;
  readonly kvm: KvmPasid;
  readonly container: VfioContainerFile;
  readonly deviceFile: VfioDeviceFile;
  /** The host IOMMU's nesting info as VFIO reports it (GET_INFO's NESTING capability). */
  readonly nesting: NestingInfo;
  readonly device: AssignedDevice;
  /** The assigned device's requester ID in the guest. */
  readonly guestSid: SourceId;
  /** The mdevs' device files, in the order of `VmOptions.mdevs`: the VMM forwards the guest's accesses to their regions. */
  readonly mdevFiles: readonly VfioDeviceFile[];
  /** The mdevs' requester IDs in the guest, in the same order. */
  readonly mdevSids: readonly SourceId[];
  /** The VM's virtual VT-d: the VMM's device model, which the guest's kernel drives. */
  readonly viommu: VirtualVtd;
  #state: VmState = "running";

  /**
   * Builds the VM. Errors (nothing of the VM is left on any): ENOMEM (guest
   * RAM, the pins' RLIMIT_MEMLOCK, KVM's table, the IOASID set), EEXIST (a
   * context named `vm<id>` exists), ENODEV/EBUSY/EINVAL from VFIO (the
   * group is not viable or taken), ENODEV when the host IOMMU offers no
   * nesting (GET_INFO has no usable NESTING capability).
   */
  constructor(opts: VmOptions) {
    const { host, vfio } = opts;
    this.id = asVmId(opts.id);
    this.name = `vm${opts.id}`;
    this.host = host;
    this.device = opts.device;
    const bdf = opts.guestBdf ?? { bus: 0, dev: 4, fn: 0 };
    this.guestSid = sourceId(bdf.bus, bdf.dev, bdf.fn);
    const first = opts.firstGuestPasid;
    if (first !== undefined && (!Number.isSafeInteger(first) || first < 1 || first >= 2 ** 20 || opts.guestPasids !== "spid")) {
      throw new KernelError(Errno.EINVAL, `${this.name}: first guest PASID ${String(first)}: an integer in 1..${2 ** 20 - 1}, for SPID guest PASIDs only`);
    }
    this.kernel = new Kernel({ system: host.kernel, context: this.name });
    this.mm = opts.mm ?? { vmm: this.name };
    const mdevs = opts.mdevs ?? [];
    this.mdevSids = mdevs.map((m) => sourceId(m.guestBdf.bus, m.guestBdf.dev, m.guestBdf.fn));
    const undo: (() => void)[] = [];
    try {
      const ram = new GuestRam({
        host: host.mem,
        pages: host.pages,
        faults: host.kernel.faults,
        bytes: opts.ramBytes,
        addrBits: opts.addrBits ?? 39,
        scatterSeed: opts.scatterSeed ?? opts.id,
        tag: `${this.name} RAM`,
      });
      this.ram = ram;
      undo.push(() => ram.free());
      const user = new VfioUser({ name: `qemu-${this.name}`, mm: this.mm, pages: new GuestRamPages(ram.view, VMM_RAM_BASE), memlockLimit: opts.ramBytes * (1 + mdevs.length) });
      this.vmm = user;
      undo.push(() => user.exit());
      // KVM_CREATE_VM comes before any VFIO device: KVM registers by mm and waits for the set VFIO makes.
      const kvm = new KvmPasid({
        vm: this.id,
        mm: this.mm,
        ioasid: host.ioasid,
        mem: host.mem,
        pages: {
          alloc: () => {
            try {
              return host.pages.allocPage(`${this.name} KVM PASID table`);
            } catch (e) {
              if (isKernelError(e)) return null;
              throw e;
            }
          },
          free: (pa) => host.pages.freePages(pa),
        },
        trace: host.kernel.trace,
        faults: host.kernel.faults,
        log: host.kernel.log,
      });
      this.kvm = kvm;
      undo.push(() => kvm.destroy());
      const c = vfio.openContainer(user);
      const g = vfio.openGroup(user, opts.device.group);
      g.ioctl(VfioIoctl.GROUP_SET_CONTAINER, fdArg(c.fd));
      c.ioctl(VfioIoctl.SET_IOMMU, VfioExtension.TYPE1_NESTING_IOMMU);
      this.container = c;
      const info = nestingInfo(c);
      if (info?.vendor?.kind !== "vtd") throw new KernelError(Errno.ENODEV, `${this.name}: the host IOMMU reports no VT-d nesting (GET_INFO has no usable NESTING capability)`);
      this.nesting = info;
      mapDma(c, VMM_RAM_BASE, 0, opts.ramBytes);
      const fd = g.ioctl(VfioIoctl.GROUP_GET_DEVICE_FD, cString(opts.device.name));
      const file = user.file(fd);
      if (!(file instanceof VfioDeviceFile)) throw new KernelBug(`GROUP_GET_DEVICE_FD gave fd ${fd}, which is no device file`);
      this.deviceFile = file;
      const mdevFiles: VfioDeviceFile[] = [];
      const devices: ViommuDevice[] = [{ sid: this.guestSid, container: c, file }];
      for (const [i, m] of mdevs.entries()) {
        // Behind a vIOMMU every device has an address space, so a container, of its own (QEMU's vfio_connect_container per
        // address space; a nesting container takes one group), with all guest RAM mapped again.
        const mc = vfio.openContainer(user);
        const mg = vfio.openGroup(user, m.group);
        mg.ioctl(VfioIoctl.GROUP_SET_CONTAINER, fdArg(mc.fd));
        mc.ioctl(VfioIoctl.SET_IOMMU, VfioExtension.TYPE1_NESTING_IOMMU);
        mapDma(mc, VMM_RAM_BASE, 0, opts.ramBytes);
        const mfd = mg.ioctl(VfioIoctl.GROUP_GET_DEVICE_FD, cString(m.name));
        const mf = user.file(mfd);
        if (!(mf instanceof VfioDeviceFile)) throw new KernelBug(`GROUP_GET_DEVICE_FD gave fd ${mfd}, which is no device file`);
        mdevFiles.push(mf);
        const sid = this.mdevSids[i];
        if (sid !== undefined) devices.push({ sid, container: mc, file: mf });
      }
      this.mdevFiles = mdevFiles;
      // The machine's vIOMMU, realized last: its capabilities come from what VFIO reported.
      this.viommu = new VirtualVtd(this, { devices, guestPasids: opts.guestPasids ?? "identity", ...(first === undefined ? {} : { firstGuestPasid: first }) });
    } catch (e) {
      for (const u of undo.reverse()) u();
      this.#state = "dead";
      throw e;
    }
  }

  get state(): VmState {
    return this.#state;
  }

  /** The host page (its byte) behind guest-physical `gpa`, or null in a hole. */
  hpa(gpa: number): number | null {
    return this.ram.hpa(gpa);
  }

  /** Guest RAM bytes. */
  get ramBytes(): number {
    return this.ram.bytes;
  }

  /**
   * The VMM process dies (or QEMU quits): exit closes every VFIO file
   * (release unbinds the guest's PASIDs, unmaps and unpins guest RAM, frees
   * the VM's IOASID set), then KVM's VM is destroyed and its PASID table
   * freed, then guest RAM goes back to the host. Idempotent; cannot fail.
   */
  kill(): void {
    if (this.#state === "dead") return;
    this.#state = "dead";
    this.host.kernel.trace.emit("vmm.exit", "VMM", { vm: this.id }, { name: this.name, ramPages: this.ram.hostPages });
    this.vmm.exit();
    this.kvm.destroy();
    this.ram.free();
  }

  /** @internal for the parts of the VM: a KernelBug if the VM is gone. */
  checkRunning(): void {
    if (this.#state !== "running") throw new KernelBug(`${this.name} is dead`);
  }
}

export { PAGE };
