import { Errno, type HostPasid, KernelError } from "@vsva/kernel";
import {
  CacheInvType,
  IOMMU_CACHE_INVALIDATE_INFO_VERSION_1,
  IOMMU_CACHE_INV_TYPE_NR,
  IOMMU_INV_GRANU_NR,
  InvAddrFlag,
  InvGranularity,
  InvPasidFlag,
  PASID_MAX,
} from "./constants.js";
import type { UapiDecodeOptions } from "./gpasid-bind.js";
import { checkTail, copyFromUser, defineStruct, readArgsz } from "./struct-layout.js";

/** struct iommu_cache_invalidate_info, v5.10-on layout (include/uapi/linux/iommu.h). */
export const CacheInvalidateLayout = defineStruct("iommu_cache_invalidate_info", 56, {
  argsz: [0, "u32"],
  version: [4, "u32"],
  cache: [8, "u8"],
  granularity: [9, "u8"],
  padding: [10, "bytes", 6],
  granu: [16, "bytes", 40],
});

/** struct iommu_inv_pasid_info, the `granu.pasid_info` member (C2.3). */
export const InvPasidInfoLayout = defineStruct("iommu_inv_pasid_info", 16, {
  flags: [0, "u32"],
  archid: [4, "u32"],
  pasid: [8, "u64"],
});

/** struct iommu_inv_addr_info, the `granu.addr_info` member (C2.3). */
export const InvAddrInfoLayout = defineStruct("iommu_inv_addr_info", 40, {
  flags: [0, "u32"],
  archid: [4, "u32"],
  pasid: [8, "u64"],
  addr: [16, "u64"],
  granule_size: [24, "u64"],
  nb_granules: [32, "u64"],
});

/** The selectors a PASID or address invalidation may carry; absent when its flag is clear. */
export interface InvTarget {
  readonly pasid: HostPasid | undefined;
  readonly archid: number | undefined;
}

export type CacheInvalidateInfo =
  | { readonly granularity: typeof InvGranularity.DOMAIN; readonly cache: number }
  | { readonly granularity: typeof InvGranularity.PASID; readonly cache: number; readonly pasidInfo: InvTarget }
  | {
      readonly granularity: typeof InvGranularity.ADDR;
      readonly cache: number;
      readonly addrInfo: InvTarget & {
        readonly addr: bigint;
        readonly granuleSize: bigint;
        readonly nbGranules: bigint;
        /** Only leaf entries changed (VT-d IH, SMMU Leaf). */
        readonly leaf: boolean;
      };
    };

/**
 * The series' validity table (iommu.c v5.10
 * `iommu_check_cache_invl_data`): which granularities each cache type takes.
 *
 * | granularity | DEV_IOTLB | IOTLB | PASID cache |
 * |-------------|-----------|-------|-------------|
 * | DOMAIN      | no        | yes   | yes         |
 * | PASID       | yes       | yes   | yes         |
 * | ADDR        | yes       | yes   | no          |
 */
export const CACHE_INV_VALID: Readonly<Record<InvGranularity, number>> = {
  [InvGranularity.DOMAIN]: CacheInvType.IOTLB | CacheInvType.PASID,
  [InvGranularity.PASID]: CacheInvType.IOTLB | CacheInvType.DEV_IOTLB | CacheInvType.PASID,
  [InvGranularity.ADDR]: CacheInvType.IOTLB | CacheInvType.DEV_IOTLB,
};

function pasidOf(pasid: bigint, valid: boolean): HostPasid | undefined {
  if (!valid) return undefined;
  if (pasid >= BigInt(PASID_MAX)) throw new KernelError(Errno.EINVAL, `invalidation PASID 0x${pasid.toString(16)} is not a 20-bit PASID`);
  return Number(pasid) as HostPasid;
}

/**
 * Copies and validates a guest-initiated invalidation, in the order of
 * iommu.c v5.10 `iommu_uapi_cache_invalidate`:
 *
 * - EFAULT: fewer user bytes than must be copied;
 * - EINVAL: argsz below offsetof(granu) = 16; below the end of `pasid_info`
 *   (32) for PASID granularity or of `addr_info` (56) for ADDR granularity;
 * - E2BIG: only under the strict trailing-bytes rule;
 * - EINVAL: version != 1; unknown cache bits; unknown granularity; a cache
 *   type the table above forbids at that granularity; unknown pasid_info or
 *   addr_info flags; non-zero padding;
 * - EINVAL: a PASID selector that is not a 20-bit PASID (our addition: the
 *   value must become a `HostPasid`; the hardware descriptors have 20 bits).
 *
 * An empty cache bitmap is accepted, as upstream does: it invalidates nothing.
 */
export function decodeCacheInvalidateInfo(user: Uint8Array, opts: UapiDecodeOptions = {}): CacheInvalidateInfo {
  const L = CacheInvalidateLayout;
  const minsz = L.offsetOf("granu");
  const argsz = readArgsz(user);
  const k = new Uint8Array(L.size);
  copyFromUser(user, k, 0, minsz);
  if (argsz < minsz) throw new KernelError(Errno.EINVAL, `argsz ${argsz} below the ${minsz} mandatory bytes`);
  const granularity = L.get(k, "granularity");
  const gbase = L.offsetOf("granu");
  if (granularity === InvGranularity.PASID && argsz < gbase + InvPasidInfoLayout.size) {
    throw new KernelError(Errno.EINVAL, `argsz ${argsz} does not cover pasid_info`);
  }
  if (granularity === InvGranularity.ADDR && argsz < gbase + InvAddrInfoLayout.size) {
    throw new KernelError(Errno.EINVAL, `argsz ${argsz} does not cover addr_info`);
  }
  copyFromUser(user, k, minsz, Math.min(argsz, L.size) - minsz);
  checkTail(user, L.size, argsz, opts.trailingBytes ?? "ignore");

  const version = L.get(k, "version");
  if (version !== IOMMU_CACHE_INVALIDATE_INFO_VERSION_1) throw new KernelError(Errno.EINVAL, `invalidate info version ${version}`);
  const cache = L.get(k, "cache");
  if ((cache & ~((1 << IOMMU_CACHE_INV_TYPE_NR) - 1)) !== 0) throw new KernelError(Errno.EINVAL, `unknown cache types 0x${cache.toString(16)}`);
  if (granularity >= IOMMU_INV_GRANU_NR) throw new KernelError(Errno.EINVAL, `unknown granularity ${granularity}`);
  const g = granularity as InvGranularity;
  if ((cache & ~CACHE_INV_VALID[g]) !== 0) {
    throw new KernelError(Errno.EINVAL, `cache types 0x${cache.toString(16)} cannot be invalidated at granularity ${g}`);
  }

  let info: CacheInvalidateInfo;
  if (g === InvGranularity.PASID) {
    const P = InvPasidInfoLayout;
    const flags = P.get(k, "flags", gbase);
    if ((flags & ~(InvPasidFlag.PASID | InvPasidFlag.ARCHID)) !== 0) throw new KernelError(Errno.EINVAL, `unknown pasid_info flags 0x${flags.toString(16)}`);
    info = {
      granularity: g,
      cache,
      pasidInfo: {
        pasid: pasidOf(P.get(k, "pasid", gbase), (flags & InvPasidFlag.PASID) !== 0),
        archid: (flags & InvPasidFlag.ARCHID) !== 0 ? P.get(k, "archid", gbase) : undefined,
      },
    };
  } else if (g === InvGranularity.ADDR) {
    const A = InvAddrInfoLayout;
    const flags = A.get(k, "flags", gbase);
    if ((flags & ~(InvAddrFlag.PASID | InvAddrFlag.ARCHID | InvAddrFlag.LEAF)) !== 0) {
      throw new KernelError(Errno.EINVAL, `unknown addr_info flags 0x${flags.toString(16)}`);
    }
    info = {
      granularity: g,
      cache,
      addrInfo: {
        pasid: pasidOf(A.get(k, "pasid", gbase), (flags & InvAddrFlag.PASID) !== 0),
        archid: (flags & InvAddrFlag.ARCHID) !== 0 ? A.get(k, "archid", gbase) : undefined,
        addr: A.get(k, "addr", gbase),
        granuleSize: A.get(k, "granule_size", gbase),
        nbGranules: A.get(k, "nb_granules", gbase),
        leaf: (flags & InvAddrFlag.LEAF) !== 0,
      },
    };
  } else {
    info = { granularity: g, cache };
  }
  // Upstream checks padding last, after the union; the errno is the same.
  if (!L.isZero(k, "padding")) throw new KernelError(Errno.EINVAL, "non-zero padding");
  return info;
}

/** Raw fields for {@link encodeCacheInvalidateInfo}; unchecked, for VMMs and tests. */
export interface CacheInvalidateFields {
  readonly argsz?: number;
  readonly version?: number;
  readonly cache?: number;
  readonly granularity?: number;
  readonly padding?: Uint8Array;
  readonly pasidInfo?: { readonly flags?: number; readonly archid?: number; readonly pasid?: bigint };
  readonly addrInfo?: {
    readonly flags?: number;
    readonly archid?: number;
    readonly pasid?: bigint;
    readonly addr?: bigint;
    readonly granuleSize?: bigint;
    readonly nbGranules?: bigint;
  };
}

export function encodeCacheInvalidateInfo(f: CacheInvalidateFields): Uint8Array {
  const L = CacheInvalidateLayout;
  const b = new Uint8Array(L.size);
  L.set(b, "argsz", f.argsz ?? L.size);
  L.set(b, "version", f.version ?? IOMMU_CACHE_INVALIDATE_INFO_VERSION_1);
  L.set(b, "cache", f.cache ?? 0);
  L.set(b, "granularity", f.granularity ?? 0);
  if (f.padding !== undefined) L.set(b, "padding", f.padding);
  const gbase = L.offsetOf("granu");
  if (f.pasidInfo !== undefined) {
    const P = InvPasidInfoLayout;
    P.set(b, "flags", f.pasidInfo.flags ?? 0, gbase);
    P.set(b, "archid", f.pasidInfo.archid ?? 0, gbase);
    P.set(b, "pasid", f.pasidInfo.pasid ?? 0n, gbase);
  }
  if (f.addrInfo !== undefined) {
    const A = InvAddrInfoLayout;
    A.set(b, "flags", f.addrInfo.flags ?? 0, gbase);
    A.set(b, "archid", f.addrInfo.archid ?? 0, gbase);
    A.set(b, "pasid", f.addrInfo.pasid ?? 0n, gbase);
    A.set(b, "addr", f.addrInfo.addr ?? 0n, gbase);
    A.set(b, "granule_size", f.addrInfo.granuleSize ?? 0n, gbase);
    A.set(b, "nb_granules", f.addrInfo.nbGranules ?? 0n, gbase);
  }
  return b;
}
