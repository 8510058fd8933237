import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { Errno, isKernelError } from "@vsva/kernel";
import { defineLayout } from "@vsva/pgtable";
import { ConfigSpace, findCapability, findExtCapability } from "./config-space.js";
import { buildEndpointConfig, type EndpointConfigOptions } from "./endpoint-config.js";
import { PCI_CAP_ID_EXP, PciExtCapId } from "./regs.js";

const Reg = defineLayout("test reg", 32, {
  RO_FIELD: { msb: 7, lsb: 0, access: "RO" },
  RW_FIELD: { msb: 15, lsb: 8, access: "RW" },
  W1C_BIT: { msb: 16, lsb: 16, access: "RW1C" },
  WO_BIT: { msb: 17, lsb: 17, access: "WO" },
});

const full: EndpointConfigOptions = {
  id: { vendorId: 0x8086, deviceId: 0x0b25 },
  pasid: { maxWidth: 20, exec: true, priv: true },
  ats: { invalidateQueueDepth: 32 },
  pri: { outstandingCapacity: 512 },
};

describe("ConfigSpace access rules", () => {
  it("writes only RW bits, clears RW1C bits written with 1, and reads WO bits back as 0", () => {
    const cs = new ConfigSpace();
    const r = cs.place(0x40, Reg, { init: { RO_FIELD: 0x5a, W1C_BIT: 1 } });
    cs.write(0x40, 4, 0xffff_ffff);
    expect(r.get("RO_FIELD")).toBe(0x5a);
    expect(r.get("RW_FIELD")).toBe(0xff);
    expect(r.get("W1C_BIT")).toBe(0);
    expect(r.get("WO_BIT")).toBe(0);
    expect(cs.read(0x40, 4)).toBe(0x0000_ff5a);
  });

  it("writing 0 to an RW1C bit leaves it set", () => {
    const cs = new ConfigSpace();
    const r = cs.place(0x40, Reg, { init: { W1C_BIT: 1 } });
    cs.write(0x42, 1, 0);
    expect(r.get("W1C_BIT")).toBe(1);
    cs.write(0x42, 1, 1);
    expect(r.get("W1C_BIT")).toBe(0);
  });

  it("byte and word accesses touch only their lanes", () => {
    fc.assert(
      fc.property(fc.constantFrom(1, 2, 4), fc.nat({ max: 3 }), fc.nat({ max: 0xffff_ffff }), (size, lane, value) => {
        const cs = new ConfigSpace();
        const r = cs.place(0x40, Reg, { init: { RW_FIELD: 0x11 } });
        const off = 0x40 + (size === 4 ? 0 : size === 2 ? (lane & 1) * 2 : lane);
        cs.write(off, size, value);
        const shift = (off - 0x40) * 8;
        const lanes = size === 4 ? 0xffff_ffff : (((1 << (size * 8)) - 1) << shift) >>> 0;
        const rwMask = 0xff00;
        const expected = ((0x1100 & ~(rwMask & lanes)) | (((value << shift) >>> 0) & rwMask & lanes)) >>> 8;
        expect(r.get("RW_FIELD")).toBe(expected & 0xff);
        expect(cs.read(off, size)).toBe(size === 4 ? cs.read(0x40, 4) : (cs.read(0x40, 4) >>> shift) & ((1 << (size * 8)) - 1));
      }),
    );
  });

  it("reads all-ones and ignores writes for accesses that cannot complete", () => {
    const cs = new ConfigSpace();
    const r = cs.place(0x40, Reg);
    expect(cs.read(0x43, 2)).toBe(0xffff); // crosses a dword
    expect(cs.read(0x41, 4)).toBe(0xffff_ffff);
    expect(cs.read(0x1000, 1)).toBe(0xff); // past 4 KiB
    expect(cs.read(0x40, 3)).toBe(0xffff_ffff); // no such size
    cs.write(0x41, 4, 0xffff_ffff);
    cs.write(-4, 4, 0xffff_ffff);
    cs.write(0x40, 4, Number.NaN);
    expect(r.get("RW_FIELD")).toBe(0);
  });

  it("reads zero where nothing is placed, and ignores writes there", () => {
    const cs = new ConfigSpace();
    cs.write(0x200, 4, 0xdead_beef);
    expect(cs.read(0x200, 4)).toBe(0);
  });

  it("refuses overlapping or misplaced registers as a model bug", () => {
    const cs = new ConfigSpace();
    cs.place(0x40, Reg);
    expect(() => cs.place(0x40, Reg)).toThrow(/overlaps/);
    expect(() => cs.place(0x42, Reg)).toThrow(/dword/);
    expect(() => cs.place(0x1000, Reg)).toThrow(/dword/);
  });

  it("hardwires fields an instance does not implement", () => {
    const cs = new ConfigSpace();
    const r = cs.place(0x40, Reg, { hardwire: ["RW_FIELD"] });
    cs.write(0x41, 1, 0xff);
    expect(r.get("RW_FIELD")).toBe(0);
  });
});

describe("endpoint configuration header", () => {
  const cfg = buildEndpointConfig(full);
  const cs = cfg.space;

  it("reports vendor and device ID read-only", () => {
    expect(cs.read(0x00, 2)).toBe(0x8086);
    expect(cs.read(0x02, 2)).toBe(0x0b25);
    cs.write(0x00, 4, 0);
    expect(cs.read(0x00, 4)).toBe(0x0b25_8086);
  });

  it("has a type 0 header with a capabilities list", () => {
    expect(cs.read(0x0e, 1) & 0x7f).toBe(0);
    expect(cs.read(0x06, 2) & 0x10).toBe(0x10);
    expect(cs.read(0x34, 1)).toBe(0x40);
  });

  it("lets software set and clear Bus Master Enable but not unimplemented command bits", () => {
    const c = buildEndpointConfig(full);
    c.space.write(0x04, 2, 0xffff);
    expect(c.command.flag("BUS_MASTER")).toBe(true);
    expect(c.space.read(0x04, 2) & 0x1).toBe(0); // no I/O space
    c.space.write(0x04, 2, 0);
    expect(c.command.flag("BUS_MASTER")).toBe(false);
  });

  it("clears status error bits only by writing 1 to them", () => {
    const c = buildEndpointConfig(full);
    c.command.setFlag("RECEIVED_MASTER_ABORT", true);
    c.space.write(0x06, 2, 0x0010); // writing the RO cap-list bit and 0 elsewhere
    expect(c.command.flag("RECEIVED_MASTER_ABORT")).toBe(true);
    c.space.write(0x06, 2, 0x2000);
    expect(c.command.flag("RECEIVED_MASTER_ABORT")).toBe(false);
    expect(c.command.flag("CAP_LIST")).toBe(true);
  });

  it("places the PCI Express capability in the standard list", () => {
    const pos = findCapability(cs, PCI_CAP_ID_EXP);
    expect(pos).toBe(0x40);
    expect((cs.read(pos + 2, 2) & 0xf)).toBe(2); // version 2
    expect((cs.read(pos + 2, 2) >>> 4) & 0xf).toBe(9); // RC integrated endpoint
    expect(findCapability(cs, 0x05)).toBe(0); // no MSI here
  });

  it("chains PASID, ATS and PRI from 0x100 and ends the list", () => {
    expect(findExtCapability(cs, PciExtCapId.PASID)).toBe(0x100);
    expect(findExtCapability(cs, PciExtCapId.ATS)).toBe(0x108);
    expect(findExtCapability(cs, PciExtCapId.PRI)).toBe(0x110);
    expect(cs.read(0x110, 4) >>> 20).toBe(0);
    expect(findExtCapability(cs, 0x0001)).toBe(0);
    expect(cfg.offsets).toEqual({ pcie: 0x40, pasid: 0x100, ats: 0x108, pri: 0x110 });
  });

  it("has an empty extended list (header 0 at 0x100) without PASID, ATS or PRI", () => {
    const bare = buildEndpointConfig({ id: { vendorId: 0x1af4, deviceId: 0x1000 } });
    expect(bare.space.read(0x100, 4)).toBe(0);
    expect(findExtCapability(bare.space, PciExtCapId.PASID)).toBe(0);
    expect(bare.pasid).toBeUndefined();
    expect(bare.ats).toBeUndefined();
    expect(bare.pri).toBeUndefined();
  });

  it("lists only the capabilities configured (ATS without PASID or PRI)", () => {
    const c = buildEndpointConfig({ id: { vendorId: 0x1af4, deviceId: 0x1000 }, ats: {} });
    expect(findExtCapability(c.space, PciExtCapId.ATS)).toBe(0x100);
    expect(findExtCapability(c.space, PciExtCapId.PASID)).toBe(0);
    expect(findExtCapability(c.space, PciExtCapId.PRI)).toBe(0);
  });

  it("refuses bad options with EINVAL", () => {
    const bad = (o: EndpointConfigOptions) => {
      try {
        buildEndpointConfig(o);
        return false;
      } catch (e) {
        return isKernelError(e, Errno.EINVAL);
      }
    };
    expect(bad({ id: { vendorId: 0xffff, deviceId: 0 } })).toBe(true);
    expect(bad({ ...full, pasid: { maxWidth: 21 } })).toBe(true);
    expect(bad({ ...full, pasid: { maxWidth: 0 } })).toBe(true);
    expect(bad({ id: full.id, pri: { outstandingCapacity: 8 } })).toBe(true); // PRI without ATS
    expect(bad({ ...full, pri: { outstandingCapacity: 0 } })).toBe(true);
    expect(bad({ ...full, ats: { invalidateQueueDepth: 33 } })).toBe(true);
  });
});

describe("PASID capability registers", () => {
  it("advertises width and supported attributes read-only", () => {
    const c = buildEndpointConfig(full);
    const cap = c.space.read(0x104, 2);
    expect((cap >>> 8) & 0x1f).toBe(20);
    expect(cap & 0x6).toBe(0x6);
    c.space.write(0x104, 2, 0);
    expect(c.space.read(0x104, 2)).toBe(cap);
  });

  it("enables PASID, execute and privileged mode through the control register", () => {
    const c = buildEndpointConfig(full);
    c.space.write(0x106, 2, 0x7);
    expect(c.pasid?.flag("ENABLE")).toBe(true);
    expect(c.pasid?.flag("EXEC_ENABLE")).toBe(true);
    expect(c.pasid?.flag("PRIV_ENABLE")).toBe(true);
    c.space.write(0x106, 2, 0);
    expect(c.space.read(0x106, 2)).toBe(0);
  });

  it("hardwires the execute and privileged enables of a device without them", () => {
    const c = buildEndpointConfig({ ...full, pasid: { maxWidth: 8 } });
    c.space.write(0x106, 2, 0x7);
    expect(c.space.read(0x106, 2)).toBe(0x1);
    expect((c.space.read(0x104, 2) >>> 8) & 0x1f).toBe(8);
  });
});

describe("ATS capability registers", () => {
  it("encodes an invalidate queue depth of 32 as 0 and supports global invalidation", () => {
    const c = buildEndpointConfig(full);
    expect(c.space.read(0x10c, 2) & 0x1f).toBe(0);
    expect(c.space.read(0x10c, 2) & 0x60).toBe(0x60);
    const d = buildEndpointConfig({ ...full, ats: { invalidateQueueDepth: 4, globalInvalidate: false } });
    expect(d.space.read(0x10c, 2) & 0x7f).toBe(0x24);
  });

  it("takes STU and Enable in the control register, and nothing else", () => {
    const c = buildEndpointConfig(full);
    c.space.write(0x10e, 2, 0xffff);
    expect(c.space.read(0x10e, 2)).toBe(0x801f);
    expect(c.ats?.get("STU")).toBe(0x1f);
    expect(c.ats?.flag("ENABLE")).toBe(true);
  });
});

describe("PRI capability registers", () => {
  it("starts disabled and stopped, with PASID required in responses", () => {
    const c = buildEndpointConfig(full);
    const sta = c.space.read(0x116, 2);
    expect(sta & 0x100).toBe(0x100);
    expect(sta & 0x8000).toBe(0x8000);
    expect(c.space.read(0x118, 4)).toBe(512);
    expect(c.space.read(0x11c, 4)).toBe(0);
  });

  it("does not require a PASID in responses without a PASID capability", () => {
    const c = buildEndpointConfig({ id: full.id, ats: {}, pri: { outstandingCapacity: 8 } });
    expect(c.space.read(c.offsets.pri + 6, 2) & 0x8000).toBe(0);
  });

  it("keeps capacity read-only and allocation writable", () => {
    const c = buildEndpointConfig(full);
    c.space.write(0x118, 4, 7);
    c.space.write(0x11c, 4, 64);
    expect(c.space.read(0x118, 4)).toBe(512);
    expect(c.space.read(0x11c, 4)).toBe(64);
  });

  it("reads Reset as 0 and clears Response Failure / Unexpected PRGI with 1s", () => {
    const c = buildEndpointConfig(full);
    const pri = c.pri;
    if (pri === undefined) throw new Error("no PRI");
    c.space.write(0x114, 2, 0x2);
    expect(c.space.read(0x114, 2)).toBe(0);
    pri.ctl.setFlag("RESPONSE_FAILURE", true);
    pri.ctl.setFlag("UNEXPECTED_PRGI", true);
    c.space.write(0x116, 2, 0x2);
    expect(c.space.read(0x116, 2) & 0x3).toBe(0x1);
    c.space.write(0x116, 2, 0x1);
    expect(c.space.read(0x116, 2) & 0x3).toBe(0);
    c.space.write(0x116, 2, 0xffff);
    expect(c.space.read(0x116, 2) & 0x8100).toBe(0x8100); // Stopped and PASID Required are RO
  });
});

describe("PCI Express capability registers", () => {
  it("reads Initiate FLR as 0 and keeps device status bits RW1C", () => {
    const c = buildEndpointConfig(full);
    c.space.write(0x48, 2, 0x0001);
    expect(c.space.read(0x48, 2) & 0x8001).toBe(0x0001);
    c.devCtl.setFlag("UNSUPPORTED_REQ", true);
    c.space.write(0x4a, 2, 0x0000);
    expect(c.space.read(0x4a, 2) & 0x8).toBe(0x8);
    c.space.write(0x4a, 2, 0x0008);
    expect(c.space.read(0x4a, 2) & 0x8).toBe(0);
  });

  it("advertises FLR only when configured", () => {
    expect(buildEndpointConfig(full).space.read(0x44, 4) & (1 << 28)).not.toBe(0);
    expect(buildEndpointConfig({ ...full, flr: false }).space.read(0x44, 4) & (1 << 28)).toBe(0);
  });
});
