import type { SourceId } from "@vsva/kernel";
import type { EndpointPort, IommuPort, StallResolution, TranslateFault, TranslateResult } from "../iommu-port.js";
import type { PhysMem } from "@vsva/pgtable";

const PAGE = 4096;

export interface PlatformDmaMasterOptions {
  /** The StreamID firmware assigns the master (its `iommus` / IORT mapping). */
  readonly sid: SourceId;
  readonly mem: PhysMem;
}

/** One transfer: `length` bytes at `addr` in the address space of `ssid` (none: the stream's default context). */
export interface PlatformDmaProgram {
  readonly ssid?: number;
  readonly addr: number;
  readonly length: number;
  readonly direction: "read" | "write";
  /** Bytes to write, repeated over the transfer (a write without them writes zeros). */
  readonly pattern?: Uint8Array;
  readonly priv?: boolean;
}

/**
 * idle: nothing started; running: transactions being issued; stalled: the
 * IOMMU holds the current transaction; ok: done; fault: a transaction was
 * terminated (or hit no memory) and the transfer stopped there.
 */
export type PlatformDmaStatus = "idle" | "stalled" | "ok" | "fault";

/**
 * A DMA master that is not on PCIe (an accelerator or display engine on an
 * SoC interconnect): it reaches the SMMU by StreamID and SubstreamID
 * alone, with no ATS, no PRI and no config space. It is the requester the
 * SMMUv3 stall model exists for: when the SMMU stalls a transaction the
 * master simply waits for it, since a stalled bus transaction cannot be
 * retried by the requester; the SMMU resumes or terminates it and the
 * master carries on or stops (`stallResolved`).
 *
 * We model this rather than teach the PCIe endpoint to stall: a PCIe
 * function asks for pages with PRI, and Linux only enables stall on masters
 * whose firmware says "dma-can-stall", which PCIe devices never are.
 *
 * The engine is in order with one transaction outstanding: it issues one
 * page-sized (or shorter) transaction at a time, and stops at the first
 * stall until it is resolved.
 */
export class PlatformDmaMaster implements EndpointPort {
  readonly sid: SourceId;
  readonly #mem: PhysMem;
  #iommu: IommuPort | null = null;
  #prog: PlatformDmaProgram | null = null;
  #done = 0;
  #stag = -1;
  #status: PlatformDmaStatus = "idle";
  #fault: TranslateFault | null = null;
  #buffer = new Uint8Array(0);
  readonly stats = { transactions: 0, stalls: 0, resumed: 0, strayResolutions: 0 };

  constructor(o: PlatformDmaMasterOptions) {
    this.sid = o.sid;
    this.#mem = o.mem;
  }

  /** Connects the master to the IOMMU in front of it (the unit must also `attachEndpoint` it to resolve stalls). */
  attach(iommu: IommuPort): void {
    this.#iommu = iommu;
  }

  get status(): PlatformDmaStatus {
    return this.#status;
  }

  /** The STAG of the transaction the IOMMU holds while `status` is stalled, else -1. */
  get stag(): number {
    return this.#status === "stalled" ? this.#stag : -1;
  }

  /** The fault that stopped the last transfer. */
  get lastFault(): TranslateFault | null {
    return this.#fault;
  }

  /** Bytes moved so far by the current (or last) transfer. */
  get transferred(): number {
    return this.#done;
  }

  /** What a read transfer has read so far. */
  get readData(): Uint8Array {
    return this.#buffer.subarray(0, this.#done);
  }

  /**
   * Starts a transfer and runs it as far as it goes now. A transfer still
   * stalled cannot be replaced (returns "stalled" and changes nothing); a
   * master with no IOMMU above it faults every transfer.
   */
  start(p: PlatformDmaProgram): PlatformDmaStatus {
    if (this.#status === "stalled") return this.#status;
    this.#prog = p;
    this.#done = 0;
    this.#fault = null;
    this.#stag = -1;
    this.#buffer = new Uint8Array(p.direction === "read" && Number.isInteger(p.length) && p.length > 0 ? p.length : 0);
    this.#run();
    return this.#status;
  }

  #run(): void {
    const p = this.#prog;
    const iommu = this.#iommu;
    if (p === null) return;
    while (this.#done < p.length) {
      if (iommu === null) {
        this.#stop({ ok: false, reason: 0, name: "NO_IOMMU", recoverable: false });
        return;
      }
      const addr = p.addr + this.#done;
      this.stats.transactions++;
      const r = iommu.translate({
        sid: this.sid, addr, write: p.direction === "write",
        ...(p.ssid === undefined ? {} : { pasid: p.ssid, priv: p.priv === true }),
      });
      if (!this.#complete(r)) return;
    }
    this.#status = "ok";
  }

  /** Finishes the current transaction with `r`; false when the transfer cannot go on now. */
  #complete(r: TranslateResult): boolean {
    const p = this.#prog;
    if (p === null) return false;
    if (!r.ok) {
      if (r.stalled !== undefined) {
        this.stats.stalls++;
        this.#stag = r.stalled.stag;
        this.#status = "stalled";
      } else this.#stop(r);
      return false;
    }
    const addr = p.addr + this.#done;
    const len = Math.min(p.length - this.#done, PAGE - (addr % PAGE));
    const ok = p.direction === "write" ? this.#mem.writeBytes(r.pa, this.#chunk(p, len)) : this.#mem.readBytes(r.pa, this.#buffer.subarray(this.#done, this.#done + len));
    if (!ok) {
      this.#stop({ ok: false, reason: 0, name: "BUS_ERROR", recoverable: false });
      return false;
    }
    this.#done += len;
    return true;
  }

  #chunk(p: PlatformDmaProgram, len: number): Uint8Array {
    const out = new Uint8Array(len);
    const pat = p.pattern;
    if (pat !== undefined && pat.length > 0) for (let i = 0; i < len; i++) out[i] = pat[(this.#done + i) % pat.length] ?? 0;
    return out;
  }

  #stop(f: TranslateFault): void {
    this.#fault = f;
    this.#status = "fault";
  }

  // --- EndpointPort ------------------------------------------------------------

  /** The held transaction completed (retry) or was terminated; the engine goes on from there. A tag it is not waiting on is ignored. */
  stallResolved(res: StallResolution): void {
    if (this.#status !== "stalled" || res.stag !== this.#stag) {
      this.stats.strayResolutions++;
      return;
    }
    this.stats.resumed++;
    this.#stag = -1;
    this.#status = "idle";
    if (this.#complete(res.result)) this.#run();
  }

  /** No ATC: nothing cached to invalidate. */
  invalidateDeviceTlb(): void {
    // A platform master without ATS keeps no translations.
  }

  /** No PRI: a platform master sends no page requests, so no response is for it. */
  pageResponse(): void {
    this.stats.strayResolutions++;
  }
}
