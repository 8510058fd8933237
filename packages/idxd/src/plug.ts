import { type PciEnableOptions, pciEnableForSva } from "@vsva/iommu-hw";
import { DsaDevice, type DsaOptions } from "@vsva/dsa";
import type { Board } from "@vsva/machine";
import { type IdxdConfig, Idxd } from "./idxd.js";

export interface PlugIdxdOptions {
  /** Device number on bus 0 (function 0). */
  readonly dev: number;
  readonly bus?: number;
  readonly name?: string;
  readonly config: IdxdConfig;
  /** The accelerator's build (WQ count, total WQ size, block-on-fault, stepwise engine). */
  readonly hw?: Partial<Omit<DsaOptions, "bus" | "dev" | "fn" | "mem" | "trace" | "name">>;
  /** What the PCI core enables in config space (default everything the function has). */
  readonly pci?: PciEnableOptions;
}

/**
 * Plugs the accelerator in below a board's IOMMU and probes its driver, as
 * the PCI core and idxd would at boot: the function is placed below the
 * unit, bus mastering, PASID, ATS and PRI are enabled in its config space,
 * the IOMMU core probes it, and idxd configures it. Errors of the IOMMU
 * probe or of {@link Idxd.probe}, the IOMMU device released again.
 */
export function plugIdxd(board: Board, o: PlugIdxdOptions): Idxd {
  const name = o.name ?? "dsa0";
  const hw = new DsaDevice({ bus: o.bus ?? 0, dev: o.dev, fn: 0, mem: board.mem, trace: board.kernel.trace, name, ...o.hw });
  pciEnableForSva(hw.ep, o.pci ?? {});
  hw.ep.attach(board.port);
  board.platform.attachEndpoint(hw.ep);
  const iommuDev = board.probe(hw.ep, name, o.hw?.pasidWidth ?? 20);
  try {
    return Idxd.probe({ kernel: board.kernel, core: board.core, iommuDev, hw, config: o.config, name });
  } catch (e) {
    board.core.releaseDevice(iommuDev);
    throw e;
  }
}
