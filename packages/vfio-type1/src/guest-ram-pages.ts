import { Errno, KernelError } from "@vsva/kernel";
import type { GuestMemoryView } from "@vsva/machine";
import type { UserPages } from "./user.js";

const PAGE = 4096;

/**
 * A VMM's guest RAM as VFIO pins it: the VMM maps the guest's physical
 * memory at one base address of its own address space (QEMU's RAM block
 * `host` pointer, what it hands MAP_DMA as `vaddr`), so a user address is
 * `base + gpa`, and pinning it pins the guest page behind it, which knows
 * its host page (drivers/vfio/vfio_iommu_type1.c: vfio_pin_pages_remote()
 * pins through get_user_pages on exactly that mapping).
 */
export class GuestRamPages implements UserPages {
  readonly ram: GuestMemoryView;
  /** The user address guest-physical 0 is mapped at. */
  readonly base: number;

  constructor(ram: GuestMemoryView, base: number) {
    if (!Number.isSafeInteger(base) || base < 0 || base % PAGE !== 0) throw new KernelError(Errno.EINVAL, `guest RAM base 0x${base.toString(16)} is not a page-aligned user address`);
    this.ram = ram;
    this.base = base;
  }

  /** The user address of guest-physical `gpa`. */
  vaddr(gpa: number): number {
    return this.base + gpa;
  }

  /**
   * EFAULT when any page of the range lies outside the VMM's mapping of
   * guest RAM (below `base`, past the guest's address width) or in a hole
   * of guest RAM: get_user_pages finds no page there. Nothing stays pinned.
   */
  pin(vaddr: number, npages: number): number[] {
    return this.ram.pin(this.#gpa(vaddr, npages, "pin"), npages * PAGE);
  }

  unpin(vaddr: number, npages: number): void {
    this.ram.unpin(this.#gpa(vaddr, npages, "unpin"), npages * PAGE);
  }

  #gpa(vaddr: number, npages: number, op: string): number {
    if (!Number.isSafeInteger(npages) || npages <= 0) throw new KernelError(Errno.EINVAL, `${op}: ${npages} pages`);
    const gpa = vaddr - this.base;
    if (!Number.isSafeInteger(gpa) || gpa < 0 || gpa + npages * PAGE > 2 ** this.ram.addrBits) {
      throw new KernelError(Errno.EFAULT, `${op}: [0x${vaddr.toString(16)}, +${npages} pages) is outside the guest RAM mapping at 0x${this.base.toString(16)}`);
    }
    return gpa;
  }
}
