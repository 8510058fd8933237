import { Errno, KernelError } from "@vsva/kernel";

/**
 * Domain IDs of one unit (the PASID entry's DID, VT-d spec §9.6). 0 and 1 are reserved as Linux reserves
 * them in scalable mode (NUM_RESERVED_DID = 2 in drivers/iommu/intel/iommu.c): DID 0 is
 * what not-present entries are tagged with in caching mode, DID 1
 * (FLPT_DEFAULT_DID) tags first-level-only (SVA) and pass-through entries.
 */
export const FLPT_DEFAULT_DID = 1;
const RESERVED = 2;

export class DomainIds {
  readonly #used: Uint8Array;
  #next = RESERVED;

  constructor(readonly count: number) {
    if (!Number.isInteger(count) || count <= RESERVED) throw new KernelError(Errno.EINVAL, `${count} domain IDs leave none after the ${RESERVED} reserved`);
    this.#used = new Uint8Array(count);
    this.#used.fill(1, 0, RESERVED);
  }

  /** The lowest free DID at or after the last one given out (round robin, so a freed DID is reused late). ENOSPC. */
  alloc(): number {
    const n = this.count;
    for (let i = 0; i < n; i++) {
      const did = ((this.#next - RESERVED + i) % (n - RESERVED)) + RESERVED;
      if (this.#used[did] === 0) {
        this.#used[did] = 1;
        this.#next = did + 1 >= n ? RESERVED : did + 1;
        return did;
      }
    }
    throw new KernelError(Errno.ENOSPC, `all ${n - RESERVED} domain IDs are in use`);
  }

  free(did: number): void {
    if (did >= RESERVED && did < this.count) this.#used[did] = 0;
  }

  get inUse(): number {
    let k = 0;
    for (let i = RESERVED; i < this.count; i++) k += this.#used[i] ?? 0;
    return k;
  }
}
