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
} from "@vsva/iommu-hw";

/**
 * Builders of the invalidation-queue descriptors the driver issues (VT-d spec §6.5.2
 * and the page group response of chapter 7), each from the shared layouts. Values are 128-bit; the queue
 * writes them into 256-bit slots with qw2/qw3 zero.
 */

const PAGE = 4096;

/** log2 of the smallest power of two >= n (n >= 1). */
export function orderOf(n: number): number {
  let o = 0;
  while (2 ** o < n) o++;
  return o;
}

/** Context-cache invalidation of one device (VT-d §6.5.2 context-cache descriptor G=3). */
export function contextCacheDevice(sid: number): Uint32Array {
  return ContextCacheDesc.encode({ TYPE: InvType.CONTEXT_CACHE, G: CcGran.DEVICE, SID: sid });
}

export function contextCacheGlobal(): Uint32Array {
  return ContextCacheDesc.encode({ TYPE: InvType.CONTEXT_CACHE, G: CcGran.GLOBAL });
}

/** PASID-cache invalidation of one PASID entry (VT-d §6.5.2 PASID-cache descriptor G=1). */
export function pasidCachePasid(did: number, pasid: number): Uint32Array {
  return PasidCacheDesc.encode({ TYPE: InvType.PASID_CACHE, G: PcGran.PASID, DID: did, PASID: pasid });
}

/** IOTLB domain-selective invalidation (VT-d §6.5.2 IOTLB descriptor G=2): second-level and nested entries tagged DID. */
export function iotlbDomain(did: number): Uint32Array {
  return IotlbDesc.encode({ TYPE: InvType.IOTLB, G: IotlbGran.DOMAIN, DID: did });
}

/**
 * IOTLB page-selective invalidation within DID (VT-d §6.5.2 IOTLB descriptor G=3) of 2^am pages at
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

/** PASID-based IOTLB, every mapping of (DID, PASID) (VT-d §6.5.2 PASID-based-IOTLB descriptor G=2; qi_flush_piotlb with npages = -1). */
export function piotlbPasid(did: number, pasid: number): Uint32Array {
  return PasidIotlbDesc.encode({ TYPE: InvType.PASID_IOTLB, G: PiotlbGran.PASID, DID: did, PASID: pasid });
}

/** PASID-based IOTLB of 2^am pages at `addr` (VT-d §6.5.2 PASID-based-IOTLB descriptor G=3). */
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
 * PASID-based device-TLB invalidation (VT-d §6.5.2 PASID-based-device-TLB descriptor) of `2^order` pages at `addr`;
 * `order` 52 or more means the whole address space. With S=1 the lowest zero
 * address bit at or above bit 12 encodes the size, so every bit below it is
 * set (as `qi_flush_dev_iotlb_pasid` does).
 */
export function devTlbPasid(sid: number, pasid: number, addr: number, order: number): Uint32Array {
  const d = PasidDeviceTlbDesc.encode({ TYPE: InvType.PASID_DEVICE_TLB, SID: sid, PASID: pasid });
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

/** Device-TLB invalidation for requests without PASID (VT-d §6.5.2 device-TLB descriptor), same range encoding as {@link devTlbPasid}. */
export function devTlb(sid: number, addr: number, order: number): Uint32Array {
  const d = DeviceTlbDesc.encode({ TYPE: InvType.DEVICE_TLB, SID: sid });
  const p = devTlbPasid(sid, 0, addr, order);
  DeviceTlbDesc.set(d, "ADDR", PasidDeviceTlbDesc.get(p, "ADDR"));
  DeviceTlbDesc.set(d, "S", PasidDeviceTlbDesc.get(p, "S"));
  return d;
}

/**
 * Invalidation wait (VT-d §6.5.2 invalidation-wait descriptor) with a status write of `data` at `statusAddr`;
 * `drain` sets PD (page-request drain: every page request received before
 * it is in the queue once it completes) and FN (fence).
 */
export function waitDesc(statusAddr: number, data: number, drain = false): Uint32Array {
  const words = statusAddr / 4;
  return WaitDesc.encode({
    TYPE: InvType.WAIT,
    SW: 1,
    FN: drain ? 1 : 0,
    PD: drain ? 1 : 0,
    STDATA: data >>> 0,
    STADDR: words % 2 ** 51,
    STADDR_HI: Math.floor(words / 2 ** 51),
  });
}

export type ResponseCodeName = "success" | "invalid" | "failure";

const RC: Record<ResponseCodeName, number> = { success: ResponseCode.SUCCESS, invalid: ResponseCode.INVALID, failure: ResponseCode.FAILURE };

/** Page group response (VT-d spec chapter 7, descriptor type 9). PP and PASID only when the request carried a PASID. */
export function pageGroupResponse(sid: number, pasid: number | undefined, groupIndex: number, code: ResponseCodeName): Uint32Array {
  return PageGroupResponseDesc.encode({
    TYPE: InvType.PAGE_GROUP_RESPONSE,
    PP: pasid === undefined ? 0 : 1,
    PASID: pasid ?? 0,
    RC: RC[code],
    RID: sid,
    LPIG: 1,
    PRGI: groupIndex,
  });
}
