import { Errno, KernelError } from "@vsva/kernel";
import type { PageRequestFault } from "../ops.js";
import { PASID_MAX } from "./constants.js";
import { defineStruct } from "./struct-layout.js";

/**
 * struct iommu_fault and its two records as include/uapi/linux/iommu.h has
 * them in v5.10: a type, a padding word, then a 56-byte union holding
 * struct iommu_fault_unrecoverable (32 bytes) or struct
 * iommu_fault_page_request (40 bytes); 64 bytes in all. VFIO's DMA fault
 * region carries these records, one per ring entry.
 */
export const IommuFaultLayout = defineStruct("iommu_fault", 64, {
  type: [0, "u32"],
  padding: [4, "u32"],
  union: [8, "bytes", 56],
});
const UNION = IommuFaultLayout.offsetOf("union");

export const FaultUnrecoverableLayout = defineStruct("iommu_fault_unrecoverable", 32, {
  reason: [0, "u32"],
  flags: [4, "u32"],
  pasid: [8, "u32"],
  perm: [12, "u32"],
  addr: [16, "u64"],
  fetch_addr: [24, "u64"],
});

export const FaultPageRequestLayout = defineStruct("iommu_fault_page_request", 40, {
  flags: [0, "u32"],
  pasid: [4, "u32"],
  grpid: [8, "u32"],
  perm: [12, "u32"],
  addr: [16, "u64"],
  private_data0: [24, "u64"],
  private_data1: [32, "u64"],
});

/** enum iommu_fault_type. */
export const IommuFaultType = { DMA_UNRECOV: 1, PAGE_REQ: 2 } as const;
/** IOMMU_FAULT_PERM_*. */
export const FaultPerm = { READ: 1 << 0, WRITE: 1 << 1, EXEC: 1 << 2, PRIV: 1 << 3 } as const;
/** IOMMU_FAULT_UNRECOV_* (iommu_fault_unrecoverable.flags). */
export const FaultUnrecovFlag = { PASID_VALID: 1 << 0, ADDR_VALID: 1 << 1, FETCH_ADDR_VALID: 1 << 2 } as const;
/** IOMMU_FAULT_PAGE_REQUEST_* and IOMMU_FAULT_PAGE_RESPONSE_NEEDS_PASID (iommu_fault_page_request.flags). */
export const FaultPageRequestFlag = { PASID_VALID: 1 << 0, LAST_PAGE: 1 << 1, PRIV_DATA: 1 << 2, NEEDS_PASID: 1 << 3 } as const;
/** enum iommu_fault_reason: UNKNOWN (0) to OOR_ADDRESS (8). */
export const IommuFaultReason = {
  UNKNOWN: 0,
  PASID_FETCH: 1,
  BAD_PASID_ENTRY: 2,
  PASID_INVALID: 3,
  WALK_EABT: 4,
  PTE_FETCH: 5,
  PERMISSION: 6,
  ACCESS: 7,
  OOR_ADDRESS: 8,
} as const;

export interface FaultPermissions {
  readonly read: boolean;
  readonly write: boolean;
  readonly exec: boolean;
  readonly priv: boolean;
}

/** struct iommu_fault_page_request, decoded. Absent fields are the ones whose flag is clear. */
export interface FaultPageRequestRecord {
  readonly pasid: number | undefined;
  /** IOMMU_FAULT_PAGE_RESPONSE_NEEDS_PASID: the response must carry the request's PASID. */
  readonly needsPasid: boolean;
  readonly last: boolean;
  readonly grpid: number;
  readonly perm: FaultPermissions;
  readonly addr: bigint;
  readonly privateData: readonly [bigint, bigint] | undefined;
}

/** struct iommu_fault_unrecoverable, decoded. */
export interface FaultUnrecoverableRecord {
  /** enum iommu_fault_reason. */
  readonly reason: number;
  readonly pasid: number | undefined;
  readonly perm: FaultPermissions;
  readonly addr: bigint | undefined;
  readonly fetchAddr: bigint | undefined;
}

export type IommuFaultRecord =
  | { readonly type: "page-request"; readonly prm: FaultPageRequestRecord }
  | { readonly type: "unrecoverable"; readonly event: FaultUnrecoverableRecord };

const U64 = 2n ** 64n;

function bad(msg: string): never {
  throw new KernelError(Errno.EINVAL, `iommu_fault: ${msg}`);
}

function permBits(p: FaultPermissions): number {
  return (p.read ? FaultPerm.READ : 0) | (p.write ? FaultPerm.WRITE : 0) | (p.exec ? FaultPerm.EXEC : 0) | (p.priv ? FaultPerm.PRIV : 0);
}

function permOf(bits: number): FaultPermissions {
  if ((bits & ~(FaultPerm.READ | FaultPerm.WRITE | FaultPerm.EXEC | FaultPerm.PRIV)) !== 0) bad(`unknown permission bits 0x${bits.toString(16)}`);
  return { read: (bits & FaultPerm.READ) !== 0, write: (bits & FaultPerm.WRITE) !== 0, exec: (bits & FaultPerm.EXEC) !== 0, priv: (bits & FaultPerm.PRIV) !== 0 };
}

function checkPasid(pasid: number | undefined): void {
  if (pasid !== undefined && !(Number.isInteger(pasid) && pasid >= 0 && pasid < PASID_MAX)) bad(`PASID ${pasid} is not a 20-bit PASID`);
}

function checkU64(v: bigint | undefined, what: string): void {
  if (v !== undefined && (v < 0n || v >= U64)) bad(`${what} does not fit 64 bits`);
}

/**
 * The record's bytes. EINVAL for what the struct cannot hold (a PASID
 * beyond 20 bits, a group index beyond 32 bits, an address beyond 64 bits,
 * a reason outside the enum): the kernel never writes those.
 */
export function encodeIommuFault(f: IommuFaultRecord): Uint8Array {
  const out = new Uint8Array(IommuFaultLayout.size);
  if (f.type === "page-request") {
    const p = f.prm;
    const P = FaultPageRequestLayout;
    checkPasid(p.pasid);
    checkU64(p.addr, "address");
    p.privateData?.forEach((q) => checkU64(q, "private data"));
    if (!(Number.isInteger(p.grpid) && p.grpid >= 0 && p.grpid < 2 ** 32)) bad(`group index ${p.grpid}`);
    const flags =
      (p.pasid === undefined ? 0 : FaultPageRequestFlag.PASID_VALID) |
      (p.last ? FaultPageRequestFlag.LAST_PAGE : 0) |
      (p.privateData === undefined ? 0 : FaultPageRequestFlag.PRIV_DATA) |
      (p.needsPasid ? FaultPageRequestFlag.NEEDS_PASID : 0);
    IommuFaultLayout.set(out, "type", IommuFaultType.PAGE_REQ);
    P.set(out, "flags", flags, UNION);
    P.set(out, "pasid", p.pasid ?? 0, UNION);
    P.set(out, "grpid", p.grpid, UNION);
    P.set(out, "perm", permBits(p.perm), UNION);
    P.set(out, "addr", p.addr, UNION);
    P.set(out, "private_data0", p.privateData?.[0] ?? 0n, UNION);
    P.set(out, "private_data1", p.privateData?.[1] ?? 0n, UNION);
    return out;
  }
  const e = f.event;
  const U = FaultUnrecoverableLayout;
  checkPasid(e.pasid);
  checkU64(e.addr, "address");
  checkU64(e.fetchAddr, "fetch address");
  if (!Object.values(IommuFaultReason).includes(e.reason as never)) bad(`reason ${e.reason} is not an iommu_fault_reason`);
  const flags =
    (e.pasid === undefined ? 0 : FaultUnrecovFlag.PASID_VALID) |
    (e.addr === undefined ? 0 : FaultUnrecovFlag.ADDR_VALID) |
    (e.fetchAddr === undefined ? 0 : FaultUnrecovFlag.FETCH_ADDR_VALID);
  IommuFaultLayout.set(out, "type", IommuFaultType.DMA_UNRECOV);
  U.set(out, "reason", e.reason, UNION);
  U.set(out, "flags", flags, UNION);
  U.set(out, "pasid", e.pasid ?? 0, UNION);
  U.set(out, "perm", permBits(e.perm), UNION);
  U.set(out, "addr", e.addr ?? 0n, UNION);
  U.set(out, "fetch_addr", e.fetchAddr ?? 0n, UNION);
  return out;
}

function zeroFrom(buf: Uint8Array, from: number): boolean {
  for (let i = from; i < IommuFaultLayout.size; i++) if (buf[i] !== 0) return false;
  return true;
}

/**
 * Reads a record (the VMM's side of the fault region). Everything a kernel
 * of the series never writes is refused with EINVAL: fewer than 64 bytes,
 * an unknown type, non-zero padding or bytes past the record in the union,
 * unknown flag, permission or reason values, and a field set whose flag is
 * clear (a PASID without PASID_VALID, private data without PRIV_DATA...).
 */
export function decodeIommuFault(bytes: Uint8Array): IommuFaultRecord {
  if (bytes.length < IommuFaultLayout.size) bad(`${bytes.length} bytes, the record takes ${IommuFaultLayout.size}`);
  const F = IommuFaultLayout;
  if (F.get(bytes, "padding") !== 0) bad("non-zero padding");
  const type = F.get(bytes, "type");
  if (type === IommuFaultType.PAGE_REQ) {
    const P = FaultPageRequestLayout;
    if (!zeroFrom(bytes, UNION + P.size)) bad("non-zero bytes past the page request");
    const flags = P.get(bytes, "flags", UNION);
    const known = FaultPageRequestFlag.PASID_VALID | FaultPageRequestFlag.LAST_PAGE | FaultPageRequestFlag.PRIV_DATA | FaultPageRequestFlag.NEEDS_PASID;
    if ((flags & ~known) !== 0) bad(`unknown page request flags 0x${flags.toString(16)}`);
    const pasidValid = (flags & FaultPageRequestFlag.PASID_VALID) !== 0;
    const pasid = P.get(bytes, "pasid", UNION);
    if (!pasidValid && pasid !== 0) bad("PASID without PASID_VALID");
    if ((flags & FaultPageRequestFlag.NEEDS_PASID) !== 0 && !pasidValid) bad("NEEDS_PASID without PASID_VALID");
    if (pasidValid) checkPasid(pasid);
    const priv: [bigint, bigint] = [P.get(bytes, "private_data0", UNION), P.get(bytes, "private_data1", UNION)];
    const hasPriv = (flags & FaultPageRequestFlag.PRIV_DATA) !== 0;
    if (!hasPriv && (priv[0] !== 0n || priv[1] !== 0n)) bad("private data without PRIV_DATA");
    return {
      type: "page-request",
      prm: {
        pasid: pasidValid ? pasid : undefined,
        needsPasid: (flags & FaultPageRequestFlag.NEEDS_PASID) !== 0,
        last: (flags & FaultPageRequestFlag.LAST_PAGE) !== 0,
        grpid: P.get(bytes, "grpid", UNION),
        perm: permOf(P.get(bytes, "perm", UNION)),
        addr: P.get(bytes, "addr", UNION),
        privateData: hasPriv ? priv : undefined,
      },
    };
  }
  if (type !== IommuFaultType.DMA_UNRECOV) bad(`unknown fault type ${type}`);
  const U = FaultUnrecoverableLayout;
  if (!zeroFrom(bytes, UNION + U.size)) bad("non-zero bytes past the unrecoverable fault");
  const flags = U.get(bytes, "flags", UNION);
  const known = FaultUnrecovFlag.PASID_VALID | FaultUnrecovFlag.ADDR_VALID | FaultUnrecovFlag.FETCH_ADDR_VALID;
  if ((flags & ~known) !== 0) bad(`unknown unrecoverable fault flags 0x${flags.toString(16)}`);
  const reason = U.get(bytes, "reason", UNION);
  if (reason > IommuFaultReason.OOR_ADDRESS) bad(`reason ${reason} is not an iommu_fault_reason`);
  const field = <T extends bigint | number>(flag: number, v: T, zero: T, what: string): T | undefined => {
    if ((flags & flag) !== 0) return v;
    if (v !== zero) bad(`${what} without its VALID flag`);
    return undefined;
  };
  const pasid = field(FaultUnrecovFlag.PASID_VALID, U.get(bytes, "pasid", UNION), 0, "PASID");
  checkPasid(pasid);
  return {
    type: "unrecoverable",
    event: {
      reason,
      pasid,
      perm: permOf(U.get(bytes, "perm", UNION)),
      addr: field(FaultUnrecovFlag.ADDR_VALID, U.get(bytes, "addr", UNION), 0n, "address"),
      fetchAddr: field(FaultUnrecovFlag.FETCH_ADDR_VALID, U.get(bytes, "fetch_addr", UNION), 0n, "fetch address"),
    },
  };
}

/**
 * The record a page request is reported as, filled as the VT-d driver fills
 * it (drivers/iommu/intel/svm.c: intel_svm_prq_report()): with a PASID,
 * PASID_VALID and NEEDS_PASID; LAST_PAGE for the last request of a group
 * and for one with private data (which needs its own response); PRIV_DATA
 * with the data. An upper-half address is written as its 64-bit value.
 */
export function pageRequestRecord(f: PageRequestFault): IommuFaultRecord {
  return {
    type: "page-request",
    prm: {
      pasid: f.pasid,
      needsPasid: f.pasid !== undefined,
      last: f.last || f.privateData !== undefined,
      grpid: f.grpid,
      perm: { read: f.read, write: f.write, exec: f.exec, priv: f.priv },
      addr: BigInt.asUintN(64, BigInt(f.addr)),
      privateData: f.privateData,
    },
  };
}
