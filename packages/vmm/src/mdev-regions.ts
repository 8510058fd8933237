import { Errno, KernelError } from "@vsva/kernel";
import { type VfioDeviceFile, VfioPciRegion, regionOffset } from "@vsva/vfio-type1";

/** vfio-pci's region index of BAR2 (VFIO_PCI_BAR2_REGION_INDEX): an mdev's portal BAR. */
const PORTAL_REGION = 2;
/** A WQ's portals span four pages (unlimited and limited, each with an MSI-X and an IMS page): drivers/dma/idxd/registers.h, IDXD_PORTAL_SIZE. */
const PORTAL_STRIDE = 4 * 4096;

/**
 * An mdev as the guest's accelerator driver reaches it: every BAR0 access
 * of the guest exits to the VMM, which forwards it to the mdev's BAR0
 * region with a pread/pwrite on its VFIO device file (QEMU's
 * vfio_region_read/vfio_region_write for a region it does not mmap); a
 * 64-byte store to the portal BAR goes to the portal region the same way.
 * It has the shape the `@vsva/idxd` driver probes (BAR0 registers and
 * portals), so the guest runs the host's driver over it and never holds a
 * host object. The device model behind it runs when the host's machine
 * runs, so `mode` is "immediate" and `run` has nothing to do.
 */
export class MdevRegions {
  readonly mode = "immediate" as const;
  readonly #file: VfioDeviceFile;

  constructor(file: VfioDeviceFile) {
    this.#file = file;
  }

  run(): void {
    // The mdev's hardware runs on the host's clock: nothing to step from the guest.
  }

  mmioRead32(offset: number): number {
    const b = this.#file.pread(regionOffset(VfioPciRegion.BAR0) + offset, 4);
    return ((b[0] ?? 0) | ((b[1] ?? 0) << 8) | ((b[2] ?? 0) << 16) | ((b[3] ?? 0) << 24)) >>> 0;
  }

  mmioRead64(offset: number): bigint {
    return BigInt(this.mmioRead32(offset)) | (BigInt(this.mmioRead32(offset + 4)) << 32n);
  }

  mmioWrite32(offset: number, value: number): void {
    this.#file.pwrite(regionOffset(VfioPciRegion.BAR0) + offset, Uint8Array.of(value & 0xff, (value >>> 8) & 0xff, (value >>> 16) & 0xff, (value >>> 24) & 0xff));
  }

  /** MOVDIR64B to WQ `wq`'s unlimited portal: posted, nothing comes back. */
  movdir64b(wq: number, bytes: Uint8Array): void {
    this.#file.pwrite(regionOffset(PORTAL_REGION) + wq * PORTAL_STRIDE, bytes);
  }

  /** ENQCMD to WQ `wq`'s portal: "retry" when the mdev took nothing. */
  enqcmd(wq: number, bytes: Uint8Array): "accepted" | "retry" {
    if (bytes.length !== 64) throw new KernelError(Errno.EINVAL, "ENQCMD moves 64 bytes");
    return this.#file.pwrite(regionOffset(PORTAL_REGION) + wq * PORTAL_STRIDE, bytes) === 64 ? "accepted" : "retry";
  }
}
