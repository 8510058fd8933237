import { type PhysMem, SparseMemory } from "@vsva/pgtable";
import { type PciEnableOptions, pciEnableForSva } from "@vsva/iommu-hw";
import { FakeIommu } from "@vsva/iommu-hw/testing";
import { DsaDevice, type DsaOptions } from "../device.js";
import { DsaCmd, DsaCmdSts, DsaCommand, DsaReg, DsaWqCfg, WqMode } from "../regs.js";

/** One WQ as a driver would configure it. */
export interface WqSetup {
  readonly mode: "dedicated" | "shared";
  readonly size: number;
  /** Dedicated WQ: the PASID stamped on its descriptors (absent: no PASID). */
  readonly pasid?: number;
  readonly priv?: boolean;
  readonly bof?: boolean;
  readonly priority?: number;
  readonly maxXferShift?: number;
}

/** Issues a command through CMD and returns CMDSTS.ERR (the device completes commands at once unless a drain has to wait). */
export function dsaCommand(dev: DsaDevice, command: number, operand = 0): { readonly err: number; readonly active: boolean } {
  const v = DsaCmd.encode({ COMMAND: command, OPERAND: operand });
  dev.mmioWrite32(DsaReg.CMD, v[0] ?? 0);
  const s = Uint32Array.of(dev.mmioRead32(DsaReg.CMDSTS));
  return { err: DsaCmdSts.get(s, "ERR"), active: DsaCmdSts.get(s, "ACTIVE") === 1 };
}

/** Programs a WQ's WQCFG through MMIO (dword by dword, as drivers/dma/idxd/device.c: idxd_wq_config_write() does). */
export function writeWqCfg(dev: DsaDevice, wq: number, s: WqSetup): void {
  const v = DsaWqCfg.encode({
    SIZE: s.size,
    MODE: s.mode === "dedicated" ? WqMode.DEDICATED : WqMode.SHARED,
    BOF: s.bof === true ? 1 : 0,
    PRIORITY: s.priority ?? 1,
    PASID: s.pasid ?? 0,
    PASID_EN: s.mode === "shared" || s.pasid !== undefined ? 1 : 0,
    PRIV: s.priv === true ? 1 : 0,
    MAX_XFER_SHIFT: s.maxXferShift ?? 21,
  });
  const base = dev.wqcfgOffset(wq);
  for (let i = 0; i < v.length; i++) dev.mmioWrite32(base + 4 * i, v[i] ?? 0);
}

/** The driver's bring-up: WQ configs, enable device, enable each WQ. Returns the CMDSTS.ERR of each step that failed (empty: all good). */
export function bringUp(dev: DsaDevice, wqs: readonly WqSetup[]): number[] {
  const errs: number[] = [];
  wqs.forEach((s, i) => writeWqCfg(dev, i, s));
  const e = dsaCommand(dev, DsaCommand.ENABLE_DEVICE).err;
  if (e !== 0) errs.push(e);
  wqs.forEach((_, i) => {
    const r = dsaCommand(dev, DsaCommand.ENABLE_WQ, i).err;
    if (r !== 0) errs.push(r);
  });
  return errs;
}

export interface DsaRig {
  readonly mem: SparseMemory;
  readonly iommu: FakeIommu;
  readonly dev: DsaDevice;
}

export const DSA_RIG_MEM_SIZE = 16 << 20;

/** `m` with only PhysMem's required methods: no block copy (`copyBytes`) and no dword writes (`writeWords`). */
export function requiredMethodsOnly(m: PhysMem): PhysMem {
  return {
    addrBits: m.addrBits,
    get stats() {
      return m.stats;
    },
    isPopulated: (pa) => m.isPopulated(pa),
    read8: (pa) => m.read8(pa),
    read16: (pa) => m.read16(pa),
    read32: (pa) => m.read32(pa),
    read64: (pa, out) => m.read64(pa, out),
    write8: (pa, v) => m.write8(pa, v),
    write16: (pa, v) => m.write16(pa, v),
    write32: (pa, v) => m.write32(pa, v),
    write64: (pa, lo, hi) => m.write64(pa, lo, hi),
    readBytes: (pa, dst) => m.readBytes(pa, dst),
    writeBytes: (pa, src) => m.writeBytes(pa, src),
  };
}

/**
 * The device at 00:05.0 over 16 MiB of memory below a FakeIommu, with Bus
 * Master, PASID, ATS and PRI enabled unless told otherwise. With
 * `requiredMemoryMethodsOnly`, the device sees the memory through
 * {@link requiredMethodsOnly} (the rig's `mem` is the memory itself).
 */
export function makeDsaRig(
  o: Partial<Omit<DsaOptions, "mem" | "bus" | "dev" | "fn">> & { readonly enable?: PciEnableOptions; readonly requiredMemoryMethodsOnly?: boolean } = {},
): DsaRig {
  const mem = new SparseMemory({ regions: [{ base: 0, size: DSA_RIG_MEM_SIZE }] });
  const iommu = new FakeIommu();
  const { enable, requiredMemoryMethodsOnly, ...rest } = o;
  const dev = new DsaDevice({ bus: 0, dev: 5, fn: 0, mem: requiredMemoryMethodsOnly === true ? requiredMethodsOnly(mem) : mem, ...rest });
  dev.ep.attach(iommu);
  iommu.connect(dev.ep);
  pciEnableForSva(dev.ep, enable ?? {});
  return { mem, iommu, dev };
}
