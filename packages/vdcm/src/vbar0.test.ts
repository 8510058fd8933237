import { Errno } from "@vsva/kernel";
import { errnoOf } from "@vsva/kernel/testing";
import { DsaCmd, DsaCommand, DsaGenCap, DsaIntCause, DsaReg, DsaWqCap, DsaWqCfg } from "@vsva/dsa";
import { describe, expect, it } from "vitest";
import { VBAR0_SIZE, VBAR0_WQCFG, VirtualBar0 } from "./vbar0.js";

const le32 = (v: number) => Uint8Array.of(v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff);
const rd32 = (b: VirtualBar0, off: number) => {
  const x = b.read(off, 4);
  return ((x[0] ?? 0) | ((x[1] ?? 0) << 8) | ((x[2] ?? 0) << 16) | ((x[3] ?? 0) << 24)) >>> 0;
};

describe("the virtual BAR0", () => {
  it("advertises one WQ of the host WQ's size and mode, and the guest cannot write the capabilities", () => {
    const b = new VirtualBar0({ mode: "dedicated", size: 8, maxXferShift: 20 });
    const wqcap = Uint32Array.of(rd32(b, DsaReg.WQCAP), rd32(b, DsaReg.WQCAP + 4));
    expect([DsaWqCap.get(wqcap, "TOTAL_WQ_SIZE"), DsaWqCap.get(wqcap, "NUM_WQS"), DsaWqCap.get(wqcap, "DEDICATED_MODE"), DsaWqCap.get(wqcap, "SHARED_MODE")]).toEqual([8, 1, 1, 0]);
    const gencap = Uint32Array.of(rd32(b, DsaReg.GENCAP), 0);
    expect([DsaGenCap.get(gencap, "MAX_XFER_SHIFT"), DsaGenCap.get(gencap, "CONFIG_EN")]).toEqual([20, 0]);
    b.write(DsaReg.WQCAP, le32(0xffff_ffff));
    b.write(VBAR0_WQCFG, le32(0xffff));
    expect(rd32(b, DsaReg.WQCAP)).toBe(wqcap[0]);
    expect(DsaWqCfg.get(b.wqcfg, "SIZE")).toBe(8);
  });

  it("takes only PASID, PASID_EN and PRIV of WQCFG dword 2, merging partial writes, and none while the WQ is enabled", () => {
    const b = new VirtualBar0({ mode: "dedicated", size: 8, maxXferShift: 21 });
    const mode = DsaWqCfg.get(b.wqcfg, "MODE");
    b.write(VBAR0_WQCFG + 8, le32(0xffff_ffff));
    expect([DsaWqCfg.get(b.wqcfg, "PASID"), DsaWqCfg.get(b.wqcfg, "PASID_EN"), DsaWqCfg.get(b.wqcfg, "PRIV"), DsaWqCfg.get(b.wqcfg, "MODE")]).toEqual([0xfffff, 1, 1, mode]);
    b.write(VBAR0_WQCFG + 9, Uint8Array.of(0x12));
    expect(DsaWqCfg.get(b.wqcfg, "PASID") & 0xff).toBe(0x12);
    b.setWqState(1);
    b.write(VBAR0_WQCFG + 8, le32(0));
    expect(DsaWqCfg.get(b.wqcfg, "PASID_EN")).toBe(1);
  });

  it("hands back a command only for a whole 32-bit CMD write, and INTCAUSE.CMD is write-1-to-clear", () => {
    const b = new VirtualBar0({ mode: "shared", size: 8, maxXferShift: 21 });
    const cmd = DsaCmd.encode({ COMMAND: DsaCommand.ENABLE_DEVICE, INT_REQ: 1 })[0] ?? 0;
    expect(b.write(DsaReg.CMD + 2, Uint8Array.of(0x10, 0x80))).toBeNull();
    expect(b.write(DsaReg.CMD, le32(cmd))).toBe(cmd);
    b.complete(cmd, 0);
    expect(DsaIntCause.get(Uint32Array.of(rd32(b, DsaReg.INTCAUSE)), "CMD")).toBe(1);
    b.write(DsaReg.INTCAUSE, le32(0));
    expect(DsaIntCause.get(Uint32Array.of(rd32(b, DsaReg.INTCAUSE)), "CMD")).toBe(1);
    b.write(DsaReg.INTCAUSE, le32(2));
    expect(DsaIntCause.get(Uint32Array.of(rd32(b, DsaReg.INTCAUSE)), "CMD")).toBe(0);
  });

  it("refuses accesses that are not 1, 2, 4 or 8 naturally aligned bytes inside the BAR (EINVAL)", () => {
    const b = new VirtualBar0({ mode: "dedicated", size: 8, maxXferShift: 21 });
    for (const [off, len] of [[2, 4], [0, 3], [0, 16], [VBAR0_SIZE - 4, 8], [-4, 4], [VBAR0_SIZE, 1]] as const) {
      expect(errnoOf(() => b.read(off, len))).toBe(Errno.EINVAL);
      expect(errnoOf(() => b.write(off, new Uint8Array(len)))).toBe(Errno.EINVAL);
    }
    expect(b.read(DsaReg.GENCAP, 8)).toHaveLength(8);
  });
});
