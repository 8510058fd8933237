import { Errno, type FaultInjector, KernelError, isKernelError } from "@vsva/kernel";
import { type VfioDeviceFile, VfioPciRegion, regionOffset } from "@vsva/vfio-type1";

/** vfio-pci's region index of BAR2 (VFIO_PCI_BAR2_REGION_INDEX): an mdev's portal BAR. */
const PORTAL_REGION = 2;
/** A WQ's portals span four pages (unlimited and limited, each with an MSI-X and an IMS page): drivers/dma/idxd/registers.h, IDXD_PORTAL_SIZE. */
const PORTAL_STRIDE = 4 * 4096;
/** What a read the VMM could not carry out returns to the guest: all ones, as a PCI read nobody completed (QEMU's vfio_region_read returns -1 when its pread fails). */
const ALL_ONES = 0xffff_ffff;

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
 *
 * What the host refuses never reaches the guest as an exception (it could
 * not: the guest's access is a load or a store): as QEMU does when its
 * pread or pwrite fails, a read returns all ones and a write or portal
 * store is dropped (an ENQCMD reports "retry"), each counted in
 * `failedAccesses`. `faults` (the host's: the VMM is a host process) has
 * the point `vmm.mdev_region` fail such an access.
 */
export class MdevRegions {
  readonly mode = "immediate" as const;
  readonly #file: VfioDeviceFile;
  readonly #faults: FaultInjector | null;
  /** Accesses the host refused (each a read of all ones or a dropped write). */
  failedAccesses = 0;

  constructor(file: VfioDeviceFile, faults: FaultInjector | null = null) {
    this.#file = file;
    this.#faults = faults;
  }

  run(): void {
    // The mdev's hardware runs on the host's clock: nothing to step from the guest.
  }

  mmioRead32(offset: number): number {
    const b = this.#access(() => this.#file.pread(regionOffset(VfioPciRegion.BAR0) + offset, 4));
    if (b === null) return ALL_ONES;
    return ((b[0] ?? 0) | ((b[1] ?? 0) << 8) | ((b[2] ?? 0) << 16) | ((b[3] ?? 0) << 24)) >>> 0;
  }

  mmioRead64(offset: number): bigint {
    return BigInt(this.mmioRead32(offset)) | (BigInt(this.mmioRead32(offset + 4)) << 32n);
  }

  mmioWrite32(offset: number, value: number): void {
    this.#access(() => this.#file.pwrite(regionOffset(VfioPciRegion.BAR0) + offset, Uint8Array.of(value & 0xff, (value >>> 8) & 0xff, (value >>> 16) & 0xff, (value >>> 24) & 0xff)));
  }

  /** MOVDIR64B to WQ `wq`'s unlimited portal: posted, nothing comes back. */
  movdir64b(wq: number, bytes: Uint8Array): void {
    this.#access(() => this.#file.pwrite(regionOffset(PORTAL_REGION) + wq * PORTAL_STRIDE, bytes));
  }

  /** ENQCMD to WQ `wq`'s portal: "retry" when the mdev took nothing. */
  enqcmd(wq: number, bytes: Uint8Array): "accepted" | "retry" {
    if (bytes.length !== 64) throw new KernelError(Errno.EINVAL, "ENQCMD moves 64 bytes");
    return this.#access(() => this.#file.pwrite(regionOffset(PORTAL_REGION) + wq * PORTAL_STRIDE, bytes)) === 64 ? "accepted" : "retry";
  }

  #access<T>(fn: () => T): T | null {
    try {
      this.#faults?.inject("vmm.mdev_region", Errno.EIO);
      return fn();
    } catch (e) {
      if (!isKernelError(e)) throw e;
      this.failedAccesses++;
      return null;
    }
  }
}
