import { Errno, KernelError } from "@vsva/kernel";

const TWO63 = 2 ** 63;
const TWO64 = 2 ** 64;

/**
 * Refuses a DMA request whose address is no bus address at all, before the unit
 * looks at it: a request is the caller's (a device model's) construction, so
 * a malformed one is a programming error and answered with EINVAL, like every
 * other bad value at this package's boundary, rather than with a fault reason
 * that real hardware could never have produced for it.
 *
 * - Every address must be an integer in [-2^63, 2^64): a PCIe memory request
 *   carries a 64-bit address (PCIe spec, TLP header, 64-bit addressing). An
 *   upper-half address may be given either as itself (>= 2^63) or sign-extended
 *   as a negative number (the form x86 first-level addresses take in this
 *   package, e.g. -(2^47) for 0xffff_8000_0000_0000); NaN, ±Infinity, a
 *   fraction or anything outside that range is no address.
 * - With translation off the unit's input is its output (VT-d spec §10.4.5, Global
 *   Status Register: with TES = 0 requests are not remapped; SMMUv3 spec, SMMU_CR0.SMMUEN
 *   and SMMU_GBPA: with SMMUEN = 0 transactions bypass or abort per GBPA), so the address must also fit the output width
 *   (`bypassBits`: VT-d HAW, SMMUv3 OAS) and be non-negative; nothing beyond it can be returned as a
 *   physical address and no fault record can be written with translation off.
 * With translation on, an integral address beyond what the tables cover is a
 * well-formed request and keeps its architected fault (VT-d 0x80/0x83, SMMUv3
 * F_ADDR_SIZE / F_TRANSLATION).
 */
export function checkRequestAddress(kind: string, name: string, addr: number, translating: boolean, bypassBits: number): void {
  // The unit is named by two strings joined only when a message is made: this runs on every
  // request, and building the name here cost a string concatenation per translation.
  if (typeof addr !== "number" || !Number.isInteger(addr) || addr < -TWO63 || addr >= TWO64) {
    throw new KernelError(Errno.EINVAL, `${kind} ${name}: DMA address ${String(addr)} is not a 64-bit bus address (an integer in [-2^63, 2^64))`);
  }
  if (!translating && (addr < 0 || addr >= 2 ** bypassBits)) {
    throw new KernelError(
      Errno.EINVAL,
      `${kind} ${name}: DMA address ${addr < 0 ? String(addr) : `0x${addr.toString(16)}`} is beyond the ${bypassBits}-bit output width, and translation is off (the address is used as the physical address)`,
    );
  }
}
