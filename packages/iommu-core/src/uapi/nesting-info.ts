import { Errno, KernelError } from "@vsva/kernel";
import { NESTING_FEATURES_KNOWN, PasidFormat } from "./constants.js";
import { copyToUser, defineStruct, readArgsz } from "./struct-layout.js";

/**
 * struct iommu_nesting_info of the vSVA series (never merged; Liu Yi L,
 * "vfio: expose virtual Shared Virtual Addressing to VMs", 2020, its tree's
 * include/uapi/linux/iommu.h): a 32-byte header, then the vendor part.
 * Reported by the kernel, so the core encodes it; the VMM decodes it.
 */
export const NestingInfoLayout = defineStruct("iommu_nesting_info", 32, {
  argsz: [0, "u32"],
  flags: [4, "u32"],
  format: [8, "u32"],
  features: [12, "u32"],
  addr_width: [16, "u16"],
  pasid_bits: [18, "u16"],
  padding: [20, "bytes", 12],
});

/**
 * struct iommu_nesting_info_vtd as the series' tree has it: flags, an
 * explicit padding[12], then cap_reg at 16 and ecap_reg at 24 (32 bytes).
 * (An earlier posting had cap_reg at 8 behind an implicit hole.)
 */
export const NestingInfoVtdLayout = defineStruct("iommu_nesting_info_vtd", 32, {
  flags: [0, "u32"],
  padding: [4, "bytes", 12],
  cap_reg: [16, "u64"],
  ecap_reg: [24, "u64"],
});

export interface NestingInfoVtd {
  readonly kind: "vtd";
  /** Host CAP masked to what a vIOMMU may mirror. */
  readonly capReg: bigint;
  readonly ecapReg: bigint;
}

/**
 * What a driver reports about a nesting-capable domain. `format: NONE` with no
 * vendor part is the "empty" nesting info SMMU reports (seed 004): VFIO then
 * knows nesting is not usable for vSVA there.
 */
export type NestingInfo =
  | { readonly format: typeof PasidFormat.NONE; readonly features: 0; readonly addrWidth: 0; readonly pasidBits: 0; readonly vendor: null }
  | {
      readonly format: typeof PasidFormat.INTEL_VTD;
      /** IOMMU_NESTING_FEAT_* bits. */
      readonly features: number;
      /** Widest first-level input address. */
      readonly addrWidth: number;
      readonly pasidBits: number;
      readonly vendor: NestingInfoVtd;
    };

export const EMPTY_NESTING_INFO: NestingInfo = { format: PasidFormat.NONE, features: 0, addrWidth: 0, pasidBits: 0, vendor: null };

/** Bytes the full struct takes for this info: the header, plus the vendor part if any. */
export function nestingInfoSize(info: NestingInfo): number {
  return NestingInfoLayout.size + (info.vendor === null ? 0 : NestingInfoVtdLayout.size);
}

/**
 * Writes the info into the user's buffer with the series' argsz protocol
 * (its VT-d and SMMU `*_nesting_info`): if the user's argsz is smaller than the
 * struct, only argsz is written back with the size needed and the call
 * succeeds, so the caller can retry with a larger buffer. Otherwise the whole
 * struct is written, argsz set to its true size, flags and padding zero.
 * Returns the size needed. EFAULT if the buffer is shorter than it claims.
 */
export function reportNestingInfo(info: NestingInfo, user: Uint8Array): number {
  const size = nestingInfoSize(info);
  const argsz = readArgsz(user);
  const out = new Uint8Array(size);
  const L = NestingInfoLayout;
  L.set(out, "argsz", size);
  if (argsz < size) {
    copyToUser(user, out, 0, 4);
    return size;
  }
  L.set(out, "format", info.format);
  L.set(out, "features", info.features);
  L.set(out, "addr_width", info.addrWidth);
  L.set(out, "pasid_bits", info.pasidBits);
  if (info.vendor !== null) {
    NestingInfoVtdLayout.set(out, "cap_reg", info.vendor.capReg, L.size);
    NestingInfoVtdLayout.set(out, "ecap_reg", info.vendor.ecapReg, L.size);
  }
  copyToUser(user, out, 0, size);
  return size;
}

/**
 * The VMM's side: reads a nesting info the kernel wrote. Refuses (EINVAL) what
 * no kernel of the series writes, so a VMM model never mirrors garbage into a
 * vIOMMU: argsz short of the struct its format needs, non-zero flags, padding
 * or holes, unknown format or feature bits. EFAULT for a buffer shorter than argsz.
 */
export function decodeNestingInfo(user: Uint8Array): NestingInfo {
  const L = NestingInfoLayout;
  const argsz = readArgsz(user);
  if (argsz < L.size) throw new KernelError(Errno.EINVAL, `nesting info argsz ${argsz} below ${L.size}`);
  if (user.length < L.size) throw new KernelError(Errno.EFAULT, "nesting info header beyond the buffer");
  if (L.get(user, "flags") !== 0 || !L.isZero(user, "padding")) throw new KernelError(Errno.EINVAL, "non-zero reserved nesting info fields");
  const format = L.get(user, "format");
  const features = L.get(user, "features");
  if ((features & ~NESTING_FEATURES_KNOWN) !== 0) throw new KernelError(Errno.EINVAL, `unknown nesting features 0x${features.toString(16)}`);
  if (format === PasidFormat.NONE) {
    if (features !== 0 || L.get(user, "addr_width") !== 0 || L.get(user, "pasid_bits") !== 0) {
      throw new KernelError(Errno.EINVAL, "empty nesting info with non-zero fields");
    }
    return EMPTY_NESTING_INFO;
  }
  if (format !== PasidFormat.INTEL_VTD) throw new KernelError(Errno.EINVAL, `unknown nesting format ${format}`);
  const V = NestingInfoVtdLayout;
  const size = L.size + V.size;
  if (argsz < size) throw new KernelError(Errno.EINVAL, `argsz ${argsz} does not cover the VT-d part`);
  if (user.length < size) throw new KernelError(Errno.EFAULT, "VT-d nesting info beyond the buffer");
  if (V.get(user, "flags", L.size) !== 0 || !V.isZero(user, "padding", L.size)) throw new KernelError(Errno.EINVAL, "non-zero reserved VT-d nesting info fields");
  return {
    format,
    features,
    addrWidth: L.get(user, "addr_width"),
    pasidBits: L.get(user, "pasid_bits"),
    vendor: { kind: "vtd", capReg: V.get(user, "cap_reg", L.size), ecapReg: V.get(user, "ecap_reg", L.size) },
  };
}
