import { type TraceBus, formatBdf, type SourceId } from "@vsva/kernel";
import type { EndpointPort, PageResponseCode } from "../iommu-port.js";
import type { Layout, PhysMem } from "@vsva/pgtable";
import type { VtdCaches } from "./caches.js";
import {
  CcGran,
  ContextCacheDesc,
  DescType,
  DeviceTlbDesc,
  INV_TYPE_NAMES,
  InterruptEntryDesc,
  InvType,
  IotlbDesc,
  IotlbGran,
  PageGroupResponseDesc,
  PasidCacheDesc,
  PasidDeviceTlbDesc,
  PasidIotlbDesc,
  PcGran,
  PiotlbGran,
  ResponseCode,
  WaitDesc,
} from "./descriptors.js";
import { signedPageNumber } from "../page-field.js";
import type { VtdConfig } from "./options.js";
import "./trace-events.js";

/** IQERCD.IQEI codes (A1.11). */
export const Iqei = {
  NONE: 0,
  TAIL_INVALID: 1,
  FETCH_ERROR: 2,
  INVALID_TYPE: 3,
  RESERVED: 4,
  INVALID_WIDTH: 5,
  TAIL_MISALIGNED: 6,
  INVALID_TTM: 7,
} as const;

/** What executing descriptors needs from the rest of the unit. */
export interface InvalidationContext {
  readonly mem: PhysMem;
  readonly cfg: VtdConfig;
  readonly caches: VtdCaches;
  endpoint(sid: number): EndpointPort | undefined;
  /** Latched TTM is scalable mode (types 6–8 only mean something then). */
  scalableMode(): boolean;
  /** A wait descriptor with IF=1 completed. */
  waitInterrupt(): void;
  readonly trace: TraceBus | undefined;
}


/**
 * Device-TLB range encoding (A3.3): with S=1, the lowest zero bit of ADDR at
 * or above bit 12 gives the size; every address bit below it is a size bit.
 */
export function decodeDeviceTlbRange(pfnField: number, s: boolean): { addr: number; size: number } {
  if (!s) return { addr: signedPageNumber(pfnField) * 4096, size: 4096 };
  let p = 0;
  while (p < 52 && Math.floor(pfnField / 2 ** p) % 2 === 1) p++;
  if (p >= 51) return { addr: 0, size: 2 ** 64 };
  const pages = 2 ** (p + 1);
  const base = Math.floor(pfnField / pages) * pages;
  return { addr: signedPageNumber(base) * 4096, size: pages * 4096 };
}

const RC_CODE: Readonly<Record<number, PageResponseCode>> = {
  [ResponseCode.SUCCESS]: "success",
  [ResponseCode.INVALID]: "invalid",
};

function reservedIn(layout: Layout<string>, d: Uint32Array): boolean {
  return layout.hasReservedBits(d);
}

/** PFSID is reserved (must be zero) unless the unit reports ECAP.DIT (VT-d spec 6.5.2.5, 6.5.2.6). */
function pfsidReserved<F extends string>(cfg: VtdConfig, layout: Layout<F | "PFSID_LO" | "PFSID_HI">, d: Uint32Array): boolean {
  return !cfg.deviceTlbThrottling && (layout.get(d, "PFSID_LO") !== 0 || layout.get(d, "PFSID_HI") !== 0);
}

/**
 * Carries out one invalidation descriptor (A3) already fetched from the
 * queue. Returns 0, or the IQEI code of why the descriptor is invalid, in
 * which case nothing was done.
 */
export function executeDescriptor(x: InvalidationContext, d: Uint32Array, wide: boolean): number {
  const type = DescType.get(d, "TYPE");
  if (DescType.get(d, "TYPE_HI") !== 0) return Iqei.INVALID_TYPE;
  const pdp = type === InvType.PAGE_GROUP_RESPONSE && PageGroupResponseDesc.get(d, "PDP") === 1;
  if (pdp && !wide) return Iqei.INVALID_WIDTH;
  // qw2/qw3 are reserved in 256-bit descriptors, except a response's private data.
  if (wide && !pdp && ((d[4] ?? 0) | (d[5] ?? 0) | (d[6] ?? 0) | (d[7] ?? 0)) !== 0) return Iqei.RESERVED;
  const { cfg, caches } = x;
  const emit = (g: number | null, did: number | null, pasid: number | null, sid: number | null, addr: number | null, removed: number) => {
    x.trace?.emit("vtd.invalidation", "HW", sid === null ? {} : { device: formatBdf(sid as SourceId) }, {
      unit: cfg.name, type: INV_TYPE_NAMES[type] ?? String(type), granularity: g, did, pasid, sid, addr, removed,
    });
  };

  switch (type) {
    case InvType.CONTEXT_CACHE: {
      const g = ContextCacheDesc.get(d, "G");
      if (reservedIn(ContextCacheDesc, d) || g === 0) return Iqei.RESERVED;
      const sid = ContextCacheDesc.get(d, "SID");
      // Scalable-mode context entries carry no DID: a domain-selective
      // request is carried out as global (over-invalidation is always allowed).
      const n = g === CcGran.DEVICE ? caches.invalidateContextDevice(sid, ContextCacheDesc.get(d, "FM")) : caches.context.invalidateAll();
      emit(g, ContextCacheDesc.get(d, "DID"), null, g === CcGran.DEVICE ? sid : null, null, n);
      return 0;
    }
    case InvType.IOTLB: {
      const g = IotlbDesc.get(d, "G");
      const am = IotlbDesc.get(d, "AM");
      if (reservedIn(IotlbDesc, d) || g === 0 || (g === IotlbGran.PAGE && am > cfg.maxAddressMask)) return Iqei.RESERVED;
      const did = IotlbDesc.get(d, "DID");
      let n: number;
      let addr: number | null = null;
      if (g === IotlbGran.GLOBAL) {
        n = caches.iotlb.size + caches.flPsc.size + caches.slPsc.size;
        caches.invalidateAllTranslations();
      } else if (g === IotlbGran.DOMAIN) {
        n = caches.invalidateDomain(did);
      } else {
        const pfn = Math.floor(IotlbDesc.get(d, "ADDR") / 2 ** am) * 2 ** am;
        addr = pfn * 4096;
        n = caches.invalidateDomainPages(did, pfn, am, IotlbDesc.get(d, "IH") === 1);
      }
      emit(g, g === IotlbGran.GLOBAL ? null : did, null, null, addr, n);
      return 0;
    }
    case InvType.DEVICE_TLB: {
      if (!cfg.deviceTlb) return Iqei.INVALID_TYPE;
      if (reservedIn(DeviceTlbDesc, d) || pfsidReserved(cfg, DeviceTlbDesc, d)) return Iqei.RESERVED;
      const sid = DeviceTlbDesc.get(d, "SID");
      const r = decodeDeviceTlbRange(DeviceTlbDesc.get(d, "ADDR"), DeviceTlbDesc.get(d, "S") === 1);
      x.endpoint(sid)?.invalidateDeviceTlb({ addr: r.addr, size: r.size });
      emit(null, null, null, sid, r.addr, 0);
      return 0;
    }
    case InvType.INTERRUPT_ENTRY: {
      // Interrupt remapping is not modelled: a well-formed descriptor completes with nothing to drop.
      if (reservedIn(InterruptEntryDesc, d)) return Iqei.RESERVED;
      emit(InterruptEntryDesc.get(d, "G"), null, null, null, null, 0);
      return 0;
    }
    case InvType.WAIT: {
      const pd = WaitDesc.get(d, "PD") === 1;
      if (reservedIn(WaitDesc, d) || (pd && !cfg.pageRequests)) return Iqei.RESERVED;
      // Every earlier descriptor has completed by now (device-TLB invalidations
      // complete synchronously in this model), so FN and PD are satisfied.
      // A wait with neither SW nor IF is a plain fence, as Linux queues at the
      // head of a page-request drain (drivers/iommu/intel/svm.c:
      // intel_svm_drain_prq()); the architecture allows it (VT-d spec 6.5.2.8).
      // A status write that aborts (or names an address beyond any memory) is
      // lost; the architecture defines no error for it (SPEC?).
      if (WaitDesc.get(d, "SW") === 1 && WaitDesc.get(d, "STADDR_HI") === 0) {
        x.mem.write32(WaitDesc.getAddr(d, "STADDR"), WaitDesc.get(d, "STDATA"));
      }
      if (WaitDesc.get(d, "IF") === 1) x.waitInterrupt();
      emit(null, null, null, null, null, 0);
      return 0;
    }
    case InvType.PASID_IOTLB: {
      if (!x.scalableMode()) return Iqei.INVALID_TTM;
      const g = PasidIotlbDesc.get(d, "G");
      const am = PasidIotlbDesc.get(d, "AM");
      if (reservedIn(PasidIotlbDesc, d) || (g !== PiotlbGran.PASID && g !== PiotlbGran.PAGE) || (g === PiotlbGran.PAGE && am > cfg.maxAddressMask)) {
        return Iqei.RESERVED;
      }
      const did = PasidIotlbDesc.get(d, "DID");
      const pasid = PasidIotlbDesc.get(d, "PASID");
      let n: number;
      let addr: number | null = null;
      if (g === PiotlbGran.PASID) {
        n = caches.invalidatePasidMappings(did, pasid);
      } else {
        const pfn = signedPageNumber(Math.floor(PasidIotlbDesc.get(d, "ADDR") / 2 ** am) * 2 ** am);
        addr = pfn * 4096;
        n = caches.invalidatePasidPages(did, pasid, pfn, am, PasidIotlbDesc.get(d, "IH") === 1);
      }
      emit(g, did, pasid, null, addr, n);
      return 0;
    }
    case InvType.PASID_CACHE: {
      if (!x.scalableMode()) return Iqei.INVALID_TTM;
      const g = PasidCacheDesc.get(d, "G");
      if (reservedIn(PasidCacheDesc, d) || g === 2) return Iqei.RESERVED;
      const did = PasidCacheDesc.get(d, "DID");
      const pasid = PasidCacheDesc.get(d, "PASID");
      const n =
        g === PcGran.GLOBAL ? caches.pasid.invalidateAll() : g === PcGran.DOMAIN ? caches.invalidatePasidDomain(did) : caches.invalidatePasidEntry(did, pasid);
      emit(g, g === PcGran.GLOBAL ? null : did, g === PcGran.PASID ? pasid : null, null, null, n);
      return 0;
    }
    case InvType.PASID_DEVICE_TLB: {
      if (!cfg.deviceTlb) return Iqei.INVALID_TYPE;
      if (!x.scalableMode()) return Iqei.INVALID_TTM;
      if (reservedIn(PasidDeviceTlbDesc, d) || pfsidReserved(cfg, PasidDeviceTlbDesc, d)) return Iqei.RESERVED;
      const sid = PasidDeviceTlbDesc.get(d, "SID");
      const pasid = PasidDeviceTlbDesc.get(d, "PASID");
      const global = PasidDeviceTlbDesc.get(d, "G") === 1;
      const r = decodeDeviceTlbRange(PasidDeviceTlbDesc.get(d, "ADDR"), PasidDeviceTlbDesc.get(d, "S") === 1);
      x.endpoint(sid)?.invalidateDeviceTlb({ pasid, global, addr: r.addr, size: r.size });
      emit(global ? 1 : 0, null, pasid, sid, r.addr, 0);
      return 0;
    }
    case InvType.PAGE_GROUP_RESPONSE: {
      if (reservedIn(PageGroupResponseDesc, d)) return Iqei.RESERVED;
      const sid = PageGroupResponseDesc.get(d, "RID");
      const pp = PageGroupResponseDesc.get(d, "PP") === 1;
      const pasid = PageGroupResponseDesc.get(d, "PASID");
      const groupIndex = PageGroupResponseDesc.get(d, "PRGI");
      // PCIe: a reserved response code is handled by the device as Response Failure.
      const code = RC_CODE[PageGroupResponseDesc.get(d, "RC")] ?? "failure";
      const ep = x.endpoint(sid);
      if (ep !== undefined) ep.pageResponse(pp ? { sid: sid as SourceId, pasid, groupIndex, code } : { sid: sid as SourceId, groupIndex, code });
      x.trace?.emit("vtd.page-response", "HW", { device: formatBdf(sid as SourceId), ...(pp ? { hpasid: pasid } : {}) }, {
        unit: cfg.name, sid, pasid: pp ? pasid : null, groupIndex, code, auto: false,
      });
      return 0;
    }
    default:
      return Iqei.INVALID_TYPE;
  }
}
