import type { DmaRequest, IommuPort, PageRequest, TranslateResult } from "@vsva/iommu-hw";

/** One DMA translation as it crossed the endpoint/IOMMU boundary. */
export interface DmaRecord {
  readonly seq: number;
  readonly req: DmaRequest;
  readonly result: TranslateResult;
}

/**
 * An interposer between endpoints and the IOMMU that records every
 * translation the IOMMU answered, like a PCIe analyser on the link. The
 * invariant checker reads it to prove where DMA went; the IOMMU and the
 * device see nothing of it.
 */
export class RecordingPort implements IommuPort {
  readonly records: DmaRecord[] = [];
  #seq = 0;

  constructor(private readonly iommu: IommuPort) {}

  translate(req: DmaRequest): TranslateResult {
    const result = this.iommu.translate(req);
    this.records.push({ seq: ++this.#seq, req, result });
    return result;
  }

  pageRequest(req: PageRequest): boolean {
    return this.iommu.pageRequest(req);
  }

  /** Records since `mark` (a previous `mark()` value). */
  since(mark: number): readonly DmaRecord[] {
    return this.records.filter((r) => r.seq > mark);
  }

  mark(): number {
    return this.#seq;
  }
}
