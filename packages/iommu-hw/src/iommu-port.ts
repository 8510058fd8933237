import type { SourceId } from "@vsva/kernel";

/**
 * The contract between a PCIe endpoint and the IOMMU above it, shared by the
 * VT-d and SMMUv3 units (QEMU's `translate()` idea: the result is an entry with
 * an address, a size and permissions, and "no permission" is the fault).
 *
 * For VT-d the requester is the PCIe source ID and the address-space tag a
 * PASID; for SMMUv3 they are the StreamID and SubstreamID. The names follow PCIe.
 */

/** One DMA (or ATS translation) request as it arrives at the IOMMU. */
export interface DmaRequest {
  readonly sid: SourceId;
  /** PASID / SubstreamID; absent for a request without PASID. */
  readonly pasid?: number;
  /** PASID TLP prefix "privileged mode requested" (only with a PASID). */
  readonly priv?: boolean;
  /** PASID TLP prefix "execute requested" (only with a PASID). */
  readonly exec?: boolean;
  /** Input address (IOVA or, with a PASID, a process virtual address). */
  readonly addr: number;
  readonly write: boolean;
  /**
   * An ATS translation request from a device TLB rather than an untranslated
   * access: the IOMMU answers with the translation and does not report a
   * fault for a not-present page (the device may issue a page request instead).
   */
  readonly ats?: boolean;
}

export interface TranslateOk {
  readonly ok: true;
  /** Output (host-physical) address of `addr` itself. */
  readonly pa: number;
  /** Size of the translated page (4 KiB, 2 MiB, 1 GiB, …); `pa - (addr & (size-1))` is its base. */
  readonly size: number;
  readonly read: boolean;
  readonly write: boolean;
  readonly exec: boolean;
  /** Usable by privileged requests only (first-level U/S = 0). */
  readonly privOnly: boolean;
}

export interface TranslateFault {
  readonly ok: false;
  /** Architectural fault reason: VT-d FRCD.FR code, or SMMUv3 event ID. */
  readonly reason: number;
  /** Symbolic name of the reason, for traces and messages. */
  readonly name: string;
  /**
   * True when the page may become available on a page request (not present or
   * insufficient permission in a first-level/stage-1 table of a PRI-capable
   * context): the endpoint should use PRI rather than give up.
   */
  readonly recoverable: boolean;
  /**
   * Present when the IOMMU holds the transaction instead of terminating it
   * (the SMMUv3 stall model, for a stream and context that software set to
   * stall): the requester must wait, not retry or give up. The IOMMU
   * completes the transaction later through {@link EndpointPort.stallResolved}
   * with the same `stag`. Absent on every VT-d result and on SMMUv3 results
   * of streams that do not stall.
   */
  readonly stalled?: { readonly stag: number };
}

/**
 * How a stalled transaction ended: `result` is the re-translation after a
 * retry (which may be `ok`, or stalled again under a new tag), or the fault
 * that terminated it (a RESUME with terminate or abort, a STALL_TERM, the
 * stream being disabled).
 */
export interface StallResolution {
  readonly stag: number;
  readonly result: TranslateResult;
}

export type TranslateResult = TranslateOk | TranslateFault;

/** A PRI page request (PCIe "Page Request Message"). */
export interface PageRequest {
  readonly sid: SourceId;
  readonly pasid?: number;
  readonly priv: boolean;
  readonly exec: boolean;
  /** Page-aligned address. */
  readonly addr: number;
  readonly read: boolean;
  readonly write: boolean;
  readonly lastInGroup: boolean;
  /** Page request group index, 9 bits. */
  readonly groupIndex: number;
  /** Device-specific private data (VT-d page request PDP, qw2/qw3); absent for none. */
  readonly privateData?: readonly [bigint, bigint];
}

/** PCIe PRG response codes. */
export type PageResponseCode = "success" | "invalid" | "failure";

export interface PageGroupResponse {
  readonly sid: SourceId;
  readonly pasid?: number;
  readonly groupIndex: number;
  readonly code: PageResponseCode;
}

/** What the endpoint sees above it. */
export interface IommuPort {
  translate(req: DmaRequest): TranslateResult;
  /** Delivers a page request; false when the IOMMU cannot accept it (PRI disabled or queue overflow: the request is dropped, as on hardware, and answered by the IOMMU if it must). */
  pageRequest(req: PageRequest): boolean;
}

/** What the IOMMU sees below it, per endpoint: invalidations of its device TLB and page responses. */
export interface EndpointPort {
  readonly sid: SourceId;
  /**
   * Device-TLB (ATC) invalidation. `pasid` undefined: requests without PASID;
   * `global`: every PASID. `size` is a power of two, `addr` aligned to it.
   */
  invalidateDeviceTlb(inv: { readonly pasid?: number; readonly global?: boolean; readonly addr: number; readonly size: number }): void;
  pageResponse(resp: PageGroupResponse): void;
  /**
   * A transaction the IOMMU stalled has been resumed or terminated (SMMUv3
   * stall model). Optional: only requesters that can stall (platform
   * masters; PCIe uses PRI instead) implement it, and an IOMMU only stalls
   * transactions of streams software configured to stall.
   */
  stallResolved?(resolution: StallResolution): void;
}
