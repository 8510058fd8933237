import { Errno, KernelError, type RateLimitedLog } from "@vsva/kernel";
import { FstsReg, IqaReg, IqercdReg, IqhReg, IqtReg, type PhysMem, RegOffset } from "@vsva/iommu-hw";
import type { PageAllocator } from "@vsva/iommu-core";
import { waitDesc } from "./descriptors.js";
import { globalCommand } from "./gcmd.js";
import { type Mmio, readReg, writeReg } from "./mmio.js";

/** Descriptor slot size: the driver always runs the queue 256 bits wide (IQA.DW=1, as Linux does with SMTS). */
const SLOT = 32;
const QUEUE_BYTES = 4096;
/**
 * Status reads before a submission is declared timed out. Linux's
 * `qi_submit_sync` (drivers/iommu/intel/dmar.c) spins until the wait
 * descriptor's status is written, leaving IQE (-EINVAL) and ITE (abort and
 * restart) to `qi_check_fault`; a unit that never writes the status would
 * hang it. Here every submission is bounded by this count, whatever the
 * unit reports meanwhile (queue errors included), then fails with EIO.
 */
export const QI_POLLS = 10_000;

export interface QueuedInvalidationOptions {
  readonly name: string;
  readonly mmio: Mmio;
  readonly mem: PhysMem;
  readonly pages: PageAllocator;
  readonly log: RateLimitedLog;
  /**
   * Called between status reads while waiting for a submission, so a unit
   * that processes its queue from a work item (deferred invalidation) can
   * make progress: typically one scheduler step.
   */
  readonly poll?: () => void;
  /** Status reads one submission may make (default {@link QI_POLLS}); tests of a wedged unit lower it. */
  readonly polls?: number;
}

/** The reason an invalidation-queue error (IQERCD.IQEI) reported. */
const IQEI_NAMES: Readonly<Record<number, string>> = {
  1: "tail invalid",
  2: "descriptor fetch error",
  3: "invalid descriptor type",
  4: "reserved field set",
  5: "invalid descriptor width",
  6: "tail misaligned",
  7: "invalid TTM",
};

/**
 * The driver's side of queued invalidation (VT-d §10.4 IQA/IQH/IQT, `qi_submit_sync`): a
 * 4 KiB ring of 256-bit slots from the page allocator, a status page, and a
 * synchronous submit that appends an invalidation-wait descriptor with a
 * status write and polls the status word for its sequence number.
 *
 * When the unit stops on a bad descriptor (FSTS.IQE), the descriptor at IQH
 * is overwritten with the batch's wait descriptor (so the queue can move on
 * without running it), IQE is cleared, the wait is still awaited, and the
 * submission fails with EIO naming IQERCD's reason, as `qi_check_fault` does.
 */
export class QueuedInvalidation {
  readonly #o: QueuedInvalidationOptions;
  #queue = -1;
  #status = -1;
  #tail = 0;
  #seq = 0;
  readonly #slot = new Uint32Array(SLOT / 4);
  /** Submissions made and descriptors written, for tests and benchmarks. */
  readonly stats = { submissions: 0, descriptors: 0, errors: 0 };

  readonly #polls: number;

  constructor(opts: QueuedInvalidationOptions) {
    const polls = opts.polls ?? QI_POLLS;
    if (!Number.isInteger(polls) || polls < 1) throw new KernelError(Errno.EINVAL, `${opts.name}: invalidation wait poll count ${polls} must be a positive integer`);
    this.#o = opts;
    this.#polls = polls;
  }

  get enabled(): boolean {
    return this.#queue >= 0;
  }

  /** Allocates the queue and status pages and turns queued invalidation on. ENOMEM, EIO; nothing kept on failure. */
  enable(): void {
    const { pages, mmio } = this.#o;
    const queue = pages.allocPage("vtd.inv-queue");
    let status = -1;
    try {
      status = pages.allocPage("vtd.inv-status");
      const iqa = IqaReg.alloc();
      IqaReg.setAddr(iqa, "IQA", queue);
      IqaReg.set(iqa, "DW", 1);
      IqaReg.set(iqa, "QS", 0);
      writeReg(mmio, RegOffset.IQA, iqa);
      mmio.mmioWrite64(RegOffset.IQT, 0n);
      globalCommand(mmio, "QIE", true);
    } catch (e) {
      if (status >= 0) pages.freePages(status);
      pages.freePages(queue);
      throw e;
    }
    this.#queue = queue;
    this.#status = status;
    this.#tail = 0;
  }

  /** Turns queued invalidation off and frees its pages. Cannot fail. */
  disable(): void {
    if (!this.enabled) return;
    try {
      globalCommand(this.#o.mmio, "QIE", false);
    } catch (e) {
      this.#o.log.warn(`${this.#o.name}.qi-disable`, `${this.#o.name}: ${String(e)}`, "IOMMU");
    }
    this.#o.pages.freePages(this.#queue);
    this.#o.pages.freePages(this.#status);
    this.#queue = -1;
    this.#status = -1;
  }

  /**
   * Submits `descs` followed by a wait descriptor and returns once the unit
   * has completed them all. `drain` sets the wait's PD/FN bits (page-request
   * drain). EIO: the unit reported a queue error or never completed; ENODEV:
   * the queue is not enabled.
   */
  submit(descs: readonly Uint32Array[], drain = false): void {
    if (!this.enabled) throw new KernelError(Errno.ENODEV, `${this.#o.name}: queued invalidation is not enabled`);
    const { mmio, mem } = this.#o;
    // One batch is always far smaller than the ring; the ring is empty at every submission since each waits.
    if (descs.length + 1 > QUEUE_BYTES / SLOT - 1) throw new KernelError(Errno.EINVAL, `${descs.length} descriptors do not fit the queue`);
    this.#seq = (this.#seq + 1) >>> 0 || 1;
    const seq = this.#seq;
    const wait = waitDesc(this.#status, seq, drain);
    mem.write32(this.#status, 0);
    const start = this.#tail;
    for (const d of [...descs, wait]) this.#write(d);
    this.stats.submissions++;
    this.stats.descriptors += descs.length + 1;
    mmio.mmioWrite64(RegOffset.IQT, BigInt(this.#tail));
    let fault: string | null = null;
    const polls = this.#polls;
    for (let i = 0; i < polls; i++) {
      if (mem.read32(this.#status) === seq) break;
      const reason = this.#checkFault(start, waitDesc(this.#status + 8, seq));
      if (reason !== null) fault ??= reason;
      this.#o.poll?.();
      if (i === polls - 1) {
        this.stats.errors++;
        throw new KernelError(Errno.EIO, `${this.#o.name}: invalidation wait ${seq} did not complete`);
      }
    }
    if (fault !== null) {
      this.stats.errors++;
      throw new KernelError(Errno.EIO, `${this.#o.name}: invalidation queue error: ${fault}`);
    }
  }

  #write(d: Uint32Array): void {
    const s = this.#slot;
    s.fill(0);
    s.set(d.subarray(0, Math.min(d.length, s.length)));
    const pa = this.#queue + this.#tail;
    for (let w = 0; w < s.length; w += 2) this.#o.mem.write64(pa + w * 4, s[w] ?? 0, s[w + 1] ?? 0);
    this.#tail = (this.#tail + SLOT) % QUEUE_BYTES;
  }

  /**
   * On FSTS.IQE: replace the bad descriptor with a harmless wait (its status
   * goes to a scratch word, so it cannot pass for the batch's completion),
   * clear IQE (which resumes the queue); returns the reason.
   */
  #checkFault(start: number, wait: Uint32Array): string | null {
    const { mmio, mem } = this.#o;
    const fsts = readReg(mmio, RegOffset.FSTS, FstsReg);
    if (FstsReg.get(fsts, "IQE") === 0) return null;
    const head = IqhReg.get(readReg(mmio, RegOffset.IQH, IqhReg), "QH") * 16;
    const iqei = IqercdReg.get(readReg(mmio, RegOffset.IQERCD, IqercdReg), "IQEI");
    const inBatch = (head - start + QUEUE_BYTES) % QUEUE_BYTES < (this.#tail - start + QUEUE_BYTES) % QUEUE_BYTES;
    if (inBatch) {
      const pa = this.#queue + head;
      for (let w = 0; w < 8; w += 2) mem.write64(pa + w * 4, wait[w] ?? 0, wait[w + 1] ?? 0);
    }
    const clear = FstsReg.alloc();
    FstsReg.set(clear, "IQE", 1);
    mmio.mmioWrite32(RegOffset.FSTS, clear[0] ?? 0);
    const reason = `${IQEI_NAMES[iqei] ?? `IQEI ${iqei}`} at IQH 0x${head.toString(16)}`;
    this.#o.log.warn(`${this.#o.name}.iqe`, `${this.#o.name}: ${reason}`, "IOMMU");
    return reason;
  }
}

/** IQT as the register holds it (bits 18:4), for tests that look at the ring. */
export const iqtBytes = (v: Uint32Array): number => IqtReg.get(v, "QT") * 16;
