import { Errno, KernelError, asHostPasid } from "@vsva/kernel";
import type { PageResponse } from "../ops.js";
import { PASID_MAX } from "./constants.js";
import { copyFromUser, defineStruct, readArgsz } from "./struct-layout.js";

/**
 * struct iommu_page_response as include/uapi/linux/iommu.h has it from
 * v5.10 on (argsz first; 24 bytes): what user space (VFIO's page-response
 * region) hands back for a page request it was reported.
 */
export const PageResponseLayout = defineStruct("iommu_page_response", 24, {
  argsz: [0, "u32"],
  version: [4, "u32"],
  flags: [8, "u32"],
  pasid: [12, "u32"],
  grpid: [16, "u32"],
  code: [20, "u32"],
});

export const IOMMU_PAGE_RESP_VERSION_1 = 1;
/** iommu_page_response.flags: the pasid field is valid. */
export const IOMMU_PAGE_RESP_PASID_VALID = 1 << 0;

/** enum iommu_page_response_code. */
export const PageResponseCode = { SUCCESS: 0, INVALID: 1, FAILURE: 2 } as const;
const CODE_NAMES: readonly PageResponse["code"][] = ["success", "invalid", "failure"];

/** The kernel's bytes for a response (argsz = 24, version 1). */
export function encodePageResponse(r: PageResponse): Uint8Array {
  const L = PageResponseLayout;
  const out = new Uint8Array(L.size);
  L.set(out, "argsz", L.size);
  L.set(out, "version", IOMMU_PAGE_RESP_VERSION_1);
  L.set(out, "flags", r.pasid === undefined ? 0 : IOMMU_PAGE_RESP_PASID_VALID);
  L.set(out, "pasid", r.pasid ?? 0);
  L.set(out, "grpid", r.grpid);
  L.set(out, "code", CODE_NAMES.indexOf(r.code));
  return out;
}

/**
 * Reads a response from user bytes, checked as iommu_page_response()
 * (drivers/iommu/iommu.c, v5.10) checks it: version 1 and no flag but
 * PASID_VALID, else EINVAL. Also refused with EINVAL, because the driver
 * would put them on the wire: argsz short of the struct, a code outside the
 * enum (VT-d carries it in a 4-bit field), a PASID beyond 20 bits, or a
 * PASID without PASID_VALID. EFAULT for bytes shorter than argsz covers.
 * Bytes past the struct are ignored, as `min(argsz, sizeof)` is copied.
 */
export function decodePageResponse(user: Uint8Array): PageResponse {
  const L = PageResponseLayout;
  const argsz = readArgsz(user);
  if (argsz < L.size) throw new KernelError(Errno.EINVAL, `page response argsz ${argsz} below ${L.size}`);
  const msg = new Uint8Array(L.size);
  copyFromUser(user, msg, 0, L.size);
  const version = L.get(msg, "version");
  if (version !== IOMMU_PAGE_RESP_VERSION_1) throw new KernelError(Errno.EINVAL, `page response version ${version}`);
  const flags = L.get(msg, "flags");
  if ((flags & ~IOMMU_PAGE_RESP_PASID_VALID) !== 0) throw new KernelError(Errno.EINVAL, `unknown page response flags 0x${flags.toString(16)}`);
  const code = CODE_NAMES[L.get(msg, "code")];
  if (code === undefined) throw new KernelError(Errno.EINVAL, `page response code ${L.get(msg, "code")} is not an iommu_page_response_code`);
  const pasid = L.get(msg, "pasid");
  const grpid = L.get(msg, "grpid");
  if ((flags & IOMMU_PAGE_RESP_PASID_VALID) === 0) {
    if (pasid !== 0) throw new KernelError(Errno.EINVAL, "page response PASID without PASID_VALID");
    return { pasid: undefined, grpid, code };
  }
  if (pasid >= PASID_MAX) throw new KernelError(Errno.EINVAL, `page response PASID ${pasid} beyond 20 bits`);
  return { pasid: asHostPasid(pasid), grpid, code };
}
