import {
  CcGran,
  ContextCacheDesc,
  DeviceTlbDesc,
  IotlbDesc,
  IotlbGran,
  InvType,
  PageGroupResponseDesc,
  PasidCacheDesc,
  PasidDeviceTlbDesc,
  PasidIotlbDesc,
  PcGran,
  PiotlbGran,
  ResponseCode,
  WaitDesc,
  pageField,
  pfsidFields,
} from "@vsva/iommu-hw";

/**
 * Builders of the invalidation-queue descriptors the driver issues (VT-d
 * spec 6.5.2, 7.7), each from the shared layouts, with the field values
 * Linux v5.10 writes (include/linux/intel-iommu.h QI_* macros). Values are
 * 128-bit except a page group response with private data; the queue writes
 * them into 256-bit slots with the rest zero.
 */

const PAGE = 4096;

/** log2 of the smallest power of two >= n (n >= 1). */
export function orderOf(n: number): number {
  let o = 0;
  while (2 ** o < n) o++;
  return o;
}

/**
 * Context-cache invalidation of one device (G=3), tagged with the domain ID
 * the device's context was used with, as `qi_flush_context()` is called
 * from `intel_iommu_enable_pasid()` and `domain_context_clear_one()`
 * (drivers/iommu/intel/iommu.c).
 */
export function contextCacheDevice(did: number, sid: number): Uint32Array {
  return ContextCacheDesc.encode({ TYPE: InvType.CONTEXT_CACHE, G: CcGran.DEVICE, DID: did, SID: sid });
}

export function contextCacheGlobal(): Uint32Array {
  return ContextCacheDesc.encode({ TYPE: InvType.CONTEXT_CACHE, G: CcGran.GLOBAL });
}

/** PASID-cache invalidation of one PASID entry (VT-d spec 6.5.2.2, G=1). */
export function pasidCachePasid(did: number, pasid: number): Uint32Array {
  return PasidCacheDesc.encode({ TYPE: InvType.PASID_CACHE, G: PcGran.PASID, DID: did, PASID: pasid });
}

/** IOTLB domain-selective invalidation (6.5.2.3, G=2): second-level and nested entries tagged DID. */
export function iotlbDomain(did: number): Uint32Array {
  return IotlbDesc.encode({ TYPE: InvType.IOTLB, G: IotlbGran.DOMAIN, DID: did });
}

/**
 * IOTLB page-selective invalidation within DID (6.5.2.3, G=3) of 2^am pages at
 * `addr` (aligned down to the mask, as `qi_flush_iotlb` with a PSI request).
 */
export function iotlbPages(did: number, addr: number, am: number, leafOnly: boolean): Uint32Array {
  const span = PAGE * 2 ** am;
  return IotlbDesc.encode({
    TYPE: InvType.IOTLB,
    G: IotlbGran.PAGE,
    DID: did,
    AM: am,
    IH: leafOnly ? 1 : 0,
    ADDR: pageField(Math.floor(addr / span) * span),
  });
}

/** PASID-based IOTLB, every mapping of (DID, PASID) (6.5.2.4, G=2; qi_flush_piotlb with npages = -1). */
export function piotlbPasid(did: number, pasid: number): Uint32Array {
  return PasidIotlbDesc.encode({ TYPE: InvType.PASID_IOTLB, G: PiotlbGran.PASID, DID: did, PASID: pasid });
}

/** PASID-based IOTLB of 2^am pages at `addr` (6.5.2.4, G=3). */
export function piotlbPages(did: number, pasid: number, addr: number, am: number, leafOnly: boolean): Uint32Array {
  const span = PAGE * 2 ** am;
  return PasidIotlbDesc.encode({
    TYPE: InvType.PASID_IOTLB,
    G: PiotlbGran.PAGE,
    DID: did,
    PASID: pasid,
    AM: am,
    IH: leafOnly ? 1 : 0,
    ADDR: pageField(Math.floor(addr / span) * span),
  });
}

/**
 * Whom a device-TLB invalidation is for: the requester and the source ID of
 * its physical function, which the descriptor carries when the unit reports
 * ECAP.DIT and is 0 otherwise (`device_domain_info.pfsid`, set in
 * drivers/iommu/intel/iommu.c: iommu_enable_dev_iotlb()).
 */
export interface DevTlbTarget {
  readonly sid: number;
  readonly pfsid: number;
}

/**
 * PASID-based device-TLB invalidation (VT-d spec 6.5.2.6) of `2^order` pages
 * at `addr`; `order` 52 or more means the whole address space. With S=1 the
 * lowest zero address bit at or above bit 12 encodes the size, so every bit
 * below it is set (as `qi_flush_dev_iotlb_pasid` does). PFSID as
 * `qi_flush_dev_iotlb_pasid()` fills it. MIP stays 0 where Linux writes the
 * ATS Invalidate Queue Depth: the model's device TLBs have no queue to size.
 */
export function devTlbPasid(t: DevTlbTarget, pasid: number, addr: number, order: number): Uint32Array {
  const d = PasidDeviceTlbDesc.encode({ TYPE: InvType.PASID_DEVICE_TLB, SID: t.sid, PASID: pasid, ...pfsidFields(t.pfsid) });
  if (order === 0) {
    PasidDeviceTlbDesc.set(d, "ADDR", pageField(addr));
    return d;
  }
  const o = Math.min(order, 52);
  const pages = 2 ** o;
  const base = o >= 52 ? 0 : Math.floor(pageField(addr) / pages) * pages;
  // Size bits: ones below position o-1 (2^(o-1) - 1), the bit at o-1 stays 0.
  PasidDeviceTlbDesc.set(d, "ADDR", base + 2 ** (o - 1) - 1);
  PasidDeviceTlbDesc.set(d, "S", 1);
  return d;
}

/**
 * Device-TLB invalidation for requests without PASID (VT-d spec 6.5.2.5),
 * same range encoding and PFSID as {@link devTlbPasid} (`qi_flush_dev_iotlb()`).
 */
export function devTlb(t: DevTlbTarget, addr: number, order: number): Uint32Array {
  const d = DeviceTlbDesc.encode({ TYPE: InvType.DEVICE_TLB, SID: t.sid, ...pfsidFields(t.pfsid) });
  const p = devTlbPasid(t, 0, addr, order);
  DeviceTlbDesc.set(d, "ADDR", PasidDeviceTlbDesc.get(p, "ADDR"));
  DeviceTlbDesc.set(d, "S", PasidDeviceTlbDesc.get(p, "S"));
  return d;
}

/**
 * Invalidation wait (VT-d spec 6.5.2.8) with a status write of `data` at
 * `statusAddr`; `drain` sets PD (page-request drain: every page request
 * received before it is in the queue once it completes). As in
 * `qi_submit_sync()` with QI_OPT_WAIT_DRAIN, the fence of a drain is a
 * separate descriptor ({@link fenceWait}), not FN on this one.
 */
export function waitDesc(statusAddr: number, data: number, drain = false): Uint32Array {
  const words = statusAddr / 4;
  return WaitDesc.encode({
    TYPE: InvType.WAIT,
    SW: 1,
    PD: drain ? 1 : 0,
    STDATA: data >>> 0,
    STADDR: words % 2 ** 51,
    STADDR_HI: Math.floor(words / 2 ** 51),
  });
}

/** The status value `qi_submit_sync()` polls for (dmar.c: enum QI_FREE, QI_IN_USE, QI_DONE). */
const QI_DONE = 2;

/**
 * The fence at the head of a page-request drain: a wait with FN only, no
 * status write and no interrupt (QI_IWD_STATUS_DATA(QI_DONE) | QI_IWD_FENCE |
 * QI_IWD_TYPE in drivers/iommu/intel/svm.c: intel_svm_drain_prq()).
 */
export function fenceWait(): Uint32Array {
  return WaitDesc.encode({ TYPE: InvType.WAIT, FN: 1, STDATA: QI_DONE });
}

export type ResponseCodeName = "success" | "invalid" | "failure";

/**
 * Response codes as the page group response carries them. The driver's own
 * answers (prq_event_thread()) use the VT-d codes QI_RESP_SUCCESS/INVALID/
 * FAILURE = 0/1/0xF; an answer relayed from the IOMMU core
 * (intel_svm_page_response()) writes `enum iommu_page_response_code` as is,
 * where failure is 2: a code PCIe reserves in the PRG Response Message
 * (PCIe base spec, Page Request Services), which the device handles as
 * Response Failure. Both kept, as v5.10 writes them.
 */
const VTD_RC: Record<ResponseCodeName, number> = { success: ResponseCode.SUCCESS, invalid: ResponseCode.INVALID, failure: ResponseCode.FAILURE };
const UAPI_RC: Record<ResponseCodeName, number> = { success: 0, invalid: 1, failure: 2 };

export interface PageGroupResponseArgs {
  readonly sid: number;
  /** The request's PASID; PP and PASID are written only when it carried one. */
  readonly pasid: number | undefined;
  readonly groupIndex: number;
  readonly code: ResponseCodeName;
  /** "driver": the VT-d code (prq_event_thread()); "core": the UAPI code (intel_svm_page_response()). */
  readonly codes: "driver" | "core";
  /** LPIG of the response: the request's, or 1 for a group the core answers (its fault carries LAST_PAGE). */
  readonly last: boolean;
  /** The request's private data (PDP), returned in qw2/qw3 of a 256-bit descriptor. */
  readonly privateData?: readonly [bigint, bigint];
}

/** Page group response (VT-d spec 7.7, type 9). */
export function pageGroupResponse(a: PageGroupResponseArgs): Uint32Array {
  const d = PageGroupResponseDesc.encode({
    TYPE: InvType.PAGE_GROUP_RESPONSE,
    PP: a.pasid === undefined ? 0 : 1,
    PDP: a.privateData === undefined ? 0 : 1,
    PASID: a.pasid ?? 0,
    RC: (a.codes === "driver" ? VTD_RC : UAPI_RC)[a.code],
    RID: a.sid,
    LPIG: a.last ? 1 : 0,
    PRGI: a.groupIndex,
  });
  if (a.privateData === undefined) return d;
  const wide = new Uint32Array(8);
  wide.set(d);
  a.privateData.forEach((q, i) => {
    wide[4 + 2 * i] = Number(BigInt.asUintN(32, q));
    wide[5 + 2 * i] = Number(BigInt.asUintN(32, q >> 32n));
  });
  return wide;
}
