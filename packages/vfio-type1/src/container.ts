import { Errno, KernelBug, KernelError, type Kernel } from "@vsva/kernel";
import { type IommuCore, type IommuDevice, type IommuDomain, type Iommu, IommuProt, PagingDomain } from "@vsva/iommu-core";
import type { IoasidCore, IoasidSet } from "@vsva/ioasid";
import { DmaTree, type VfioDma } from "./dma/dma-tree.js";
import { type IovaRange, type MapArgs, checkMapArgs, checkMapInRanges, checkUnmapArgs, clampRange } from "./dma/dma-args.js";
import { planUnmap, planUnmapV1 } from "./dma/unmap-plan.js";
import type { VfioDevice } from "./device.js";
import type { VfioGroup } from "./group.js";
import { VfioExtension } from "./uapi/ioctl.js";
import type { VfioUser } from "./user.js";
import type { VfioMm } from "./vfio-mm.js";
import "./trace-events.js";

const PAGE_SIZE = 4096;
/** With no IOMMU domain (only external mdevs), any multiple of the CPU page: PAGE_MASK as a bitmap. */
const PAGE_MASK_BITMAP = ((1n << 64n) - 1n) & ~0xfffn;

/** A mapping and the pages it pinned. */
interface ContainerDma extends VfioDma {
  /** Host-physical address of each 4 KiB page, in IOVA order. */
  readonly pages: readonly number[];
}

export interface ContainerLimits {
  /** dma_entry_limit: mappings per container (v5.10 default U16_MAX). */
  readonly dmaEntryLimit: number;
  /** Reserved IOVA ranges the IOMMU reports (the MSI window): never mappable. */
  readonly reserved: readonly IovaRange[];
}

export interface ContainerDeps {
  readonly kernel: Kernel;
  readonly core: IommuCore;
  readonly ioasid: IoasidCore;
  readonly user: VfioUser;
  readonly limits: ContainerLimits;
  /** The per-mm state of the series' vfio_mm (the VM's IOASID set); made on SET_IOMMU(NESTING). */
  readonly mmFor: (user: VfioUser) => VfioMm;
}

/** Where a nesting op goes for one device: its domain and the device the IOMMU core is given. */
export interface NestingTarget {
  readonly domain: IommuDomain;
  readonly dev: IommuDevice;
  readonly device: VfioDevice;
}

/** IOMMU types SET_IOMMU accepts: type1 (v1 unmap semantics), type1v2 and the series' nesting type (implies v2). */
type IommuType = typeof VfioExtension.TYPE1_IOMMU | typeof VfioExtension.TYPE1v2_IOMMU | typeof VfioExtension.TYPE1_NESTING_IOMMU;

/**
 * A VFIO container with the type1 IOMMU backend (`struct vfio_iommu`):
 * its groups, one IOMMU domain per IOMMU they sit behind, the DMA mappings
 * (mapped into every domain, with the user's pages pinned and charged), and
 * for the nesting type the VM's IOASID set.
 *
 * It lives while its file or any group holds it; when the last group leaves,
 * the backend is released: every guest PASID unbound, every mapping unmapped
 * and unpinned, the domains freed, the VM's PASIDs freed.
 */
export class VfioContainer {
  readonly #d: ContainerDeps;
  readonly groups = new Set<VfioGroup>();
  #type: IommuType | null = null;
  readonly #domains = new Map<Iommu, IommuDomain>();
  /** Groups of mdevs that are not IOMMU-backed (v5.10's "external domain"). */
  readonly #external = new Set<VfioGroup>();
  readonly #dma = new DmaTree<ContainerDma>();
  /** Physical devices this container turned SVA on for (nesting), to turn it off again at detach. */
  readonly #svaEnabled = new Set<IommuDevice>();
  #dmaAvail: number;
  #vmm: VfioMm | null = null;
  #fileOpen = true;

  constructor(deps: ContainerDeps) {
    this.#d = deps;
    this.#dmaAvail = deps.limits.dmaEntryLimit;
  }

  get user(): VfioUser {
    return this.#d.user;
  }

  get iommuType(): IommuType | null {
    return this.#type;
  }

  get nesting(): boolean {
    return this.#type === VfioExtension.TYPE1_NESTING_IOMMU;
  }

  get dmaAvail(): number {
    return this.#dmaAvail;
  }

  get mappings(): readonly VfioDma[] {
    return this.#dma.entries();
  }

  /** The VM's IOASID set (nesting containers), or null. */
  get ioasidSet(): IoasidSet | null {
    return this.#vmm?.set ?? null;
  }

  get domains(): readonly IommuDomain[] {
    return [...this.#domains.values()];
  }

  // ------------------------------------------------------------ extensions

  /** VFIO_CHECK_EXTENSION through type1 (vfio_iommu_type1_check_extension). */
  checkExtension(ext: number): number {
    switch (ext) {
      case VfioExtension.TYPE1_IOMMU:
      case VfioExtension.TYPE1v2_IOMMU:
      case VfioExtension.TYPE1_NESTING_IOMMU:
      case VfioExtension.UNMAP_ALL:
        return 1;
      case VfioExtension.DMA_CC_IOMMU:
        // Every IOMMU modelled here snoops (VT-d ECAP.SC, SMMUv3 COHACC).
        return this.#type === null ? 0 : 1;
      default:
        return 0;
    }
  }

  /**
   * VFIO_SET_IOMMU (vfio_ioctl_set_iommu): EINVAL with no group or an IOMMU
   * already set; ENODEV for a type type1 does not drive; then each group is
   * attached, and a failure detaches the ones before it.
   */
  setIommu(type: number): number {
    if (this.groups.size === 0 || this.#type !== null) throw new KernelError(Errno.EINVAL, this.groups.size === 0 ? "SET_IOMMU: no group in the container" : "SET_IOMMU: an IOMMU is already set");
    if (type !== VfioExtension.TYPE1_IOMMU && type !== VfioExtension.TYPE1v2_IOMMU && type !== VfioExtension.TYPE1_NESTING_IOMMU) {
      throw new KernelError(Errno.ENODEV, `SET_IOMMU: no IOMMU driver for type ${type}`);
    }
    if (type === VfioExtension.TYPE1_NESTING_IOMMU && this.groups.size > 1) {
      // The series: a nesting container holds one group (v2 changelog "d").
      throw new KernelError(Errno.EINVAL, "SET_IOMMU: a nesting container takes one group");
    }
    this.#type = type;
    const done: VfioGroup[] = [];
    try {
      if (this.nesting) this.#vmm = this.#d.mmFor(this.#d.user).get();
      for (const g of this.groups) {
        this.#attachGroup(g);
        done.push(g);
      }
    } catch (e) {
      for (const g of done.reverse()) this.#detachGroup(g);
      this.#vmm?.put();
      this.#vmm = null;
      this.#type = null;
      throw e;
    }
    return 0;
  }

  // ---------------------------------------------------------------- groups

  /** @internal VFIO_GROUP_SET_CONTAINER: with an IOMMU set, the group is attached at once. */
  addGroup(g: VfioGroup): void {
    if (this.#type !== null) {
      if (this.nesting && this.groups.size > 0) throw new KernelError(Errno.EINVAL, "a nesting container takes one group");
      this.#attachGroup(g);
    }
    this.groups.add(g);
    g.container = this;
  }

  /** @internal the group's last container user went: detach it; the last group releases the backend. */
  removeGroup(g: VfioGroup): void {
    if (!this.groups.has(g)) throw new KernelBug(`group ${g.id} is not in this container`);
    if (this.#type !== null) this.#detachGroup(g);
    this.groups.delete(g);
    g.container = null;
    if (this.groups.size === 0 && this.#type !== null) this.#releaseBackend();
  }

  /** @internal the container file closed; groups may still hold the container. */
  fileClosed(): void {
    this.#fileOpen = false;
  }

  get live(): boolean {
    return this.#fileOpen || this.groups.size > 0;
  }

  #iommuDevices(g: VfioGroup) {
    return g.devices.map((d) => d.iommuDevice).filter((d) => d !== null);
  }

  /**
   * vfio_iommu_type1_attach_group: an mdev that is not IOMMU-backed joins the
   * external domain (its vendor driver pins what it needs); anything else is
   * attached to the container's domain for its IOMMU, made on first use and
   * given every existing mapping (vfio_iommu_replay).
   */
  #attachGroup(g: VfioGroup): void {
    const devs = this.#iommuDevices(g);
    if (g.isMdevGroup && devs.length === 0) {
      this.#external.add(g);
      return;
    }
    const first = devs[0];
    if (first === undefined || first.iommu === null) throw new KernelError(Errno.ENODEV, `group ${g.id} has no IOMMU`);
    let domain = this.#domains.get(first.iommu);
    let fresh = false;
    if (domain === undefined) {
      const set = this.#vmm?.set;
      domain = this.#d.core.domainAlloc(first, set === undefined ? { type: "unmanaged", nestingParent: false } : { type: "unmanaged", nestingParent: true, ioasidSet: set });
      fresh = true;
    }
    try {
      if (g.isMdevGroup) for (const d of devs) this.#d.core.attachSubDevice(domain, d);
      else if (g.iommuGroup !== null) this.#d.core.attachGroup(domain, g.iommuGroup);
      if (fresh) this.#replay(domain);
      if (this.nesting) this.#enableSva(g.devices);
    } catch (e) {
      this.#disableSva(g.devices);
      this.#detachFrom(domain, g);
      if (fresh) this.#d.core.domainFree(domain);
      throw e;
    }
    if (fresh) this.#domains.set(first.iommu, domain);
  }

  /**
   * A guest binds PASIDs on the devices it is given, so their PASID use is
   * turned on with the group (VT-d in scalable mode enables PASID on the
   * function when it attaches it: drivers/iommu/intel/iommu.c,
   * iommu_enable_dev_iotlb → pci_enable_pasid); in this core that is the
   * device's SVA feature. An mdev's parent is its vendor driver's to enable;
   * the mdev gets only VFIO's fault handler, which the core gives the page
   * requests of the PASIDs bound through it.
   */
  #enableSva(vdevs: readonly VfioDevice[]): void {
    for (const v of vdevs) {
      const d = v.iommuDevice;
      if (d?.isSubDevice === true) {
        const faults = v.faults;
        if (faults === null || this.#svaEnabled.has(d)) continue;
        this.#d.core.registerDeviceFaultHandler(d, (_dev, fault) => faults.produce(fault));
        this.#svaEnabled.add(d);
        continue;
      }
      if (d === null || d.pasidWidth === 0 || d.hasFeature("sva")) continue;
      // The guest's recoverable faults go to the device's DMA fault region,
      // so VFIO's handler goes in before SVA would install the host's queue.
      const faults = v.faults;
      if (faults !== null) this.#d.core.registerDeviceFaultHandler(d, (_dev, fault) => faults.produce(fault));
      try {
        this.#d.core.enableFeature(d, "sva");
      } catch (e) {
        if (faults !== null) this.#d.core.unregisterDeviceFaultHandler(d);
        throw e;
      }
      this.#svaEnabled.add(d);
    }
  }

  #disableSva(vdevs: readonly VfioDevice[]): void {
    for (const v of vdevs) {
      const d = v.iommuDevice;
      if (d === null || !this.#svaEnabled.delete(d)) continue;
      if (!d.isSubDevice && d.hasFeature("sva")) this.#d.core.disableFeature(d, "sva");
      if (v.faults !== null) this.#d.core.unregisterDeviceFaultHandler(d);
    }
  }

  #detachFrom(domain: IommuDomain, g: VfioGroup): void {
    if (g.isMdevGroup) {
      for (const d of this.#iommuDevices(g)) if (d.auxDomain === domain) this.#d.core.detachSubDevice(domain, d);
    } else if (g.iommuGroup !== null && g.iommuGroup.domain === domain) {
      this.#d.core.detachGroup(domain, g.iommuGroup);
    }
  }

  /** vfio_iommu_type1_detach_group: detaching unbinds the group's guest PASIDs (the core does); an emptied domain is freed. */
  #detachGroup(g: VfioGroup): void {
    if (this.#external.delete(g)) return;
    for (const [iommu, domain] of this.#domains) {
      this.#detachFrom(domain, g);
      this.#disableSva(g.devices);
      const stillUsed = [...this.groups].some((o) => o !== g && this.#iommuDevices(o).some((d) => d.iommu === iommu));
      if (!stillUsed) {
        this.#unmapAllFrom(domain);
        this.#d.core.domainFree(domain);
        this.#domains.delete(iommu);
      }
    }
  }

  /** Maps every existing mapping into a new domain; a failure leaves the domain empty. */
  #replay(domain: IommuDomain): void {
    const done: ContainerDma[] = [];
    try {
      for (const dma of this.#dma.entries()) {
        this.#mapInto(domain, dma);
        done.push(dma);
      }
    } catch (e) {
      for (const dma of done) this.#d.core.unmap(domain, dma.iova, dma.size);
      throw e;
    }
  }

  #unmapAllFrom(domain: IommuDomain): void {
    for (const dma of this.#dma.entries()) this.#d.core.unmap(domain, dma.iova, dma.size);
  }

  /** Maps a pinned range as physically contiguous runs, so the core can pick large pages. */
  #mapInto(domain: IommuDomain, dma: ContainerDma): void {
    const prot = (dma.read ? IommuProt.READ : 0) | (dma.write ? IommuProt.WRITE : 0) | IommuProt.CACHE;
    let mapped = 0;
    try {
      for (let i = 0; i < dma.pages.length; ) {
        let n = 1;
        const start = dma.pages[i] ?? 0;
        while (i + n < dma.pages.length && dma.pages[i + n] === start + n * PAGE_SIZE) n++;
        this.#d.core.map(domain, dma.iova + i * PAGE_SIZE, start, n * PAGE_SIZE, prot);
        mapped = (i + n) * PAGE_SIZE;
        i += n;
      }
    } catch (e) {
      if (mapped > 0) this.#d.core.unmap(domain, dma.iova, mapped);
      throw e;
    }
  }

  // ------------------------------------------------------------------ info

  /** The IOMMU page sizes every domain supports (vfio_pgsize_bitmap). */
  get pgsizeBitmap(): bigint {
    let bitmap = PAGE_MASK_BITMAP;
    for (const d of this.#domains.values()) if (d instanceof PagingDomain) bitmap &= BigInt(d.driver.pgsizeBitmap);
    return bitmap;
  }

  /** The valid IOVA list (vfio_iommu_iova_get_copy): the domains' common aperture less the reserved regions. */
  get iovaRanges(): IovaRange[] {
    let start = 0;
    let end = Number.MAX_SAFE_INTEGER;
    for (const d of this.#domains.values()) {
      if (!(d instanceof PagingDomain)) continue;
      start = Math.max(start, d.driver.aperture.start);
      end = Math.min(end, d.driver.aperture.end);
    }
    let ranges: IovaRange[] = start <= end ? [{ start, end }] : [];
    for (const r of this.#d.limits.reserved) {
      ranges = ranges.flatMap((x) => {
        if (r.end < x.start || r.start > x.end) return [x];
        const out: IovaRange[] = [];
        if (x.start < r.start) out.push({ start: x.start, end: r.start - 1 });
        if (r.end < x.end) out.push({ start: r.end + 1, end: x.end });
        return out;
      });
    }
    return ranges;
  }

  // ------------------------------------------------------------- map/unmap

  /**
   * VFIO_IOMMU_MAP_DMA (vfio_dma_do_map), in its order: argument checks
   * (EINVAL); an overlap with a mapping (EEXIST); no entries left (ENOSPC);
   * outside the valid IOVA list (EINVAL); then pin and charge the user's
   * pages (EFAULT, ENOMEM past RLIMIT_MEMLOCK) and map them into every
   * domain. Any failure leaves nothing mapped, pinned or charged.
   */
  mapDma(a: MapArgs): void {
    this.#requireIommu("MAP_DMA");
    checkMapArgs(a, this.pgsizeBitmap);
    const probe = clampRange(a.iova, a.size);
    if (probe.size > 0 && this.#dma.find(probe.iova, probe.size) !== undefined) {
      throw new KernelError(Errno.EEXIST, `MAP_DMA: [0x${a.iova.toString(16)}, +0x${a.size.toString(16)}) overlaps an existing mapping`);
    }
    if (this.#dmaAvail === 0) throw new KernelError(Errno.ENOSPC, `MAP_DMA: all ${this.#d.limits.dmaEntryLimit} mappings in use`);
    const r = checkMapInRanges(a, this.iovaRanges);
    const npages = r.size / PAGE_SIZE;
    this.#d.user.chargeLocked(r.size);
    let pages: number[];
    try {
      this.#d.kernel.faults.inject("vfio.pin");
      pages = this.#d.user.pages.pin(r.vaddr, npages);
    } catch (e) {
      this.#d.user.chargeLocked(-r.size);
      throw e;
    }
    const dma: ContainerDma = { iova: r.iova, size: r.size, vaddr: r.vaddr, read: a.read, write: a.write, pages };
    const done: IommuDomain[] = [];
    try {
      for (const domain of this.#domains.values()) {
        this.#mapInto(domain, dma);
        done.push(domain);
      }
    } catch (e) {
      for (const domain of done) this.#d.core.unmap(domain, dma.iova, dma.size);
      this.#d.user.pages.unpin(r.vaddr, npages);
      this.#d.user.chargeLocked(-r.size);
      throw e;
    }
    this.#dma.insert(dma);
    this.#dmaAvail--;
    this.#d.kernel.trace.emit("vfio.map", "VFIO", {}, { iova: r.iova, size: r.size, pinned: npages });
  }

  /**
   * VFIO_IOMMU_UNMAP_DMA (vfio_dma_do_unmap): returns the bytes unmapped. A
   * v2 (or nesting) container never splits a mapping (EINVAL, nothing
   * done); a v1 container unmaps every mapping the range touches, up to the
   * first that starts before it. `all` (v5.12 FLAG_ALL) takes everything.
   */
  unmapDma(a: { iova: bigint; size: bigint; all: boolean }): number {
    this.#requireIommu("UNMAP_DMA");
    checkUnmapArgs(a, this.pgsizeBitmap);
    let victims: ContainerDma[];
    if (a.all) victims = this.#dma.entries().slice();
    else {
      const r = clampRange(a.iova, a.size);
      if (r.size === 0) return 0;
      victims = this.#type === VfioExtension.TYPE1_IOMMU ? planUnmapV1(this.#dma, r.iova, r.size) : planUnmap(this.#dma, r.iova, r.size);
    }
    let bytes = 0;
    for (const dma of victims) {
      this.#removeDma(dma);
      bytes += dma.size;
    }
    return bytes;
  }

  #removeDma(dma: ContainerDma): void {
    for (const domain of this.#domains.values()) this.#d.core.unmap(domain, dma.iova, dma.size);
    this.#d.user.pages.unpin(dma.vaddr, dma.pages.length);
    this.#d.user.chargeLocked(-dma.size);
    this.#dma.remove(dma);
    this.#dmaAvail++;
    this.#d.kernel.trace.emit("vfio.unmap", "VFIO", {}, { iova: dma.iova, size: dma.size });
  }

  #requireIommu(what: string): void {
    if (this.#type === null) throw new KernelError(Errno.EINVAL, `${what}: no IOMMU set on the container`);
  }

  // --------------------------------------------------------------- nesting

  /** The devices a nesting op goes to: every device of every group, mdevs as their IOMMU sub-device. */
  nestingTargets(): NestingTarget[] {
    const out: NestingTarget[] = [];
    for (const g of this.groups) {
      for (const device of g.devices) {
        const dev = device.iommuDevice;
        const iommu = dev?.iommu ?? null;
        const domain = iommu === null ? undefined : this.#domains.get(iommu);
        if (dev !== null && domain !== undefined) out.push({ domain, dev, device });
      }
    }
    return out;
  }

  /** Devices of the container that have no IOMMU backing (nesting ops refuse them). */
  get externalDevices(): VfioDevice[] {
    return [...this.#external].flatMap((g) => g.devices);
  }

  // --------------------------------------------------------------- release

  /**
   * The last group left (vfio_iommu_type1_release): unbind every guest
   * PASID (detaching did, through the core), unmap and unpin every mapping,
   * free the domains, then drop the VM's IOASID set, which frees every PASID
   * it still holds. The FREE notifications reach KVM, the VDCM and the IOMMU
   * driver in priority order; free always succeeds.
   */
  #releaseBackend(): void {
    for (const domain of this.#domains.values()) {
      this.#unmapAllFrom(domain);
      this.#d.core.domainFree(domain);
    }
    this.#domains.clear();
    this.#external.clear();
    for (const dma of this.#dma.entries()) {
      this.#d.user.pages.unpin(dma.vaddr, dma.pages.length);
      this.#d.user.chargeLocked(-dma.size);
      this.#dma.remove(dma);
      this.#dmaAvail++;
    }
    this.#vmm?.put();
    this.#vmm = null;
    this.#type = null;
  }
}
