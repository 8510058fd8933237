import { Errno, type FaultInjector, KernelError } from "@vsva/kernel";

/**
 * A small ID allocator (`ida`/`xa_alloc` over [1, 2^bits)): ASIDs and
 * VMIDs. 0 is never handed out: VMID 0 tags stage-1-only streams and ASID 0
 * is the quiet CD's. Lowest free first, for deterministic traces.
 */
export class IdAllocator {
  readonly #used = new Set<number>();
  #hint = 1;

  constructor(
    readonly name: string,
    readonly bits: number,
    private readonly faults: FaultInjector,
  ) {}

  /** ENOSPC when exhausted; ENOMEM when injected (`smmu.<name>-alloc`). */
  alloc(): number {
    this.faults.inject(`smmu.${this.name}-alloc`);
    const max = 2 ** this.bits;
    for (let n = 0, id = this.#hint; n < max - 1; n++, id = id + 1 >= max ? 1 : id + 1) {
      if (!this.#used.has(id)) {
        this.#used.add(id);
        this.#hint = id + 1 >= max ? 1 : id + 1;
        return id;
      }
    }
    throw new KernelError(Errno.ENOSPC, `no free ${this.name} (${this.bits} bits)`);
  }

  free(id: number): void {
    this.#used.delete(id);
  }

  get inUse(): number {
    return this.#used.size;
  }
}
