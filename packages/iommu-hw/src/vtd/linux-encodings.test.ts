import { describe, expect, it } from "vitest";
import type { TranslateResult } from "../iommu-port.js";
import { FakeEndpoint } from "../pci/testing/fake-endpoint.js";
import { R, STATUS, VtdRig, desc } from "./testing/rig.js";

/**
 * Descriptors and entries as Linux v5.10 writes them, composed by hand from
 * the macros in include/linux/intel-iommu.h (QI_DEV_IOTLB_*, QI_DEV_EIOTLB_*,
 * QI_IWD_*, QI_EIOTLB_*, QI_CC_*, QI_PGRP_*) and the pasid_set_*() helpers of
 * drivers/iommu/intel/pasid.c, written out here as literal qwords so that a
 * change in our layouts cannot move both sides at once.
 */

const iqe = (rig: VtdRig): boolean => (rig.unit.mmioRead32(R.FSTS) & 0x10) !== 0;
const iqei = (rig: VtdRig): number => Number(rig.reg64(R.IQERCD) & 0xfn);
const pa = (r: TranslateResult): number | string => (r.ok ? r.pa : `fault 0x${r.reason.toString(16)}`);

// rig.dev is 00:02.0 (SID 0x0010). The PF of a VF at that SID, as pci_dev_id(pci_physfn()) would give it: 01:01.0 = 0x0108.
const SID = 0x0010;
const PFSID = 0x0108;

function rigWith(dit: boolean): { rig: VtdRig; ep: FakeEndpoint } {
  const rig = new VtdRig({ deviceTlbThrottling: dit }).bringUp();
  const ep = new FakeEndpoint(rig.dev);
  rig.unit.attachEndpoint(ep);
  return { rig, ep };
}

describe("device-TLB invalidations with PFSID (ECAP.DIT)", () => {
  // qi_flush_dev_iotlb(iommu, sid=0x10, pfsid=0x108, qdep=0, addr=0, mask=52):
  // qw0 = SID<<32 | QDEP<<16 | type 3 | PFSID[3:0]<<12 | PFSID[15:4]<<52,
  // qw1 = (addr | (1 << 63) - 1) & page mask | SIZE: the whole address space.
  const devTlbAll = [0x0100_0010_0000_8003n, 0x7fff_ffff_ffff_f001n, 0n, 0n];
  // qi_flush_dev_iotlb_pasid(iommu, sid=0x10, pfsid=0x108, pasid=9, qdep=0, addr=0x3000, size_order=0):
  // qw0 = PASID<<32 | SID<<16 | QDEP<<4 | type 8 | PFSID, qw1 = one page at 0x3000.
  const pasidDevTlb = [0x0100_0009_0010_8008n, 0x3000n, 0n, 0n];

  it("the literals carry PFSID 0x0108 split as Linux splits it (bits 15:12 and 63:52)", () => {
    for (const [qw0] of [devTlbAll, pasidDevTlb]) {
      const q = qw0 ?? 0n;
      expect(Number((((q >> 52n) & 0xfffn) << 4n) | ((q >> 12n) & 0xfn))).toBe(PFSID);
    }
  });

  it("reports DIT in ECAP bit 41 only when configured", () => {
    expect((rigWith(true).rig.reg64(R.ECAP) >> 41n) & 1n).toBe(1n);
    expect((rigWith(false).rig.reg64(R.ECAP) >> 41n) & 1n).toBe(0n);
  });

  it("with DIT=1 accepts Linux's PFSID-carrying descriptors and invalidates the device TLB as asked", () => {
    const { rig, ep } = rigWith(true);
    rig.submit(devTlbAll, pasidDevTlb, desc.wait({ sw: true, data: 1, addr: STATUS }));
    expect(iqe(rig)).toBe(false);
    expect(rig.mem.read32(STATUS)).toBe(1);
    expect(ep.invalidations).toEqual([
      { addr: 0, size: 2 ** 64 },
      { pasid: 9, global: false, addr: 0x3000, size: 4096 },
    ]);
  });

  it("with DIT=0 the PFSID bits are reserved: a non-zero PFSID stops the queue with IQEI=4, PFSID 0 is accepted", () => {
    for (const d of [devTlbAll, pasidDevTlb]) {
      const { rig, ep } = rigWith(false);
      rig.submit(d);
      expect(iqei(rig)).toBe(4);
      expect(ep.invalidations).toEqual([]);
    }
    // What v5.10 writes without DIT: info->pfsid is 0 (iommu_enable_dev_iotlb()).
    const { rig, ep } = rigWith(false);
    rig.submit([0x0000_0010_0000_0003n, 0x7fff_ffff_ffff_f001n], [0x0000_0009_0010_0008n, 0x3000n]);
    expect(iqe(rig)).toBe(false);
    expect(ep.invalidations).toHaveLength(2);
  });

  it("refuses DIT on a unit without device-TLB support (EINVAL)", () => {
    expect(() => new VtdRig({ deviceTlbThrottling: true, deviceTlb: false })).toThrow(/EINVAL.*DIT/);
  });
});

describe("the page-request drain sequence of intel_svm_drain_prq()", () => {
  it("accepts a fence-only wait, PASID-IOTLB, PASID device-TLB and a status-write wait with PD", () => {
    const { rig, ep } = rigWith(false);
    // desc[0]: QI_IWD_STATUS_DATA(QI_DONE=2) | QI_IWD_FENCE | QI_IWD_TYPE, qw1 = 0 (no status write).
    const fence = [0x0000_0002_0000_0045n, 0n];
    // desc[1]: QI_EIOTLB_PASID(9) | QI_EIOTLB_DID(3) | QI_EIOTLB_GRAN(QI_GRAN_NONG_PASID=2) | QI_EIOTLB_TYPE.
    const piotlb = [0x0000_0009_0003_0026n, 0n];
    // desc[2]: QI_DEV_EIOTLB_PASID(9) | QI_DEV_EIOTLB_SID(0x10) | QDEP 0 | QI_DEIOTLB_TYPE | PFSID 0; qw1 = 0.
    const devtlb = [0x0000_0009_0010_0008n, 0n];
    // qi_submit_sync(..., QI_OPT_WAIT_DRAIN) appends STATUS_DATA(QI_DONE) | STATUS_WRITE | TYPE | PRQ_DRAIN.
    const wait = [0x0000_0002_0000_00a5n, BigInt(STATUS)];
    rig.submit(fence, piotlb, devtlb, wait);
    expect(iqe(rig)).toBe(false);
    expect(rig.mem.read32(STATUS)).toBe(2);
    expect(ep.invalidations).toEqual([{ pasid: 9, global: false, addr: 0, size: 4096 }]);
  });
});

describe("device-selective context-cache invalidation with the old DID", () => {
  it("QI_CC_SID | QI_CC_DID(old DID) | QI_CC_GRAN(DMA_CCMD_DEVICE_INVL) drops the device's cached context entry", () => {
    const rig = new VtdRig().bringUp();
    rig.device();
    const root = rig.alloc();
    rig.setPasid(9, { pgtt: 1, did: 3, flptr: root });
    rig.flMap(root, 0x1000, 0xa000);
    const at = { sid: rig.dev, pasid: 9, addr: 0x1000, write: false };
    expect(pa(rig.unit.translate(at))).toBe(0xa000);
    rig.device({ present: false });
    rig.submit([0x0000_0009_0003_0026n, 0n]); // drop the cached translation, not the context
    expect(pa(rig.unit.translate(at))).toBe(0xa000);
    // qw0 = SID 0x0010 << 32 | DID 3 << 16 | G=3 << 4 | type 1.
    rig.submit([0x0000_0010_0003_0031n, 0n]);
    expect(iqe(rig)).toBe(false);
    expect(pa(rig.unit.translate(at))).not.toBe(0xa000);
  });
});

describe("page group response as intel_svm_page_response() writes it", () => {
  it("delivers Linux's raw IOMMU_PAGE_RESP_FAILURE (2) to the device as Response Failure, with PDP and private data in qw2/qw3", () => {
    const { rig, ep } = rigWith(false);
    // qw0 = QI_PGRP_PASID(9) | QI_PGRP_DID(0x10) | PASID_P | PDP | RESP_CODE(2) | type 9;
    // qw1 = QI_PGRP_IDX(5) | QI_PGRP_LPIG(1); qw2/qw3 = the request's private data.
    rig.submit([0x0000_0009_0010_2039n, 0x2cn, 0x1122_3344_5566_7788n, 0x99aa_bbcc_ddee_ff00n]);
    expect(iqe(rig)).toBe(false);
    expect(ep.responses).toEqual([{ sid: SID, pasid: 9, groupIndex: 5, code: "failure" }]);
  });

  it("still refuses private data in a 128-bit queue (PDP needs the 256-bit format)", () => {
    const rig = new VtdRig();
    rig.setRootTable();
    rig.enableQi(false, 0);
    rig.submit([0x0000_0009_0010_2039n, 0x2cn]);
    expect(iqei(rig)).toBe(5);
  });
});

describe("PASID entries as v5.10's pasid.c writes them", () => {
  /** Writes the 8 qwords at PASID `pasid`'s entry. */
  function entry(rig: VtdRig, pasid: number, qws: readonly bigint[]): void {
    const at = rig.pasidTable(pasid) + 64 * (pasid & 63);
    for (let i = 0; i < 8; i++) rig.w64(at + 8 * i, qws[i] ?? 0n);
  }

  it("second level only (intel_pasid_setup_second_level): SRE set, FPD clear; a supervisor request is translated", () => {
    const rig = new VtdRig().bringUp();
    rig.device();
    const root = rig.alloc();
    rig.slMap(root, 0x40_0000, 0xa000);
    // val[0] = SLPTPTR | AW 2 << 2 | PGTT 2 << 6 | P; val[1] = DID 3; val[2] = SRE (pasid_set_sre()).
    entry(rig, 7, [BigInt(root) | 0x89n, 3n, 1n]);
    expect(pa(rig.unit.translate({ sid: rig.dev, pasid: 7, addr: 0x40_0000, write: false, priv: true }))).toBe(0xa000);
  });

  it("supervisor first level without WPE (v5.10 sets SRE only): accepted and translated", () => {
    const rig = new VtdRig().bringUp();
    rig.device();
    const root = rig.alloc();
    rig.flMap(root, 0x1000, 0xb000, { leaf: 0x3n }); // P | RW, supervisor page
    // val[0] = AW 2 << 2 | PGTT 1 << 6 | P; val[1] = DID 1; val[2] = FLPTR | SRE.
    entry(rig, 8, [0x49n, 1n, BigInt(root) | 1n]);
    expect(pa(rig.unit.translate({ sid: rig.dev, pasid: 8, addr: 0x1000, write: true, priv: true }))).toBe(0xb000);
  });
});
