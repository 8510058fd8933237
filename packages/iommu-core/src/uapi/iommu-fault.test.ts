import { Errno, asHostPasid, isKernelError } from "@vsva/kernel";
import { errnoOf } from "@vsva/kernel/testing";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  FaultPageRequestLayout,
  FaultUnrecoverableLayout,
  IommuFaultLayout,
  IommuFaultReason,
  type IommuFaultRecord,
  decodeIommuFault,
  encodeIommuFault,
  pageRequestRecord,
} from "./iommu-fault.js";

/** Little-endian bytes from a hex string written as the struct lies in memory (spaces ignored). */
const hex = (s: string): Uint8Array => Uint8Array.from((s.replace(/\s+/g, "").match(/../g) ?? []).map((b) => parseInt(b, 16)));
const zeros = (n: number): string => "00".repeat(n);

describe("struct iommu_fault (v5.10: 64 bytes, union at 8)", () => {
  it("has the v5.10 sizes: iommu_fault 64, iommu_fault_unrecoverable 32, iommu_fault_page_request 40", () => {
    expect([IommuFaultLayout.size, FaultUnrecoverableLayout.size, FaultPageRequestLayout.size]).toEqual([64, 32, 40]);
    expect(IommuFaultLayout.offsetOf("union")).toBe(8);
    expect(FaultPageRequestLayout.offsetOf("addr")).toBe(16);
    expect(FaultUnrecoverableLayout.offsetOf("fetch_addr")).toBe(24);
  });

  // What intel_svm_prq_report() fills for a write request on PASID 0x101, group 7, page 0x7000_1000,
  // last in group, with private data: type PAGE_REQ, flags PASID_VALID | LAST_PAGE | PRIV_DATA | NEEDS_PASID.
  const prq = hex(
    "02000000 00000000" + // type 2, padding
      "0f000000 01010000 07000000 02000000" + // flags 0xf, pasid 0x101, grpid 7, perm WRITE
      "0010007000000000" + // addr 0x7000_1000
      "8877665544332211 00ffeeddccbbaa99" + // private_data[0], [1]
      zeros(16), // rest of the 56-byte union
  );
  const prqRecord: IommuFaultRecord = {
    type: "page-request",
    prm: {
      pasid: 0x101,
      needsPasid: true,
      last: true,
      grpid: 7,
      perm: { read: false, write: true, exec: false, priv: false },
      addr: 0x7000_1000n,
      privateData: [0x1122_3344_5566_7788n, 0x99aa_bbcc_ddee_ff00n],
    },
  };

  it("decodes a Linux-shaped page-request record and encodes the same bytes", () => {
    expect(prq.length).toBe(64);
    expect(decodeIommuFault(prq)).toEqual(prqRecord);
    expect(encodeIommuFault(prqRecord)).toEqual(prq);
  });

  it("fills the record from a reported page request as intel_svm_prq_report() does (LAST_PAGE for private data too)", () => {
    const r = pageRequestRecord({
      pasid: asHostPasid(0x101), addr: 0x7000_1000, read: false, write: true, exec: false, priv: false, grpid: 7, last: false,
      privateData: [0x1122_3344_5566_7788n, 0x99aa_bbcc_ddee_ff00n],
    });
    expect(encodeIommuFault(r)).toEqual(prq);
    // An upper-half address is its 64-bit value; no PASID: neither PASID_VALID nor NEEDS_PASID.
    const u = pageRequestRecord({ pasid: undefined, addr: -0x1000, read: true, write: false, exec: false, priv: false, grpid: 1, last: true });
    expect(encodeIommuFault(u)).toEqual(hex("02000000 00000000 02000000 00000000 01000000 01000000 00f0ffffffffffff" + zeros(32)));
  });

  it("decodes a Linux-shaped unrecoverable record: PTE_FETCH on PASID 9 at 0x1234_5000, read", () => {
    const bytes = hex("01000000 00000000" + "05000000 03000000 09000000 01000000" + "0050341200000000" + "0000000000000000" + zeros(24));
    const rec: IommuFaultRecord = {
      type: "unrecoverable",
      event: { reason: IommuFaultReason.PTE_FETCH, pasid: 9, perm: { read: true, write: false, exec: false, priv: false }, addr: 0x1234_5000n, fetchAddr: undefined },
    };
    expect(decodeIommuFault(bytes)).toEqual(rec);
    expect(encodeIommuFault(rec)).toEqual(bytes);
  });

  it("refuses with EINVAL every byte pattern no kernel writes", () => {
    const flip = (at: number, v: number): Uint8Array => {
      const b = prq.slice();
      b[at] = v;
      return b;
    };
    for (const b of [
      prq.subarray(0, 63), // short
      flip(0, 3), // unknown type
      flip(4, 1), // padding
      flip(8, 0x1f), // unknown flag
      flip(20, 0x10), // unknown permission bit
      flip(48, 1), // byte past the 40-byte record
      hex("02000000 00000000 00000000 05000000" + zeros(48)), // PASID without PASID_VALID
      hex("02000000 00000000 08000000 00000000" + zeros(48)), // NEEDS_PASID without PASID_VALID
      hex("02000000 00000000 00000000 00000000 00000000 00000000 0000000000000000 01" + zeros(23)), // private data without PRIV_DATA
      hex("02000000 00000000 01000000 00001000" + zeros(48)), // PASID 1 << 20
      hex("01000000 00000000 09000000" + zeros(52)), // reason 9
      hex("01000000 00000000 00000000 00000000 00000000 00000000 0010000000000000" + zeros(32)), // address without ADDR_VALID
    ]) {
      expect(errnoOf(() => decodeIommuFault(b))).toBe(Errno.EINVAL);
    }
  });

  it("refuses to encode what the struct cannot hold (EINVAL)", () => {
    const p = prqRecord.prm;
    expect(errnoOf(() => encodeIommuFault({ type: "page-request", prm: { ...p, pasid: 1 << 20 } }))).toBe(Errno.EINVAL);
    expect(errnoOf(() => encodeIommuFault({ type: "page-request", prm: { ...p, addr: 1n << 64n } }))).toBe(Errno.EINVAL);
    expect(errnoOf(() => encodeIommuFault({ type: "unrecoverable", event: { reason: 42, pasid: undefined, perm: p.perm, addr: undefined, fetchAddr: undefined } }))).toBe(Errno.EINVAL);
  });

  it("never throws anything but a KernelError on random bytes, and round-trips what it accepts", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 60, maxLength: 70 }), fc.constantFrom(1, 2), (bytes, type) => {
        if (bytes.length >= 4) bytes[0] = type;
        try {
          const r = decodeIommuFault(bytes);
          expect(decodeIommuFault(encodeIommuFault(r))).toEqual(r);
        } catch (e) {
          expect(isKernelError(e)).toBe(true);
        }
      }),
      { numRuns: 2000 },
    );
  });
});
