import { Errno, KernelError } from "@vsva/kernel";
import { type PageRequestFault, type PageResponse, IommuFaultLayout, PageResponseLayout, decodePageResponse, encodeIommuFault, pageRequestRecord } from "@vsva/iommu-core";
import { defineStruct } from "@vsva/iommu-core";

/**
 * The nested DMA fault and fault-response regions of a vfio-pci device
 * (Eric Auger, "vfio: Add DMA fault reporting / fault response region",
 * 2019–2021, the SMMUv3 nested series; never merged). Each is a header page
 * then a ring of `nb_entries` records. The kernel produces `struct
 * iommu_fault` records at the fault ring's head; the VMM consumes them and
 * moves its tail. The VMM produces `struct iommu_page_response` records at
 * the response ring's head and moves it; each move makes the kernel consume
 * what was written and answer the device (iommu_page_response).
 *
 * The header layouts follow the series' later revisions (with head in the
 * fault header and tail in the response header); numeric region types,
 * subtypes and capability IDs were never merged and are our choice below.
 */
export const DmaFaultHeaderLayout = defineStruct("vfio_region_dma_fault", 20, {
  /** Written by the VMM: the next record it will read. */
  tail: [0, "u32"],
  entry_size: [4, "u32"],
  nb_entries: [8, "u32"],
  /** Ring offset from the start of the region. */
  offset: [12, "u32"],
  /** The next record the kernel will write. */
  head: [16, "u32"],
});

export const DmaFaultResponseHeaderLayout = defineStruct("vfio_region_dma_fault_response", 20, {
  /** Written by the VMM: one past the last response it wrote. */
  head: [0, "u32"],
  entry_size: [4, "u32"],
  nb_entries: [8, "u32"],
  offset: [12, "u32"],
  /** The next response the kernel will consume. */
  tail: [16, "u32"],
});

/** VFIO_REGION_TYPE_NESTED and its subtypes, and DMA_FAULT_RING_LENGTH (series values; the numbers are not in any merged header). */
export const VFIO_REGION_TYPE_NESTED = 2;
export const VfioNestedSubtype = { DMA_FAULT: 1, DMA_FAULT_RESPONSE: 2 } as const;
export const DMA_FAULT_RING_LENGTH = 512;

const PAGE = 4096;
const groupKey = (pasid: number | undefined, grpid: number): string => `${pasid ?? "none"}:${grpid}`;
const roundUp = (n: number): number => Math.ceil(n / PAGE) * PAGE;

export interface DmaFaultRegionsOptions {
  readonly nbEntries?: number;
  /** Answers the device (IommuCore.pageResponse). */
  readonly respond: (resp: PageResponse) => void;
}

export class DmaFaultRegions {
  readonly fault: Uint8Array;
  readonly response: Uint8Array;
  readonly #nb: number;
  readonly #respond: (resp: PageResponse) => void;
  /** Faults refused because the ring was full (the driver answers those). */
  dropped = 0;
  /** Page request groups handed to the VMM (their last request produced) and not answered through the response ring yet. */
  readonly #outstanding = new Map<string, PageResponse>();
  /** No reader: the device file's last close happened, and no open since. */
  #closed = false;

  constructor(opts: DmaFaultRegionsOptions) {
    this.#nb = opts.nbEntries ?? DMA_FAULT_RING_LENGTH;
    this.#respond = opts.respond;
    this.fault = new Uint8Array(PAGE + roundUp(this.#nb * IommuFaultLayout.size));
    this.response = new Uint8Array(PAGE + roundUp(this.#nb * PageResponseLayout.size));
    const F = DmaFaultHeaderLayout;
    F.set(this.fault, "entry_size", IommuFaultLayout.size);
    F.set(this.fault, "nb_entries", this.#nb);
    F.set(this.fault, "offset", PAGE);
    const R = DmaFaultResponseHeaderLayout;
    R.set(this.response, "entry_size", PageResponseLayout.size);
    R.set(this.response, "nb_entries", this.#nb);
    R.set(this.response, "offset", PAGE);
  }

  /**
   * The device fault handler VFIO registers (vfio_pci_iommu_dev_fault_handler):
   * the fault becomes a record at the ring's head. A full ring refuses it
   * (false), and the IOMMU driver answers the device itself; so do regions
   * whose reader is gone (see {@link close}).
   */
  produce(fault: PageRequestFault): boolean {
    if (this.#closed) {
      this.dropped++;
      return false;
    }
    const F = DmaFaultHeaderLayout;
    const head = F.get(this.fault, "head");
    const tail = F.get(this.fault, "tail");
    if ((head + 1) % this.#nb === tail) {
      this.dropped++;
      return false;
    }
    this.fault.set(encodeIommuFault(pageRequestRecord(fault)), PAGE + head * IommuFaultLayout.size);
    F.set(this.fault, "head", (head + 1) % this.#nb);
    if (fault.last) this.#outstanding.set(groupKey(fault.pasid, fault.grpid), { pasid: fault.pasid, grpid: fault.grpid, code: "invalid" });
    return true;
  }

  /** Page request groups the VMM was handed and has not answered. */
  get outstandingGroups(): number {
    return this.#outstanding.size;
  }

  /**
   * The device file's last close: nobody reads these rings any more, so
   * every group handed to the VMM and not answered is answered INVALID now
   * (as iommufd answers a departing fault queue's pending groups,
   * drivers/iommu/iommufd/fault.c: iommufd_auto_response_faults()), the
   * records nobody read are dropped, and until the next open a new fault is
   * refused as a full ring refuses it, so the IOMMU driver answers it at
   * once. Done before the device's own release runs, so a device that waits
   * on such a group (an accelerator's WQ blocked on a fault, drained by its
   * release, and faulting again on the completion record of the descriptor
   * it aborts) is not left waiting on a VMM that is gone. A group the IOMMU
   * driver answered meanwhile (its drain on unbind) is no longer pending:
   * the core's EINVAL is expected and ignored. Returns how many groups it
   * answered.
   */
  close(): number {
    this.#closed = true;
    let answered = 0;
    for (const r of this.#outstanding.values()) {
      try {
        this.#respond(r);
        answered++;
      } catch (e) {
        if (!(e instanceof KernelError)) throw e;
      }
    }
    this.#outstanding.clear();
    const F = DmaFaultHeaderLayout;
    F.set(this.fault, "tail", F.get(this.fault, "head"));
    const R = DmaFaultResponseHeaderLayout;
    R.set(this.response, "tail", R.get(this.response, "head"));
    return answered;
  }

  /** The device file's first open: the rings have a reader again. */
  open(): void {
    this.#closed = false;
  }

  /** Records produced and not yet consumed by the VMM. */
  get pendingFaults(): number {
    const F = DmaFaultHeaderLayout;
    return (F.get(this.fault, "head") - F.get(this.fault, "tail") + this.#nb) % this.#nb;
  }

  readFault(offset: number, length: number): Uint8Array {
    return this.fault.slice(offset, offset + length);
  }

  /** Only the tail is the VMM's to write; a tail past the ring is EINVAL, other bytes are dropped. */
  writeFault(offset: number, bytes: Uint8Array): number {
    const at = DmaFaultHeaderLayout.offsetOf("tail");
    if (offset === at && bytes.length === 4) {
      const tail = new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0, true);
      if (tail >= this.#nb) throw new KernelError(Errno.EINVAL, `fault ring tail ${tail} beyond ${this.#nb} entries`);
      DmaFaultHeaderLayout.set(this.fault, "tail", tail);
    }
    return bytes.length;
  }

  readResponse(offset: number, length: number): Uint8Array {
    return this.response.slice(offset, offset + length);
  }

  /**
   * The VMM writes responses into the ring, then the new head. Moving the
   * head consumes every response from tail to head: each is decoded
   * (EINVAL for a malformed one) and answered through the IOMMU core
   * (EINVAL for a group the device never had pending). The first error is
   * returned after the rest are consumed, so one bad record cannot wedge
   * the ring.
   */
  writeResponse(offset: number, bytes: Uint8Array): number {
    const R = DmaFaultResponseHeaderLayout;
    if (offset >= PAGE) {
      if (offset + bytes.length > this.response.length) throw new KernelError(Errno.EINVAL, "response beyond the ring");
      this.response.set(bytes, offset);
      return bytes.length;
    }
    if (offset !== R.offsetOf("head") || bytes.length !== 4) return bytes.length;
    const head = new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0, true);
    if (head >= this.#nb) throw new KernelError(Errno.EINVAL, `response ring head ${head} beyond ${this.#nb} entries`);
    R.set(this.response, "head", head);
    let first: KernelError | null = null;
    for (let tail = R.get(this.response, "tail"); tail !== head; tail = (tail + 1) % this.#nb) {
      const at = PAGE + tail * PageResponseLayout.size;
      try {
        const resp = decodePageResponse(this.response.subarray(at, at + PageResponseLayout.size));
        this.#outstanding.delete(groupKey(resp.pasid, resp.grpid));
        this.#respond(resp);
      } catch (e) {
        if (!(e instanceof KernelError)) throw e;
        first ??= e;
      }
      R.set(this.response, "tail", (tail + 1) % this.#nb);
    }
    if (first !== null) throw first;
    return bytes.length;
  }
}
