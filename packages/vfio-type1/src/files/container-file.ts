import { Errno, KernelError } from "@vsva/kernel";
import type { VfioContainer } from "../container.js";
import { buildCapChain, type InfoCap } from "../uapi/info-caps.js";
import { VFIO_API_VERSION, VfioIoctl } from "../uapi/ioctl.js";
import {
  CapIovaRangeLayout, DMA_MAP_FLAGS_KNOWN, DmaMapFlag, DmaMapLayout, DmaUnmapFlag, DmaUnmapLayout, IommuInfoCap, IommuInfoFlag,
  IommuType1InfoLayout, IovaRangeLayout, NESTING_OP_MASK, NestingOp, NestingOpLayout, PasidRequestFlag, PasidRequestLayout,
} from "../uapi/structs.js";
import type { VfioUser } from "../user.js";
import { VfioFile } from "./file.js";
import { type IoctlArg, dispatchIoctl, ioctlTable } from "./ioctl-table.js";
import type { NestingDispatch } from "../nesting.js";

const TABLE = ioctlTable<VfioContainerFile>([
  { cmd: VfioIoctl.GET_API_VERSION, arg: "none", handler: () => VFIO_API_VERSION },
  { cmd: VfioIoctl.CHECK_EXTENSION, arg: "int", handler: (f, ext) => f.container.checkExtension(ext) },
  { cmd: VfioIoctl.SET_IOMMU, arg: "int", handler: (f, type) => f.setIommu(type) },
  { cmd: VfioIoctl.IOMMU_GET_INFO, arg: "struct", minsz: IommuType1InfoLayout.offsetOfEnd("iova_pgsizes"), handler: (f, u) => f.getInfo(u) },
  { cmd: VfioIoctl.IOMMU_MAP_DMA, arg: "struct", minsz: DmaMapLayout.offsetOfEnd("size"), knownFlags: DMA_MAP_FLAGS_KNOWN, handler: (f, u) => f.mapDma(u) },
  // v5.10 knows GET_DIRTY_BITMAP; dirty tracking is not modelled, so it is refused like an unknown flag.
  { cmd: VfioIoctl.IOMMU_UNMAP_DMA, arg: "struct", minsz: DmaUnmapLayout.offsetOfEnd("size"), knownFlags: DmaUnmapFlag.ALL, handler: (f, u) => f.unmapDma(u) },
  { cmd: VfioIoctl.IOMMU_PASID_REQUEST, arg: "struct", minsz: PasidRequestLayout.offsetOfEnd("max"), knownFlags: PasidRequestFlag.ALLOC | PasidRequestFlag.FREE, handler: (f, u) => f.pasidRequest(u) },
  { cmd: VfioIoctl.IOMMU_NESTING_OP, arg: "struct", minsz: NestingOpLayout.offsetOfEnd("flags"), knownFlags: NESTING_OP_MASK, handler: (f, u) => f.nestingOp(u) },
]);

/** Requests that reach the IOMMU backend only once SET_IOMMU has chosen one (vfio_fops_unl_ioctl's default case). */
const BACKEND = new Set<number>([VfioIoctl.IOMMU_GET_INFO, VfioIoctl.IOMMU_MAP_DMA, VfioIoctl.IOMMU_UNMAP_DMA, VfioIoctl.IOMMU_PASID_REQUEST, VfioIoctl.IOMMU_NESTING_OP]);

/** `/dev/vfio/vfio` (vfio_fops) with the type1 backend's ioctls (vfio_iommu_type1_ioctl). */
export class VfioContainerFile extends VfioFile {
  readonly container: VfioContainer;
  readonly user: VfioUser;
  readonly #nesting: NestingDispatch;

  /** @internal made by Vfio.openContainer */
  constructor(user: VfioUser, container: VfioContainer, nesting: NestingDispatch) {
    super(user.allocFd());
    this.user = user;
    this.container = container;
    this.#nesting = nesting;
  }

  protected dispatch(cmd: number, arg: IoctlArg): number {
    // Without a backend, vfio.c answers its default case with EINVAL.
    if (BACKEND.has(cmd) && this.container.iommuType === null) throw new KernelError(Errno.EINVAL, "no IOMMU set on the container");
    return dispatchIoctl(TABLE, this, "vfio container", cmd, arg);
  }

  setIommu(type: number): number {
    this.container.setIommu(type);
    return 0;
  }

  /**
   * VFIO_IOMMU_GET_INFO (vfio_iommu_type1_get_info): page sizes, and when the
   * user's argsz reaches cap_offset, a capability chain: DMA_AVAIL,
   * IOVA_RANGE, and on a nesting container NESTING with the IOMMU's nesting
   * info. An argsz too small for the chain gets CAPS set, cap_offset 0 and
   * the size it needs, without error.
   */
  getInfo(user: Uint8Array): number {
    const L = IommuType1InfoLayout;
    const argsz = L.get(user, "argsz");
    const capsz = L.offsetOfEnd("cap_offset");
    let minsz = L.offsetOfEnd("iova_pgsizes");
    let flags = IommuInfoFlag.PGSIZES;
    const out = new Uint8Array(L.size);
    L.set(out, "iova_pgsizes", this.container.pgsizeBitmap);
    if (argsz >= capsz) {
      minsz = capsz;
      const chain = buildCapChain(this.#caps(), L.size);
      flags |= IommuInfoFlag.CAPS;
      if (argsz < L.size + chain.length) L.set(out, "argsz", L.size + chain.length);
      else {
        if (user.length < L.size + chain.length) throw new KernelError(Errno.EFAULT, `GET_INFO: argsz ${argsz} beyond the ${user.length} user bytes`);
        user.set(chain, L.size);
        L.set(out, "cap_offset", L.size);
        L.set(out, "argsz", argsz);
      }
    } else L.set(out, "argsz", argsz);
    L.set(out, "flags", flags);
    user.set(out.subarray(0, minsz), 0);
    return 0;
  }

  #caps(): InfoCap[] {
    const avail = new Uint8Array(4);
    new DataView(avail.buffer).setUint32(0, this.container.dmaAvail, true);
    const ranges = this.container.iovaRanges;
    const iova = new Uint8Array(CapIovaRangeLayout.size - 8 + ranges.length * IovaRangeLayout.size);
    new DataView(iova.buffer).setUint32(0, ranges.length, true);
    ranges.forEach((r, i) => {
      IovaRangeLayout.set(iova, "start", BigInt(r.start), 8 + i * IovaRangeLayout.size);
      IovaRangeLayout.set(iova, "end", BigInt(r.end), 8 + i * IovaRangeLayout.size);
    });
    const caps: InfoCap[] = [
      { id: IommuInfoCap.DMA_AVAIL, version: 1, body: avail },
      { id: IommuInfoCap.IOVA_RANGE, version: 1, body: iova },
    ];
    const nesting = this.#nesting.infoBytes(this.container);
    if (nesting !== null) caps.push({ id: IommuInfoCap.NESTING, version: 1, body: nesting });
    return caps;
  }

  /** VFIO_IOMMU_MAP_DMA. */
  mapDma(user: Uint8Array): number {
    const flags = DmaMapLayout.get(user, "flags");
    this.container.mapDma({
      vaddr: DmaMapLayout.get(user, "vaddr"),
      iova: DmaMapLayout.get(user, "iova"),
      size: DmaMapLayout.get(user, "size"),
      read: (flags & DmaMapFlag.READ) !== 0,
      write: (flags & DmaMapFlag.WRITE) !== 0,
    });
    return 0;
  }

  /** VFIO_IOMMU_UNMAP_DMA: the bytes unmapped are written back to `size`. */
  unmapDma(user: Uint8Array): number {
    const flags = DmaUnmapLayout.get(user, "flags");
    const bytes = this.container.unmapDma({ iova: DmaUnmapLayout.get(user, "iova"), size: DmaUnmapLayout.get(user, "size"), all: (flags & DmaUnmapFlag.ALL) !== 0 });
    DmaUnmapLayout.set(user, "size", BigInt(bytes));
    return 0;
  }

  /**
   * VFIO_IOMMU_PASID_REQUEST (series v7): exactly one of ALLOC and FREE
   * (EINVAL otherwise), min ≤ max (EINVAL). ALLOC returns the PASID;
   * EOPNOTSUPP on a container that is not of the nesting type.
   */
  pasidRequest(user: Uint8Array): number {
    const flags = PasidRequestLayout.get(user, "flags");
    const min = PasidRequestLayout.get(user, "min");
    const max = PasidRequestLayout.get(user, "max");
    if (flags !== PasidRequestFlag.ALLOC && flags !== PasidRequestFlag.FREE) throw new KernelError(Errno.EINVAL, `PASID_REQUEST: flags 0x${flags.toString(16)} must be exactly ALLOC or FREE`);
    if (min > max) throw new KernelError(Errno.EINVAL, `PASID_REQUEST: min ${min} > max ${max}`);
    return this.#nesting.pasidRequest(this.container, flags === PasidRequestFlag.ALLOC ? "alloc" : "free", min, max);
  }

  /** VFIO_IOMMU_NESTING_OP (series v7): the op in flags[15:0], its IOMMU UAPI struct after the header. */
  nestingOp(user: Uint8Array): number {
    const op = NestingOpLayout.get(user, "flags") & NESTING_OP_MASK;
    const argsz = NestingOpLayout.get(user, "argsz");
    const data = user.subarray(NestingOpLayout.size, Math.min(argsz, user.length));
    switch (op) {
      case NestingOp.BIND_PGTBL:
        return this.#nesting.bind(this.container, data);
      case NestingOp.UNBIND_PGTBL:
        return this.#nesting.unbind(this.container, data);
      case NestingOp.CACHE_INVLD:
        return this.#nesting.invalidate(this.container, data);
      default:
        throw new KernelError(Errno.EINVAL, `NESTING_OP: unknown op ${op}`);
    }
  }

  protected release(): void {
    this.user.forget(this.fd);
    this.container.fileClosed();
  }
}
