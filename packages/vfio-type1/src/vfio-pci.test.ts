import { describe, expect, it } from "vitest";
import { type PciConfigAccess, PciExtCap, VfioPciRegion, vfioPciOps, walkExtCaps } from "./vfio-pci.js";

/** A function's config space with PASID at 0x100, PRI at 0x110 and ATS at 0x120 (as our endpoint lays them out). */
function config(order: readonly (keyof typeof PciExtCap)[] = ["PASID", "PRI", "ATS"]): PciConfigAccess & { bytes: Uint8Array } {
  const bytes = new Uint8Array(4096);
  const dv = new DataView(bytes.buffer);
  dv.setUint16(0, 0x8086, true);
  dv.setUint16(4, 0x0006, true);
  order.forEach((name, i) => {
    const off = 0x100 + i * 0x10;
    const next = i + 1 < order.length ? off + 0x10 : 0;
    dv.setUint32(off, (PciExtCap[name] | (1 << 16) | (next << 20)) >>> 0, true);
    dv.setUint32(off + 4, 0xdead_0000 + PciExtCap[name], true);
  });
  return {
    bytes,
    size: 4096,
    read: (o, s) => (s === 4 ? dv.getUint32(o, true) : s === 2 ? dv.getUint16(o, true) : dv.getUint8(o)),
    write: (o, s, v) => (s === 4 ? dv.setUint32(o, v, true) : s === 2 ? dv.setUint16(o, v, true) : dv.setUint8(o, v)),
  };
}

const u32 = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset).getUint32(0, true);

describe("vfio-pci config region (vfio_pci_config.c with the series' PASID exposure)", () => {
  it("shows PASID and ATS and skips PRI in the extended capability chain", () => {
    const cfg = config();
    const ops = vfioPciOps(cfg);
    const view: PciConfigAccess = { size: 4096, read: (o, s) => { const b = ops.read(VfioPciRegion.CONFIG, o, s); return s === 4 ? u32(b) : s === 2 ? (b[0] ?? 0) | ((b[1] ?? 0) << 8) : (b[0] ?? 0); }, write: () => undefined };
    expect(walkExtCaps(view).map((c) => c.id)).toEqual([PciExtCap.PASID, PciExtCap.ATS]);
    expect(walkExtCaps(cfg).map((c) => c.id)).toEqual([PciExtCap.PASID, PciExtCap.PRI, PciExtCap.ATS]);
    expect(u32(ops.read(VfioPciRegion.CONFIG, 0x114, 4))).toBe(0);
    expect(u32(ops.read(VfioPciRegion.CONFIG, 0x104, 4))).toBe(0xdead_0000 + PciExtCap.PASID);
  });

  it("links past a hidden first capability with a null header at 0x100", () => {
    const ops = vfioPciOps(config(["PRI", "PASID"]));
    const h = u32(ops.read(VfioPciRegion.CONFIG, 0x100, 4));
    expect([h & 0xffff, h >>> 20]).toEqual([0, 0x110]);
  });

  it("lets the user write the Command register and nothing else", () => {
    const cfg = config();
    const ops = vfioPciOps(cfg);
    ops.write(VfioPciRegion.CONFIG, 4, new Uint8Array([0x04, 0x00]));
    expect(cfg.read(4, 2)).toBe(0x0004);
    ops.write(VfioPciRegion.CONFIG, 0x104, new Uint8Array([1, 2, 3, 4]));
    expect(cfg.read(0x104, 4)).toBe(0xdead_0000 + PciExtCap.PASID);
  });

  it("survives a looping capability list", () => {
    const cfg = config(["PASID"]);
    cfg.write(0x100, 4, (PciExtCap.PASID | (1 << 16) | (0x100 << 20)) >>> 0);
    expect(walkExtCaps(cfg)).toHaveLength(1);
  });
});
