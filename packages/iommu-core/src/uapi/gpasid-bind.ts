import { Errno, type GuestPasid, type HostPasid, KernelError } from "@vsva/kernel";
import {
  IOMMU_GPASID_BIND_VERSION_1,
  IOMMU_PASID_FORMAT_LAST,
  IOMMU_SVA_GPASID_VAL,
  IOMMU_SVA_VTD_GPASID_LAST,
  PASID_MAX,
  PasidFormat,
} from "./constants.js";
import { type TrailingBytesRule, checkTail, copyFromUser, defineStruct, readArgsz } from "./struct-layout.js";

/**
 * struct iommu_gpasid_bind_data, the layout from v5.10 on (with argsz; include/uapi/linux/iommu.h). We pin this layout, not the v5.3–v5.9 one: argsz is what the
 * series' validation rules are written against.
 */
export const GpasidBindLayout = defineStruct("iommu_gpasid_bind_data", 72, {
  argsz: [0, "u32"],
  version: [4, "u32"],
  format: [8, "u32"],
  addr_width: [12, "u32"],
  flags: [16, "u64"],
  gpgd: [24, "u64"],
  hpasid: [32, "u64"],
  gpasid: [40, "u64"],
  padding: [48, "bytes", 8],
  vendor: [56, "bytes", 16],
});

/** struct iommu_gpasid_bind_data_vtd, the `vendor.vtd` union member (C1.3). */
export const GpasidBindVtdLayout = defineStruct("iommu_gpasid_bind_data_vtd", 16, {
  flags: [0, "u64"],
  pat: [8, "u32"],
  emt: [12, "u32"],
});

export interface GpasidBindVtd {
  /** IOMMU_SVA_VTD_GPASID_* bits, all known (see {@link VtdGpasidFlag}). */
  readonly flags: number;
  readonly pat: number;
  readonly emt: number;
}

/** A validated bind (or unbind) request, typed. */
export interface GpasidBindData {
  readonly format: typeof PasidFormat.INTEL_VTD;
  /** Guest first-level paging width: 48 (4-level) or 57 (5-level). */
  readonly addrWidth: 48 | 57;
  /** GPA of the guest's first-level root (FLPTPTR); its checks are the driver's. */
  readonly gpgd: bigint;
  readonly hpasid: HostPasid;
  /** Present only with IOMMU_SVA_GPASID_VAL. */
  readonly gpasid: GuestPasid | undefined;
  readonly vtd: GpasidBindVtd;
}

export interface UapiDecodeOptions {
  readonly trailingBytes?: TrailingBytesRule;
}

/**
 * Copies and validates a bind request from user bytes, with the errno the
 * kernel returns. Order and rules follow iommu.c v5.10
 * (`iommu_sva_prepare_bind_data` + `iommu_check_bind_data`), then the
 * format-specific checks the VT-d driver made, moved to the boundary so the
 * value that comes out is fully typed:
 *
 * - EFAULT: the user mapped fewer bytes than must be copied;
 * - EINVAL: argsz below offsetof(vendor) = 56 (the fields before the vendor
 *   union are mandatory; a short vendor part is zero-filled, as the kernel's
 *   `min(argsz, sizeof)` copy leaves it);
 * - E2BIG: only under the strict trailing-bytes rule;
 * - EINVAL: version != 1; format outside the known range; unknown flags;
 *   non-zero padding;
 * - EINVAL: format other than VT-d (upstream: the VT-d driver's check; there
 *   is no other format, the 2020 vSVA VFIO series has SMMU report none);
 * - EINVAL: hpasid or (with GPASID_VAL) gpasid not a 20-bit PASID (upstream:
 *   the driver's `hpasid >= PASID_MAX`; a value that is no PASID cannot be a
 *   `HostPasid`). hpasid 0 is left to the driver: VT-d reserves it for
 *   requests without PASID, other IOMMUs need not;
 * - EINVAL: unknown VT-d flag bits, EMT wider than its 3-bit PASID-entry
 *   field, addr_width other than 48 or 57 (FLPM encodes only those).
 */
export function decodeGpasidBindData(user: Uint8Array, opts: UapiDecodeOptions = {}): GpasidBindData {
  const L = GpasidBindLayout;
  const minsz = L.offsetOf("vendor");
  const argsz = readArgsz(user);
  const k = new Uint8Array(L.size);
  copyFromUser(user, k, 0, minsz);
  if (argsz < minsz) throw new KernelError(Errno.EINVAL, `argsz ${argsz} below the ${minsz} mandatory bytes`);
  copyFromUser(user, k, minsz, Math.min(argsz, L.size) - minsz);
  checkTail(user, L.size, argsz, opts.trailingBytes ?? "ignore");

  const version = L.get(k, "version");
  if (version !== IOMMU_GPASID_BIND_VERSION_1) throw new KernelError(Errno.EINVAL, `bind data version ${version}`);
  const format = L.get(k, "format");
  if (format >= IOMMU_PASID_FORMAT_LAST) throw new KernelError(Errno.EINVAL, `unknown PASID format ${format}`);
  const flags = L.get(k, "flags");
  if ((flags & ~BigInt(IOMMU_SVA_GPASID_VAL)) !== 0n) throw new KernelError(Errno.EINVAL, `unknown bind flags 0x${flags.toString(16)}`);
  if (!L.isZero(k, "padding")) throw new KernelError(Errno.EINVAL, "non-zero padding");

  if (format !== PasidFormat.INTEL_VTD) throw new KernelError(Errno.EINVAL, `PASID format ${format} cannot be bound`);
  const hpasid = L.get(k, "hpasid");
  if (hpasid >= BigInt(PASID_MAX)) throw new KernelError(Errno.EINVAL, `hpasid 0x${hpasid.toString(16)} is not a 20-bit PASID`);
  const hasGpasid = (flags & BigInt(IOMMU_SVA_GPASID_VAL)) !== 0n;
  const gpasid = L.get(k, "gpasid");
  if (hasGpasid && gpasid >= BigInt(PASID_MAX)) throw new KernelError(Errno.EINVAL, `gpasid 0x${gpasid.toString(16)} is not a 20-bit PASID`);

  const V = GpasidBindVtdLayout;
  const vbase = L.offsetOf("vendor");
  const vflags = V.get(k, "flags", vbase);
  if (vflags >= BigInt(IOMMU_SVA_VTD_GPASID_LAST)) throw new KernelError(Errno.EINVAL, `unknown VT-d bind flags 0x${vflags.toString(16)}`);
  const emt = V.get(k, "emt", vbase);
  if (emt > 7) throw new KernelError(Errno.EINVAL, `EMT ${emt} does not fit its 3-bit field`);
  const addrWidth = L.get(k, "addr_width");
  if (addrWidth !== 48 && addrWidth !== 57) throw new KernelError(Errno.EINVAL, `guest address width ${addrWidth}: VT-d first level is 48 or 57`);

  return {
    format: PasidFormat.INTEL_VTD,
    addrWidth,
    gpgd: L.get(k, "gpgd"),
    hpasid: Number(hpasid) as HostPasid,
    gpasid: hasGpasid ? (Number(gpasid) as GuestPasid) : undefined,
    vtd: { flags: Number(vflags), pat: V.get(k, "pat", vbase), emt },
  };
}

/**
 * Whether two binds of one host PASID describe the same guest first level:
 * the guest page table, its width, the guest PASID and every VT-d attribute
 * the PASID entry would carry. One IOASID is one address space (the IOASID
 * design, Documentation/driver-api/ioasid.rst proposal, 2020), so the core
 * and the drivers refuse (EBUSY) a second bind of the PASID, on any device,
 * that differs here; they share this one definition so they cannot disagree.
 */
export function sameGpasidBinding(a: GpasidBindData, b: GpasidBindData): boolean {
  return (
    a.gpgd === b.gpgd &&
    a.addrWidth === b.addrWidth &&
    a.gpasid === b.gpasid &&
    a.vtd.flags === b.vtd.flags &&
    a.vtd.pat === b.vtd.pat &&
    a.vtd.emt === b.vtd.emt
  );
}

/** Raw field values for {@link encodeGpasidBindData}; anything left out is 0, version defaults to 1. */
export interface GpasidBindFields {
  readonly argsz?: number;
  readonly version?: number;
  readonly format?: number;
  readonly addrWidth?: number;
  readonly flags?: bigint;
  readonly gpgd?: bigint;
  readonly hpasid?: bigint;
  readonly gpasid?: bigint;
  readonly padding?: Uint8Array;
  readonly vtd?: { readonly flags?: bigint; readonly pat?: number; readonly emt?: number };
}

/**
 * Lays out the struct as user space (the VMM) does, raw: nothing is checked,
 * so tests and a malicious VMM can build any byte pattern.
 */
export function encodeGpasidBindData(f: GpasidBindFields): Uint8Array {
  const L = GpasidBindLayout;
  const b = new Uint8Array(L.size);
  L.set(b, "argsz", f.argsz ?? L.size);
  L.set(b, "version", f.version ?? IOMMU_GPASID_BIND_VERSION_1);
  L.set(b, "format", f.format ?? PasidFormat.INTEL_VTD);
  L.set(b, "addr_width", f.addrWidth ?? 48);
  L.set(b, "flags", f.flags ?? 0n);
  L.set(b, "gpgd", f.gpgd ?? 0n);
  L.set(b, "hpasid", f.hpasid ?? 0n);
  L.set(b, "gpasid", f.gpasid ?? 0n);
  if (f.padding !== undefined) L.set(b, "padding", f.padding);
  const V = GpasidBindVtdLayout;
  const vbase = L.offsetOf("vendor");
  V.set(b, "flags", f.vtd?.flags ?? 0n, vbase);
  V.set(b, "pat", f.vtd?.pat ?? 0, vbase);
  V.set(b, "emt", f.vtd?.emt ?? 0, vbase);
  return b;
}
