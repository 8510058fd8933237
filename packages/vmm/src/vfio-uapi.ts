import { type CacheInvalidateFields, type GpasidBindFields, type NestingInfo, decodeNestingInfo, encodeCacheInvalidateInfo, encodeGpasidBindData } from "@vsva/iommu-core";
import {
  DmaMapFlag, DmaMapLayout, DmaUnmapLayout, IommuInfoCap, IommuType1InfoLayout, InfoCapHeaderLayout, NestingOp, NestingOpLayout, PasidRequestFlag,
  PasidRequestLayout, type VfioContainerFile, VfioIoctl, walkCapChain,
} from "@vsva/vfio-type1";

/**
 * The VMM's side of the VFIO UAPI (include/uapi/linux/vfio.h with the 2020
 * vSVA series): every call is an ioctl on a file with the struct as bytes,
 * as QEMU's hw/vfio makes them. Errors are the KernelErrors VFIO returns.
 */

export function fdArg(fd: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setInt32(0, fd, true);
  return b;
}

export function cString(s: string): Uint8Array {
  const e = new TextEncoder().encode(s);
  const b = new Uint8Array(e.length + 1);
  b.set(e);
  return b;
}

/** VFIO_IOMMU_MAP_DMA of [iova, iova + size) from the VMM's address `vaddr`, read and write. */
export function mapDma(c: VfioContainerFile, vaddr: number, iova: number, size: number): void {
  const b = new Uint8Array(DmaMapLayout.size);
  DmaMapLayout.set(b, "argsz", DmaMapLayout.size);
  DmaMapLayout.set(b, "flags", DmaMapFlag.READ | DmaMapFlag.WRITE);
  DmaMapLayout.set(b, "vaddr", BigInt(vaddr));
  DmaMapLayout.set(b, "iova", BigInt(iova));
  DmaMapLayout.set(b, "size", BigInt(size));
  c.ioctl(VfioIoctl.IOMMU_MAP_DMA, b);
}

export function unmapDma(c: VfioContainerFile, iova: number, size: number): void {
  const b = new Uint8Array(DmaUnmapLayout.size);
  DmaUnmapLayout.set(b, "argsz", DmaUnmapLayout.size);
  DmaUnmapLayout.set(b, "iova", BigInt(iova));
  DmaUnmapLayout.set(b, "size", BigInt(size));
  c.ioctl(VfioIoctl.IOMMU_UNMAP_DMA, b);
}

function pasidRequest(flags: number, min: number, max: number): Uint8Array {
  const b = new Uint8Array(PasidRequestLayout.size);
  PasidRequestLayout.set(b, "argsz", PasidRequestLayout.size);
  PasidRequestLayout.set(b, "flags", flags);
  PasidRequestLayout.set(b, "min", min);
  PasidRequestLayout.set(b, "max", max);
  return b;
}

/** VFIO_IOMMU_PASID_REQUEST(ALLOC): a host PASID in [min, max] from the VM's set. */
export function allocPasid(c: VfioContainerFile, min: number, max: number): number {
  return c.ioctl(VfioIoctl.IOMMU_PASID_REQUEST, pasidRequest(PasidRequestFlag.ALLOC, min, max));
}

/** VFIO_IOMMU_PASID_REQUEST(FREE) of [min, max]. */
export function freePasids(c: VfioContainerFile, min: number, max: number): number {
  return c.ioctl(VfioIoctl.IOMMU_PASID_REQUEST, pasidRequest(PasidRequestFlag.FREE, min, max));
}

function nestingOp(op: number, data: Uint8Array): Uint8Array {
  const b = new Uint8Array(NestingOpLayout.size + data.length);
  NestingOpLayout.set(b, "argsz", b.length);
  NestingOpLayout.set(b, "flags", op);
  b.set(data, NestingOpLayout.size);
  return b;
}

/** VFIO_IOMMU_NESTING_OP(BIND_PGTBL) with struct iommu_gpasid_bind_data. */
export function bindPgtbl(c: VfioContainerFile, data: GpasidBindFields): void {
  c.ioctl(VfioIoctl.IOMMU_NESTING_OP, nestingOp(NestingOp.BIND_PGTBL, encodeGpasidBindData(data)));
}

/** VFIO_IOMMU_NESTING_OP(UNBIND_PGTBL). */
export function unbindPgtbl(c: VfioContainerFile, data: GpasidBindFields): void {
  c.ioctl(VfioIoctl.IOMMU_NESTING_OP, nestingOp(NestingOp.UNBIND_PGTBL, encodeGpasidBindData(data)));
}

/** VFIO_IOMMU_NESTING_OP(CACHE_INVLD) with struct iommu_cache_invalidate_info. */
export function cacheInvalidate(c: VfioContainerFile, info: CacheInvalidateFields): void {
  c.ioctl(VfioIoctl.IOMMU_NESTING_OP, nestingOp(NestingOp.CACHE_INVLD, encodeCacheInvalidateInfo(info)));
}

/**
 * VFIO_IOMMU_GET_INFO with room for the capability chain, and the NESTING
 * capability's struct iommu_nesting_info decoded; null when the container
 * reports none (not of the nesting type).
 */
export function nestingInfo(c: VfioContainerFile): NestingInfo | null {
  const L = IommuType1InfoLayout;
  const probe = new Uint8Array(L.size);
  L.set(probe, "argsz", L.size);
  c.ioctl(VfioIoctl.IOMMU_GET_INFO, probe);
  const need = L.get(probe, "argsz");
  const b = new Uint8Array(Math.max(need, L.size));
  L.set(b, "argsz", b.length);
  c.ioctl(VfioIoctl.IOMMU_GET_INFO, b);
  const cap = walkCapChain(b, L.get(b, "cap_offset")).find((x) => x.id === IommuInfoCap.NESTING);
  return cap === undefined ? null : decodeNestingInfo(b.subarray(cap.offset + InfoCapHeaderLayout.size));
}
