import { Errno, isKernelError } from "@vsva/kernel";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { CACHE_INV_VALID, type CacheInvalidateFields, decodeCacheInvalidateInfo, encodeCacheInvalidateInfo } from "./cache-invalidate.js";
import { CacheInvType, InvAddrFlag, InvGranularity, InvPasidFlag, PASID_MAX } from "./constants.js";
import { errnoOf } from "@vsva/kernel/testing";

const decode = (f: CacheInvalidateFields) => decodeCacheInvalidateInfo(encodeCacheInvalidateInfo(f));

describe("iommu_cache_invalidate_info at the boundary", () => {
  it("decodes a PASID-selective address invalidation", () => {
    const d = decode({
      cache: CacheInvType.IOTLB | CacheInvType.DEV_IOTLB,
      granularity: InvGranularity.ADDR,
      addrInfo: { flags: InvAddrFlag.PASID | InvAddrFlag.LEAF, pasid: 0x40n, addr: 0x7000_0000n, granuleSize: 4096n, nbGranules: 8n },
    });
    expect(d).toEqual({
      granularity: InvGranularity.ADDR,
      cache: 3,
      addrInfo: { pasid: 0x40, archid: undefined, addr: 0x7000_0000n, granuleSize: 4096n, nbGranules: 8n, leaf: true },
    });
  });

  it("decodes a PASID invalidation with an arch ID", () => {
    const d = decode({ cache: CacheInvType.PASID, granularity: InvGranularity.PASID, pasidInfo: { flags: InvPasidFlag.ARCHID, archid: 9, pasid: 5n } });
    expect(d).toEqual({ granularity: InvGranularity.PASID, cache: CacheInvType.PASID, pasidInfo: { pasid: undefined, archid: 9 } });
  });

  // Every (cache type, granularity) pair against the series' table.
  const pairs = [InvGranularity.DOMAIN, InvGranularity.PASID, InvGranularity.ADDR].flatMap((g) =>
    [CacheInvType.IOTLB, CacheInvType.DEV_IOTLB, CacheInvType.PASID].map((c) => [g, c] as const),
  );
  const legal: Record<string, boolean> = {
    "0/1": true, "0/2": false, "0/4": true,
    "1/1": true, "1/2": true, "1/4": true,
    "2/1": true, "2/2": true, "2/4": false,
  };
  it.each(pairs)("granularity %i with cache type %i follows the validity table", (g, c) => {
    expect(errnoOf(() => decode({ cache: c, granularity: g, pasidInfo: {}, addrInfo: {} }))).toBe(legal[`${g}/${c}`] === true ? 0 : Errno.EINVAL);
    expect((CACHE_INV_VALID[g] & c) !== 0).toBe(legal[`${g}/${c}`]);
  });

  const pad = (i: number) => {
    const p = new Uint8Array(6);
    p[i] = 0x80;
    return p;
  };
  it.each<[string, CacheInvalidateFields, number]>([
    ["argsz below offsetof(granu)", { argsz: 15, cache: 1 }, Errno.EINVAL],
    ["PASID granularity with argsz short of pasid_info", { argsz: 31, cache: 1, granularity: 1 }, Errno.EINVAL],
    ["ADDR granularity with argsz short of addr_info", { argsz: 55, cache: 1, granularity: 2 }, Errno.EINVAL],
    ["version 0", { version: 0, cache: 1 }, Errno.EINVAL],
    ["version 2", { version: 2, cache: 1 }, Errno.EINVAL],
    ["cache bit 3", { cache: 8 }, Errno.EINVAL],
    ["granularity 3", { cache: 1, granularity: 3 }, Errno.EINVAL],
    ["granularity 255", { cache: 1, granularity: 255 }, Errno.EINVAL],
    ["pasid_info flag bit 2", { cache: 1, granularity: 1, pasidInfo: { flags: 4 } }, Errno.EINVAL],
    ["addr_info flag bit 3", { cache: 1, granularity: 2, addrInfo: { flags: 8 } }, Errno.EINVAL],
    ["padding byte 0", { cache: 1, padding: pad(0) }, Errno.EINVAL],
    ["padding byte 5", { cache: 1, padding: pad(5) }, Errno.EINVAL],
    ["a PASID selector past 20 bits", { cache: 1, granularity: 1, pasidInfo: { flags: InvPasidFlag.PASID, pasid: BigInt(PASID_MAX) } }, Errno.EINVAL],
    ["an address PASID past 20 bits", { cache: 1, granularity: 2, addrInfo: { flags: InvAddrFlag.PASID, pasid: 1n << 63n } }, Errno.EINVAL],
  ])("refuses %s", (_what, fields, errno) => {
    expect(errnoOf(() => decode(fields))).toBe(errno);
  });

  it("needs only the 16 mandatory bytes for DOMAIN granularity", () => {
    const b = encodeCacheInvalidateInfo({ argsz: 16, cache: CacheInvType.IOTLB });
    expect(decodeCacheInvalidateInfo(b.subarray(0, 16))).toEqual({ granularity: 0, cache: 1 });
    expect(errnoOf(() => decodeCacheInvalidateInfo(b.subarray(0, 12)))).toBe(Errno.EFAULT);
  });

  it("gets E2BIG for a non-zero tail only under the strict rule", () => {
    const b = new Uint8Array(64);
    b.set(encodeCacheInvalidateInfo({ argsz: 64, cache: 1 }));
    b[60] = 1;
    expect(errnoOf(() => decodeCacheInvalidateInfo(b))).toBe(0);
    expect(errnoOf(() => decodeCacheInvalidateInfo(b, { trailingBytes: "strict" }))).toBe(Errno.E2BIG);
  });

  it("never throws anything but a KernelError, whatever the bytes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 80 }), fc.boolean(), (bytes, strict) => {
        try {
          decodeCacheInvalidateInfo(bytes, { trailingBytes: strict ? "strict" : "ignore" });
        } catch (e) {
          expect(isKernelError(e)).toBe(true);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it("never throws anything but a KernelError for near-valid headers with random bodies", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 80 }), fc.nat({ max: 7 }), fc.nat({ max: 3 }), fc.uint8Array({ minLength: 40, maxLength: 40 }), (argsz, cache, g, body) => {
        const b = new Uint8Array(56);
        b.set(encodeCacheInvalidateInfo({ argsz, cache, granularity: g }));
        b.set(body, 16);
        try {
          decodeCacheInvalidateInfo(b);
        } catch (e) {
          expect(isKernelError(e)).toBe(true);
        }
      }),
    );
  });
});
