import { Errno, KernelError } from "@vsva/kernel";
import type { DmaRequest, IommuPort, PageRequest, TranslateResult } from "@vsva/iommu-hw";

/** One DMA translation as it crossed the endpoint/IOMMU boundary. */
export interface DmaRecord {
  readonly seq: number;
  readonly req: DmaRequest;
  readonly result: TranslateResult;
}

/** Records a port keeps unless told to keep them all: far more than one step of any scenario makes. */
export const DMA_RECORD_RING = 4096;

export interface RecordingPortOptions {
  /** How many of the latest records to keep (default {@link DMA_RECORD_RING}); "all" keeps the whole history. EINVAL unless a positive integer or "all". */
  readonly keep?: number | "all";
}

/**
 * An interposer between endpoints and the IOMMU that records every
 * translation the IOMMU answered, like a PCIe analyser on the link. The
 * invariant checker reads it to prove where DMA went; the IOMMU and the
 * device see nothing of it.
 *
 * Like an analyser's capture buffer it keeps the latest records only (a
 * ring), unless a run asks for the whole history: a long run must not grow
 * without bound. A reader that falls behind is told how many records it
 * missed ({@link lostSince}), so nothing goes unchecked silently.
 */
export class RecordingPort implements IommuPort {
  /** The records kept, oldest first; with a ring, `ring[(start + i) % keep]`. */
  readonly #ring: DmaRecord[] = [];
  #start = 0;
  #seq = 0;
  readonly #keep: number;

  constructor(
    private readonly iommu: IommuPort,
    opts: RecordingPortOptions = {},
  ) {
    const keep = opts.keep ?? DMA_RECORD_RING;
    if (keep !== "all" && (!Number.isInteger(keep) || keep < 1)) throw new KernelError(Errno.EINVAL, `a recording ring keeps at least 1 record, not ${keep}`);
    this.#keep = keep === "all" ? Infinity : keep;
  }

  translate(req: DmaRequest): TranslateResult {
    const result = this.iommu.translate(req);
    const rec = { seq: ++this.#seq, req, result };
    if (this.#ring.length < this.#keep) this.#ring.push(rec);
    else {
      this.#ring[this.#start] = rec;
      this.#start = (this.#start + 1) % this.#ring.length;
    }
    return result;
  }

  pageRequest(req: PageRequest): boolean {
    return this.iommu.pageRequest(req);
  }

  /** The records kept, oldest first. */
  get records(): readonly DmaRecord[] {
    return this.#start === 0 ? this.#ring : [...this.#ring.slice(this.#start), ...this.#ring.slice(0, this.#start)];
  }

  /** Records since `mark` (a previous `mark()` value) that are still kept. */
  since(mark: number): readonly DmaRecord[] {
    return this.records.filter((r) => r.seq > mark);
  }

  /** Records made after `mark` that the ring no longer holds. */
  lostSince(mark: number): number {
    const oldest = this.#seq - this.#ring.length + 1;
    return Math.max(0, oldest - (mark + 1));
  }

  mark(): number {
    return this.#seq;
  }
}
