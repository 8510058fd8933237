import { Errno, KernelError } from "@vsva/kernel";
import { DSA_COMPLETION_SIZE, DSA_DESC_SIZE, DsaCompletion, DsaDesc } from "./regs.js";

/** The fields of a work descriptor as software fills them (`uapi/linux/idxd.h`: struct dsa_hw_desc). */
export interface DescriptorFields {
  readonly opcode: number;
  /** Flag bits (see `DescFlag`). */
  readonly flags?: number;
  /** For a shared WQ the CPU's ENQCMD fills this from IA32_PASID; a dedicated WQ ignores it. */
  readonly pasid?: number;
  readonly priv?: boolean;
  readonly completionAddr?: number;
  readonly src?: number;
  readonly dst?: number;
  readonly size?: number;
  /** MEMFILL: the 8-byte pattern (stored where SRC is). */
  readonly pattern?: bigint;
}

const split = (a: number): { lo: number; hi: number } => ({ lo: a % 2 ** 32, hi: Math.floor(a / 2 ** 32) });

function checkAddr(name: string, a: number): number {
  if (!Number.isSafeInteger(a) || a < 0) throw new KernelError(Errno.EINVAL, `descriptor ${name} 0x${a.toString(16)} is not an address`);
  return a;
}

/** The 64 bytes of a descriptor, as a portal write carries them. EINVAL for a field that does not fit. */
export function encodeDescriptor(f: DescriptorFields): Uint8Array {
  const d = DsaDesc.alloc();
  const fit = (name: string, v: number, bits: number): number => {
    if (!Number.isInteger(v) || v < 0 || v >= 2 ** bits) throw new KernelError(Errno.EINVAL, `descriptor ${name} ${v} does not fit ${bits} bits`);
    return v;
  };
  DsaDesc.set(d, "OPCODE", fit("opcode", f.opcode, 8));
  DsaDesc.set(d, "FLAGS", fit("flags", f.flags ?? 0, 24));
  DsaDesc.set(d, "PASID", fit("pasid", f.pasid ?? 0, 20));
  DsaDesc.set(d, "PRIV", f.priv === true ? 1 : 0);
  const c = split(checkAddr("completion address", f.completionAddr ?? 0));
  DsaDesc.set(d, "COMPL_LO", c.lo);
  DsaDesc.set(d, "COMPL_HI", c.hi);
  if (f.pattern !== undefined) {
    if (f.pattern < 0n || f.pattern >= 1n << 64n) throw new KernelError(Errno.EINVAL, "descriptor fill pattern does not fit 64 bits");
    DsaDesc.set(d, "SRC_LO", Number(f.pattern & 0xffff_ffffn));
    DsaDesc.set(d, "SRC_HI", Number(f.pattern >> 32n));
  } else {
    const s = split(checkAddr("source", f.src ?? 0));
    DsaDesc.set(d, "SRC_LO", s.lo);
    DsaDesc.set(d, "SRC_HI", s.hi);
  }
  const t = split(checkAddr("destination", f.dst ?? 0));
  DsaDesc.set(d, "DST_LO", t.lo);
  DsaDesc.set(d, "DST_HI", t.hi);
  DsaDesc.set(d, "XFER_SIZE", fit("transfer size", f.size ?? 0, 32));
  return new Uint8Array(d.buffer, d.byteOffset, DSA_DESC_SIZE).slice();
}

/** A completion record as the CPU reads it (`uapi/linux/idxd.h`: struct dsa_completion_record). */
export interface CompletionRecord {
  /** Status code (bits 6:0); 0 = not written yet. */
  readonly status: number;
  /** The faulting access was a write. */
  readonly faultWrite: boolean;
  readonly result: number;
  readonly bytesCompleted: number;
  readonly faultAddr: number;
  readonly invalidFlags: number;
}

/** Decodes the 32 bytes of a completion record. */
export function decodeCompletion(bytes: Uint8Array): CompletionRecord {
  if (bytes.length < DSA_COMPLETION_SIZE) throw new KernelError(Errno.EINVAL, `a completion record is ${DSA_COMPLETION_SIZE} bytes, got ${bytes.length}`);
  const v = DsaCompletion.alloc();
  new Uint8Array(v.buffer, v.byteOffset, DSA_COMPLETION_SIZE).set(bytes.subarray(0, DSA_COMPLETION_SIZE));
  return {
    status: DsaCompletion.get(v, "STATUS"),
    faultWrite: DsaCompletion.get(v, "FAULT_WRITE") === 1,
    result: DsaCompletion.get(v, "RESULT"),
    bytesCompleted: DsaCompletion.get(v, "BYTES_COMPLETED"),
    faultAddr: DsaCompletion.get(v, "FAULT_ADDR_HI") * 2 ** 32 + DsaCompletion.get(v, "FAULT_ADDR_LO"),
    invalidFlags: DsaCompletion.get(v, "INVALID_FLAGS"),
  };
}
