import { describe, expect, it } from "vitest";
import { SparseMemory } from "@vsva/pgtable";
import { pciEnableForSva } from "@vsva/iommu-hw";
import { VtdRegs as Vtd, VtdRig, desc as vtdDesc } from "@vsva/iommu-hw/testing";
import { DsaDevice } from "./device.js";
import { decodeCompletion, encodeDescriptor } from "./descriptor.js";
import { DescFlag, DsaOpcode, DsaReg, DsaStatus, DsaSwErr } from "./regs.js";
import { bringUp } from "./testing/index.js";

// Over the real VT-d unit in scalable mode with native SVA: the PASID entry
// points at a first-level (x86 process) page table, the device asks for
// translations with ATS and page requests reach the unit's page-request queue.

const PASID = 77;
const PRQ = 0x30000;
const SRC = 0x7f00_0000_0000;
const DST = SRC + 0x10_000;
const CR = SRC + 0x20_000;
const CR_FLAGS = DescFlag.CRAV | DescFlag.RCR;

function vtdRig(): { rig: VtdRig; root: number; dev: DsaDevice; mem: SparseMemory } {
  const rig = new VtdRig().bringUp();
  rig.device();
  const root = rig.alloc();
  rig.setPasid(PASID, { pgtt: 1, did: 4, flptr: root });
  rig.setReg64(Vtd.PQA, BigInt(PRQ));
  rig.setReg64(Vtd.PQH, 0n);
  rig.setReg64(Vtd.PQT, 0n);
  const dev = new DsaDevice({ bus: 0, dev: 2, fn: 0, mem: rig.mem });
  pciEnableForSva(dev.ep);
  dev.ep.attach(rig.unit);
  rig.unit.attachEndpoint(dev.ep);
  return { rig, root, dev, mem: rig.mem };
}

function record(rig: VtdRig, pa: number): ReturnType<typeof decodeCompletion> {
  const b = new Uint8Array(32);
  rig.mem.readBytes(pa, b);
  return decodeCompletion(b);
}

describe("over the VT-d unit with native SVA", () => {
  it("memmove through a shared WQ translates by the first-level table of the ENQCMD's PASID", () => {
    const { rig, root, dev } = vtdRig();
    const [src, dst, cr] = [rig.alloc(), rig.alloc(), rig.alloc()];
    rig.flMap(root, SRC, src);
    rig.flMap(root, DST, dst);
    rig.flMap(root, CR, cr);
    rig.mem.writeBytes(src + 0x40, Uint8Array.from({ length: 256 }, (_, i) => i));
    expect(bringUp(dev, [{ mode: "shared", size: 8 }])).toEqual([]);
    expect(dev.enqcmd(0, encodeDescriptor({ opcode: DsaOpcode.MEMMOVE, flags: CR_FLAGS, pasid: PASID, completionAddr: CR, src: SRC + 0x40, dst: DST, size: 256 }))).toBe("accepted");
    expect(record(rig, cr)).toMatchObject({ status: DsaStatus.SUCCESS, bytesCompleted: 256 });
    const got = new Uint8Array(256);
    rig.mem.readBytes(dst, got);
    expect(got).toEqual(Uint8Array.from({ length: 256 }, (_, i) => i));
  });

  it("block-on-fault: the page request lands in the unit's queue; software maps and responds; the fill completes", () => {
    const { rig, root, dev } = vtdRig();
    const cr = rig.alloc();
    rig.flMap(root, CR, cr);
    bringUp(dev, [{ mode: "dedicated", size: 4, pasid: PASID, bof: true }]);
    dev.movdir64b(0, encodeDescriptor({ opcode: DsaOpcode.MEMFILL, flags: CR_FLAGS | DescFlag.BOF, completionAddr: CR, pattern: 0x5a5a_5a5a_5a5a_5a5an, dst: DST, size: 64 }));
    expect(dev.blocked).toBe(true);
    expect(rig.reg64(Vtd.PQT)).toBe(32n);
    const qw1 = rig.r64(PRQ + 8);
    expect(qw1 & ~0xfffn).toBe(BigInt(DST));
    const prgi = Number((qw1 >> 3n) & 0x1ffn);
    const dst = rig.alloc();
    rig.flMap(root, DST, dst);
    rig.setReg64(Vtd.PQH, 32n);
    rig.unit.mmioWrite32(Vtd.PRS, 1);
    rig.submit(vtdDesc.pageResponse(rig.dev, prgi, 0, PASID));
    expect(record(rig, cr)).toMatchObject({ status: DsaStatus.SUCCESS, bytesCompleted: 64 });
    expect(rig.mem.read32(dst + 60)).toBe(0x5a5a_5a5a);
  });

  it("a PASID with no PASID entry is refused: nothing is written and SWERR names the PASID", () => {
    const { rig, root, dev } = vtdRig();
    const dst = rig.alloc();
    rig.flMap(root, DST, dst);
    bringUp(dev, [{ mode: "shared", size: 4, bof: true }]);
    dev.enqcmd(0, encodeDescriptor({ opcode: DsaOpcode.MEMFILL, flags: CR_FLAGS | DescFlag.BOF, pasid: PASID + 1, completionAddr: CR, pattern: 1n, dst: DST, size: 64 }));
    const v = DsaSwErr.alloc();
    for (let i = 0; i < v.length; i++) v[i] = dev.mmioRead32(DsaReg.SWERR + 4 * i);
    expect(DsaSwErr.decode(v)).toMatchObject({ VALID: 1, ERROR: DsaStatus.CRA_XLAT, PASID: PASID + 1 });
    expect(rig.mem.read32(dst)).toBe(0);
    expect(dev.blocked).toBe(false);
  });
});
