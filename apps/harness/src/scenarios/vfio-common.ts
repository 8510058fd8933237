import { Errno, KernelError, type VmId, asVmId } from "@vsva/kernel";
import { CacheInvType, IOMMU_SVA_GPASID_VAL, InvGranularity, encodeCacheInvalidateInfo, encodeGpasidBindData } from "@vsva/iommu-core";
import { Ia32Pasid, KvmPasid, type TablePageSource } from "@vsva/kvm-pasid";
import { GuestMemoryView } from "@vsva/machine";
import { GuestRamPages, NestingOp, type PciConfigAccess, Vfio, type VfioContainerFile, VfioExtension, VfioIoctl, VfioUser, vfioPciOps, vfioUapi } from "@vsva/vfio-type1";
import type { DeviceSlot, Host } from "../world/host.js";
import { MiB } from "../world/host.js";
import type { StepContext } from "../world/host-scenario.js";

const PAGE = 0x1000;
/** Where a VMM maps guest RAM in its own address space (QEMU's RAM block `host` pointer). */
export const VMM_RAM_BASE = 0x7f00_0000_0000;

/** VFIO on the scenario's host, as the module loads: it holds no state that needs unloading. */
export function vfioOn(host: Host, opts: { pasidQuota?: number } = {}): Vfio {
  return new Vfio({ kernel: host.kernel, core: host.core, ioasid: host.ioasid, ...(opts.pasidQuota === undefined ? {} : { pasidQuota: opts.pasidQuota }) });
}

/** A function's config space as vfio-pci reads it. */
export function configOf(slot: DeviceSlot): PciConfigAccess {
  const space = slot.ep.config.space;
  return { size: 4096, read: (o, s) => space.read(o, s), write: (o, s, v) => space.write(o, s, v) };
}

export interface Vmm {
  readonly user: VfioUser;
  readonly ram: GuestMemoryView;
  readonly pages: GuestRamPages;
  /** The host page behind guest page `gpa`. */
  hpa(gpa: number): number;
}

/**
 * The VMM process stand-in: guest RAM of `size` bytes, a GuestMemoryView
 * over host memory at [hostBase, hostBase + size) whose 64 KiB chunks are
 * placed in reverse order (guest RAM is scattered in host-physical space,
 * as a VMM's anonymous memory is), mapped in the VMM at VMM_RAM_BASE. Its
 * exit (closing every VFIO file) is deferred.
 */
export function startVmm(ctx: StepContext, name: string, hostBase: number, size: number, mm: object = { vmm: name }): Vmm {
  const ram = new GuestMemoryView({ host: ctx.host.mem, addrBits: 39 });
  const CHUNK = 0x1_0000;
  const n = size / CHUNK;
  for (let i = 0; i < n; i++) ram.map(i * CHUNK, hostBase + (n - 1 - i) * CHUNK, CHUNK);
  const pages = new GuestRamPages(ram, VMM_RAM_BASE);
  const user = new VfioUser({ name, mm, pages, memlockLimit: 64 * MiB });
  ctx.defer(`${name} exits (every VFIO file it holds is closed)`, () => user.exit());
  return {
    user,
    ram,
    pages,
    hpa: (gpa) => {
      const pa = ram.gpaToHpa(gpa);
      if (pa === null) throw new Error(`guest page 0x${gpa.toString(16)} has no backing`);
      return pa;
    },
  };
}

export interface Vm extends Vmm {
  readonly kvm: KvmPasid;
}

/**
 * Host pages for KVM's PASID translation structure, from the kernel's page
 * pool (KVM allocates them as the kernel does); null when the pool is dry
 * (or an injected ENOMEM), which KVM turns into its own ENOMEM.
 */
export function kvmPages(host: Host): TablePageSource {
  return {
    alloc: () => {
      try {
        return host.pages.allocPage("kvm.pasid-table");
      } catch (e) {
        if (e instanceof KernelError && e.errno === Errno.ENOMEM) return null;
        throw e;
      }
    },
    free: (pa) => host.pages.freePages(pa),
  };
}

/**
 * A VM (`mm`: the token of its VMM process, when something was made for it
 * already): KVM starts first (the VM is created before any device is assigned),
 * registering its PASID notifier by the VM's mm token while VFIO has made no
 * IOASID set for it yet (the notifier waits on the pending list); then the
 * VMM process of {@link startVmm}. The invariant checker follows KVM's table
 * from here. Teardown: the VMM exits (its VFIO files close, releasing binds
 * and PASIDs), then KVM's VM is destroyed, dropping whatever it still held.
 */
export function startVm(ctx: StepContext, name: string, hostBase: number, size: number, vm: VmId = asVmId(1), mm: object = { vmm: name }): Vm {
  const h = ctx.host;
  const kvm = ctx.step(`KVM: create VM ${vm} for ${name}; its PASID notifier registers by the VM's mm token (no IOASID set yet)`, () =>
    new KvmPasid({ vm, mm, ioasid: h.ioasid, mem: h.mem, pages: kvmPages(h), trace: h.kernel.trace, faults: h.kernel.faults, log: h.kernel.log }));
  ctx.watchKvm(kvm, mm);
  ctx.defer(`KVM destroys VM ${vm} (drops every reference it still holds)`, () => {
    ctx.unwatchKvm(kvm);
    kvm.destroy();
  });
  return { ...startVmm(ctx, name, hostBase, size, mm), kvm };
}

/** The IA32_PASID value of a guest thread that was given `gpasid` (VALID set). */
export function ia32Pasid(gpasid: number): bigint {
  const v = Ia32Pasid.encode({ PASID: gpasid, VALID: 1 });
  return BigInt(v[0] ?? 0) | (BigInt(v[1] ?? 0) << 32n);
}

/** vfio-pci takes the function; its removal from VFIO is deferred (it runs after the VMM has gone). */
export function bindToVfio(ctx: StepContext, vfio: Vfio, slot: DeviceSlot): void {
  const vdev = vfio.bindPciDevice(slot.dev, vfioPciOps(configOf(slot)));
  ctx.defer(`vfio-pci releases ${slot.dev.name}`, () => vfio.removeDevice(vdev));
}

/** open the container and the group, join them, set the IOMMU type. */
export function openContainer(vfio: Vfio, vmm: Vmm, groupId: number, type: "type1v2" | "nesting"): VfioContainerFile {
  const c = vfio.openContainer(vmm.user);
  const g = vfio.openGroup(vmm.user, groupId);
  g.ioctl(VfioIoctl.GROUP_SET_CONTAINER, fdArg(c.fd));
  c.ioctl(VfioIoctl.SET_IOMMU, type === "nesting" ? VfioExtension.TYPE1_NESTING_IOMMU : VfioExtension.TYPE1v2_IOMMU);
  return c;
}

export function groupOf(slotOrDev: { readonly group: { readonly id: number } | null }): number {
  const g = slotOrDev.group;
  if (g === null) throw new Error("the device has no IOMMU group");
  return g.id;
}

// --- UAPI structs as the VMM fills them ---------------------------------------

export const { fdArg, nestingOp } = vfioUapi;

/** VFIO_IOMMU_MAP_DMA of guest RAM [gpa, gpa + size) at IOVA = GPA (a VMM without a vIOMMU maps RAM 1:1). */
export function mapGuestRam(c: VfioContainerFile, vmm: Vmm, gpa: number, size: number): void {
  c.ioctl(VfioIoctl.IOMMU_MAP_DMA, vfioUapi.dmaMap({ vaddr: vmm.pages.vaddr(gpa), iova: gpa, size }));
}

export function unmapIova(c: VfioContainerFile, iova: number, size: number): void {
  c.ioctl(VfioIoctl.IOMMU_UNMAP_DMA, vfioUapi.dmaUnmap({ iova, size }));
}

export function allocPasid(c: VfioContainerFile, min: number, max: number): number {
  return c.ioctl(VfioIoctl.IOMMU_PASID_REQUEST, vfioUapi.pasidRequest({ alloc: true, min, max }));
}

export function freePasids(c: VfioContainerFile, min: number, max: number): number {
  return c.ioctl(VfioIoctl.IOMMU_PASID_REQUEST, vfioUapi.pasidRequest({ free: true, min, max }));
}

/** NESTING_OP BIND_PGTBL; with `gpasid`, the guest's PASID for it too (IOMMU_SVA_GPASID_VAL), which the host attaches as the SPID. */
export const bindOp = (hpasid: number, gpgd: number, gpasid?: number): Uint8Array =>
  nestingOp(
    NestingOp.BIND_PGTBL,
    encodeGpasidBindData({
      hpasid: BigInt(hpasid),
      gpgd: BigInt(gpgd),
      addrWidth: 48,
      ...(gpasid === undefined ? {} : { flags: BigInt(IOMMU_SVA_GPASID_VAL), gpasid: BigInt(gpasid) }),
    }),
  );
export const unbindOp = (hpasid: number): Uint8Array => nestingOp(NestingOp.UNBIND_PGTBL, encodeGpasidBindData({ hpasid: BigInt(hpasid), addrWidth: 48 }));
/**
 * The guest's PASID-selective IOTLB invalidation, passed down by the VMM. It
 * names the IOTLB only: the host flushes the device TLB with it when ATS is
 * on (intel_iommu_sva_invalidate), and the invariant checker's stale
 * device-TLB check fails the run if it does not.
 */
export const invalidateOp = (hpasid: number): Uint8Array =>
  nestingOp(
    NestingOp.CACHE_INVLD,
    encodeCacheInvalidateInfo({ cache: CacheInvType.IOTLB, granularity: InvGranularity.PASID, pasidInfo: { flags: 1, pasid: BigInt(hpasid) } }),
  );

export { PAGE };
