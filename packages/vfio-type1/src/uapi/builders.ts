// The argument bytes a user of VFIO (a VMM, a test) passes to each ioctl, built
// from the UAPI layouts: what QEMU's hw/vfio/common.c fills in before its
// ioctl() calls. Optional fields exist so tests can send a wrong argsz or flags.
import { DmaMapFlag, DmaMapLayout, DmaUnmapLayout, IommuType1InfoLayout, NestingOpLayout, PasidRequestFlag, PasidRequestLayout } from "./structs.js";

/** The bytes a VMM passes to VFIO_IOMMU_MAP_DMA. */
export function dmaMap(f: { vaddr: number | bigint; iova: number | bigint; size: number | bigint; read?: boolean; write?: boolean; argsz?: number; flags?: number }): Uint8Array {
  const b = new Uint8Array(DmaMapLayout.size);
  DmaMapLayout.set(b, "argsz", f.argsz ?? DmaMapLayout.size);
  DmaMapLayout.set(b, "flags", f.flags ?? ((f.read ?? true ? DmaMapFlag.READ : 0) | (f.write ?? true ? DmaMapFlag.WRITE : 0)));
  DmaMapLayout.set(b, "vaddr", BigInt(f.vaddr));
  DmaMapLayout.set(b, "iova", BigInt(f.iova));
  DmaMapLayout.set(b, "size", BigInt(f.size));
  return b;
}

export function dmaUnmap(f: { iova: number | bigint; size: number | bigint; flags?: number; argsz?: number }): Uint8Array {
  const b = new Uint8Array(DmaUnmapLayout.size);
  DmaUnmapLayout.set(b, "argsz", f.argsz ?? DmaUnmapLayout.size);
  DmaUnmapLayout.set(b, "flags", f.flags ?? 0);
  DmaUnmapLayout.set(b, "iova", BigInt(f.iova));
  DmaUnmapLayout.set(b, "size", BigInt(f.size));
  return b;
}

export function pasidRequest(f: { alloc?: boolean; free?: boolean; min: number; max: number; flags?: number; argsz?: number }): Uint8Array {
  const b = new Uint8Array(PasidRequestLayout.size);
  PasidRequestLayout.set(b, "argsz", f.argsz ?? PasidRequestLayout.size);
  PasidRequestLayout.set(b, "flags", f.flags ?? ((f.alloc === true ? PasidRequestFlag.ALLOC : 0) | (f.free === true ? PasidRequestFlag.FREE : 0)));
  PasidRequestLayout.set(b, "min", f.min);
  PasidRequestLayout.set(b, "max", f.max);
  return b;
}

/** A NESTING_OP with `data` (an IOMMU UAPI struct) after the header. */
export function nestingOp(op: number, data: Uint8Array, argsz?: number): Uint8Array {
  const b = new Uint8Array(NestingOpLayout.size + data.length);
  NestingOpLayout.set(b, "argsz", argsz ?? b.length);
  NestingOpLayout.set(b, "flags", op);
  b.set(data, NestingOpLayout.size);
  return b;
}

/** A GET_INFO buffer of `argsz` bytes. */
export function iommuInfo(argsz: number): Uint8Array {
  const b = new Uint8Array(Math.max(argsz, 4));
  IommuType1InfoLayout.set(b, "argsz", argsz);
  return b;
}

/** A 4-byte `int` holding a descriptor (GROUP_SET_CONTAINER's argument). */
export function fdArg(fd: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setInt32(0, fd, true);
  return b;
}

/** A NUL-terminated device name (GROUP_GET_DEVICE_FD's argument). */
export function cString(s: string): Uint8Array {
  const e = new TextEncoder().encode(s);
  const b = new Uint8Array(e.length + 1);
  b.set(e);
  return b;
}
