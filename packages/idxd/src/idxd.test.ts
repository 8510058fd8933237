import { describe, expect, it } from "vitest";
import { Errno, KernelError } from "@vsva/kernel";
import { errnoOf } from "@vsva/kernel/testing";
import { DsaDeviceState, DsaGenSts, DsaGrpCfg, DsaReg, DsaWqCfg, WqMode } from "@vsva/dsa";
import { pciEnableForSva } from "@vsva/iommu-hw";
import { DsaDevice } from "@vsva/dsa";
import { Idxd, type IdxdConfig, plugIdxd } from "./index.js";
import { svaMockBoard } from "./testing/index.js";

const CONFIG: IdxdConfig = {
  wqs: [
    { mode: "dedicated", size: 16, type: "user", priority: 3, bof: true },
    { mode: "shared", size: 24, type: "user", threshold: 20 },
    { mode: "dedicated", size: 8, type: "kernel", maxXferShift: 16 },
  ],
};

function wqcfg(hw: { mmioRead32(o: number): number; wqcfgOffset(w: number): number }, w: number): Record<string, number> {
  const v = DsaWqCfg.alloc();
  for (let i = 0; i < v.length; i++) v[i] = hw.mmioRead32(hw.wqcfgOffset(w) + 4 * i);
  return DsaWqCfg.decode(v);
}

describe("probe", () => {
  it("writes the configuration through BAR0 and enables the device and every configured WQ", () => {
    const board = svaMockBoard();
    const idxd = plugIdxd(board, { dev: 4, config: CONFIG });
    expect(DsaGenSts.get(Uint32Array.of(idxd.hw.mmioRead32(DsaReg.GENSTS)), "STATE")).toBe(DsaDeviceState.ENABLED);
    expect(wqcfg(idxd.hw, 0)).toMatchObject({ SIZE: 16, MODE: WqMode.DEDICATED, PRIORITY: 3, BOF: 1, PASID_EN: 0, PRIV: 0, STATE: 1, MAX_XFER_SHIFT: 21 });
    expect(wqcfg(idxd.hw, 1)).toMatchObject({ SIZE: 24, MODE: WqMode.SHARED, THRESHOLD: 20, PASID_EN: 1, STATE: 1 });
    // A kernel WQ submits as supervisor.
    expect(wqcfg(idxd.hw, 2)).toMatchObject({ SIZE: 8, PRIV: 1, MAX_XFER_SHIFT: 16, STATE: 1 });
    expect(wqcfg(idxd.hw, 3)).toMatchObject({ SIZE: 0, STATE: 0 });
    const g = DsaGrpCfg.alloc();
    for (let i = 0; i < g.length; i++) g[i] = idxd.hw.mmioRead32(idxd.hw.grpcfgOffset(0) + 4 * i);
    expect(DsaGrpCfg.decode(g)).toMatchObject({ WQS: 0b111, ENGINES: 1, TC_A: 0, TC_B: 1 });
    expect(idxd.caps).toMatchObject({ numWqs: 4, totalWqSize: 64, numEngines: 1, numGroups: 1, blockOnFault: true });
    expect(idxd.iommuDev.hasFeature("sva")).toBe(true);
    expect(idxd.wqs.map((w) => [w.id, w.mode, w.size, w.type])).toEqual([
      [0, "dedicated", 16, "user"],
      [1, "shared", 24, "user"],
      [2, "dedicated", 8, "kernel"],
    ]);
  });

  it("resets a device a previous owner left enabled before configuring it", () => {
    const board = svaMockBoard();
    const first = plugIdxd(board, { dev: 4, config: { wqs: [{ mode: "shared", size: 64, type: "user" }] } });
    // Probe again over the same function, as after a driver reload without remove.
    const again = Idxd.probe({ kernel: board.kernel, core: board.core, iommuDev: first.iommuDev, hw: first.hw, config: { wqs: [{ mode: "dedicated", size: 4, type: "mdev" }] } });
    expect(wqcfg(again.hw, 0)).toMatchObject({ SIZE: 4, MODE: WqMode.DEDICATED, STATE: 1 });
  });

  it.each([
    ["no WQ", { wqs: [] }, Errno.EINVAL],
    ["more WQs than the device has", { wqs: Array.from({ length: 5 }, () => ({ mode: "shared", size: 1, type: "user" })) }, Errno.EINVAL],
    ["sizes above the device's total", { wqs: [{ mode: "shared", size: 40, type: "user" }, { mode: "dedicated", size: 25, type: "user" }] }, Errno.EINVAL],
    ["a zero-size WQ", { wqs: [{ mode: "shared", size: 0, type: "user" }] }, Errno.EINVAL],
    ["priority 16", { wqs: [{ mode: "shared", size: 4, type: "user", priority: 16 }] }, Errno.EINVAL],
    ["a threshold on a dedicated WQ", { wqs: [{ mode: "dedicated", size: 4, type: "user", threshold: 2 }] }, Errno.EINVAL],
    ["a threshold above the size", { wqs: [{ mode: "shared", size: 4, type: "user", threshold: 5 }] }, Errno.EINVAL],
    ["a transfer shift above GENCAP's", { wqs: [{ mode: "shared", size: 4, type: "user", maxXferShift: 22 }] }, Errno.EINVAL],
    ["a group the device lacks", { wqs: [{ mode: "shared", size: 4, type: "user", group: 1 }] }, Errno.EINVAL],
    ["an unknown mode", { wqs: [{ mode: "exclusive", size: 4, type: "user" }] }, Errno.EINVAL],
    ["an unknown type", { wqs: [{ mode: "shared", size: 4, type: "guest" }] }, Errno.EINVAL],
    ["no engine", { wqs: [{ mode: "shared", size: 4, type: "user" }], engines: 0 }, Errno.EINVAL],
  ])("refuses %s before writing anything", (_, config, errno) => {
    const board = svaMockBoard();
    const e = errnoOf(() => plugIdxd(board, { dev: 4, config: config as unknown as IdxdConfig }));
    expect(e).toBe(errno);
    expect(board.core.devices.size).toBe(0);
  });

  it("block-on-fault on a device without it is EOPNOTSUPP", () => {
    const board = svaMockBoard();
    expect(errnoOf(() => plugIdxd(board, { dev: 4, hw: { blockOnFault: false }, config: { wqs: [{ mode: "shared", size: 4, type: "user", bof: true }] } }))).toBe(Errno.EOPNOTSUPP);
  });

  it("a device that refuses ENABLE_DEVICE (bus mastering off) fails probe with ENXIO naming the status; the device is reset, SVA off, the IOMMU device released", () => {
    const board = svaMockBoard();
    let err: unknown;
    try {
      plugIdxd(board, { dev: 4, pci: { busMaster: false }, config: { wqs: [{ mode: "shared", size: 4, type: "user" }] } });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(KernelError);
    expect((err as KernelError).errno).toBe(Errno.ENXIO);
    expect((err as KernelError).message).toMatch(/enable device failed: BUSMASTER_EN \(0x12\)/);
    expect(board.core.devices.size).toBe(0);
  });

  it("a WQ the device refuses to enable fails probe with ENXIO; nothing stays enabled", () => {
    const board = svaMockBoard();
    const hw = new DsaDevice({ bus: 0, dev: 6, fn: 0, mem: board.mem });
    pciEnableForSva(hw.ep);
    hw.ep.attach(board.port);
    const iommuDev = board.probe(hw.ep, "dsa1");
    // A shared WQ without PASIDs is refused by the device (PASID_EN error), as when SVA could not be enabled.
    board.core.enableFeature(iommuDev, "sva", {});
    const orig = hw.mmioWrite32.bind(hw);
    hw.mmioWrite32 = (off, v) => orig(off, off === hw.wqcfgOffset(0) + 8 ? v & ~(1 << 28) : v);
    const e = errnoOf(() => Idxd.probe({ kernel: board.kernel, core: board.core, iommuDev, hw, config: { wqs: [{ mode: "shared", size: 4, type: "user" }] } }));
    expect(e).toBe(Errno.ENXIO);
    expect(DsaGenSts.get(Uint32Array.of(hw.mmioRead32(DsaReg.GENSTS)), "STATE")).toBe(DsaDeviceState.DISABLED);
    expect(wqcfg(hw, 0)).toMatchObject({ SIZE: 0, STATE: 0 });
    // SVA was on before probe: probe leaves it on.
    expect(iommuDev.hasFeature("sva")).toBe(true);
  });
});

describe("remove", () => {
  it("disables every WQ and the device, resets it, and turns SVA off", () => {
    const board = svaMockBoard();
    const idxd = plugIdxd(board, { dev: 4, config: CONFIG });
    idxd.remove();
    expect(DsaGenSts.get(Uint32Array.of(idxd.hw.mmioRead32(DsaReg.GENSTS)), "STATE")).toBe(DsaDeviceState.DISABLED);
    for (let w = 0; w < 4; w++) expect(wqcfg(idxd.hw, w)).toMatchObject({ SIZE: 0, STATE: 0 });
    expect(idxd.iommuDev.hasFeature("sva")).toBe(false);
    expect(idxd.state).toBe("removed");
    expect(errnoOf(() => idxd.wq(0))).toBe(Errno.ENODEV);
    idxd.remove();
  });
});
