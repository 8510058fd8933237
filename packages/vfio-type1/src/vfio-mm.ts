import { Errno, type Ioasid, KernelBug, KernelError } from "@vsva/kernel";
import type { IoasidCore, IoasidSet } from "@vsva/ioasid";

/**
 * The series' `struct vfio_mm`: one per user mm, shared by every nesting
 * container that process opens, holding the VM's IOASID set (token: the mm,
 * so KVM's notifier registered by mm finds it) with the per-VM PASID quota.
 * The last put frees the set: every PASID still in it is freed, and its
 * subscribers hear FREE in priority order (CPU, DEVICE, IOMMU).
 */
export class VfioMm {
  readonly mm: object;
  readonly #ioasid: IoasidCore;
  readonly #quota: number;
  readonly #onLastPut: () => void;
  #set: IoasidSet | null = null;
  #users = 0;

  constructor(ioasid: IoasidCore, mm: object, quota: number, onLastPut: () => void) {
    this.#ioasid = ioasid;
    this.mm = mm;
    this.#quota = quota;
    this.#onLastPut = onLastPut;
  }

  get set(): IoasidSet {
    if (this.#set === null) throw new KernelBug("vfio_mm without its IOASID set");
    return this.#set;
  }

  get users(): number {
    return this.#users;
  }

  /** vfio_mm_get: the first user creates the set. ENOSPC: no quota left system-wide; EEXIST: another set has this mm. */
  get(): this {
    if (this.#users === 0) this.#set = this.#ioasid.allocSet(this.mm, this.#quota, "mm");
    this.#users++;
    return this;
  }

  /** vfio_mm_put: the last user frees the set and every PASID in it. Cannot fail. */
  put(): void {
    if (this.#users === 0) throw new KernelBug("vfio_mm put without a user");
    this.#users--;
    if (this.#users > 0) return;
    const set = this.#set;
    this.#set = null;
    if (set !== null) {
      // Free first so every PASID goes through FREE (and its subscribers' teardown) even if another user holds the set.
      this.#ioasid.freeSet(set);
      this.#ioasid.setPut(set);
    }
    this.#onLastPut();
  }

  /** PASID_REQUEST(ALLOC): one PASID in [min, max] from the VM's set. ENOSPC when the quota is used up. */
  alloc(min: number, max: number): number {
    if (min > max) throw new KernelError(Errno.EINVAL, `PASID range [${min}, ${max}] is empty`);
    return this.#ioasid.alloc(this.set, min, max);
  }

  /** PASID_REQUEST(FREE): every PASID of the VM's set in [min, max]; the count freed. */
  free(min: number, max: number): number {
    const ids: Ioasid[] = [];
    this.#ioasid.setForEachIoasid(this.set, (id) => {
      if (id >= min && id <= max) ids.push(id);
    });
    for (const id of ids) this.#ioasid.free(this.set, id);
    return ids.length;
  }
}
