import { type CacheInvalidateFields, type GpasidBindFields, type NestingInfo, decodeNestingInfo, encodeCacheInvalidateInfo, encodeGpasidBindData } from "@vsva/iommu-core";
import { IommuInfoCap, IommuType1InfoLayout, InfoCapHeaderLayout, NestingOp, type VfioContainerFile, VfioIoctl, vfioUapi, walkCapChain } from "@vsva/vfio-type1";

/**
 * The VMM's side of the VFIO UAPI (include/uapi/linux/vfio.h with the 2020
 * vSVA series): every call is an ioctl on a file with the struct as bytes,
 * as QEMU's hw/vfio makes them. Errors are the KernelErrors VFIO returns.
 */

export const { fdArg, cString } = vfioUapi;

/** VFIO_IOMMU_MAP_DMA of [iova, iova + size) from the VMM's address `vaddr`, read and write. */
export function mapDma(c: VfioContainerFile, vaddr: number, iova: number, size: number): void {
  c.ioctl(VfioIoctl.IOMMU_MAP_DMA, vfioUapi.dmaMap({ vaddr, iova, size }));
}

export function unmapDma(c: VfioContainerFile, iova: number, size: number): void {
  c.ioctl(VfioIoctl.IOMMU_UNMAP_DMA, vfioUapi.dmaUnmap({ iova, size }));
}

/** VFIO_IOMMU_PASID_REQUEST(ALLOC): a host PASID in [min, max] from the VM's set. */
export function allocPasid(c: VfioContainerFile, min: number, max: number): number {
  return c.ioctl(VfioIoctl.IOMMU_PASID_REQUEST, vfioUapi.pasidRequest({ alloc: true, min, max }));
}

/** VFIO_IOMMU_PASID_REQUEST(FREE) of [min, max]. */
export function freePasids(c: VfioContainerFile, min: number, max: number): number {
  return c.ioctl(VfioIoctl.IOMMU_PASID_REQUEST, vfioUapi.pasidRequest({ free: true, min, max }));
}

const nestingOp = vfioUapi.nestingOp;

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
