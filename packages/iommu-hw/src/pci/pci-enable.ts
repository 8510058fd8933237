import type { PciEndpoint } from "./endpoint.js";

/**
 * The PCI core's side of SVA (drivers/pci/ats.c and pci_set_master): the
 * config-space writes that turn on bus mastering and the PASID, ATS and PRI
 * capabilities a function has, before an IOMMU driver binds it. Kept beside
 * the endpoint because vsva has no PCI-core layer of its own; every user
 * (tests, drivers' hosts, the harness) enables a device the same way.
 */
export interface PciEnableOptions {
  readonly busMaster?: boolean;
  readonly pasid?: boolean;
  readonly ats?: boolean;
  readonly pri?: boolean;
  /** Outstanding page requests allocated to the function (PRI). */
  readonly priAllocation?: number;
}

const COMMAND = 0x04;
const COMMAND_MEMORY_BUS_MASTER = 0x0006;
/** PASID capability: capability word at +4 (bits 2:1 execute/privileged supported), control word at +6. */
const PASID_CAP = 4;
const PASID_CTRL = 6;
const PASID_CTRL_ENABLE = 0x1;
const PASID_EXEC_PRIV = 0x6;
/** ATS control word at +6: bit 15 enable, STU 0 (4 KiB). */
const ATS_CTRL = 6;
const ATS_CTRL_ENABLE = 0x8000;
/** PRI: control at +4 (bit 0 enable), outstanding page request allocation at +0xc. */
const PRI_CTRL = 4;
const PRI_CTRL_ENABLE = 0x1;
const PRI_ALLOC = 0xc;

/** Enables what the function has (each on by default), in the order the PCI core does. */
export function pciEnableForSva(ep: PciEndpoint, o: PciEnableOptions = {}): void {
  const cs = ep.config;
  if (o.busMaster ?? true) ep.configWrite(COMMAND, 2, COMMAND_MEMORY_BUS_MASTER);
  if (cs.pasid !== undefined && (o.pasid ?? true)) {
    // Execute and privileged are enabled exactly when the function supports them.
    const supported = ep.configRead(cs.offsets.pasid + PASID_CAP, 2) & PASID_EXEC_PRIV;
    ep.configWrite(cs.offsets.pasid + PASID_CTRL, 2, PASID_CTRL_ENABLE | supported);
  }
  if (cs.ats !== undefined && (o.ats ?? true)) ep.configWrite(cs.offsets.ats + ATS_CTRL, 2, ATS_CTRL_ENABLE);
  if (cs.pri !== undefined && (o.pri ?? true)) {
    ep.configWrite(cs.offsets.pri + PRI_ALLOC, 4, o.priAllocation ?? 32);
    ep.configWrite(cs.offsets.pri + PRI_CTRL, 2, PRI_CTRL_ENABLE);
  }
}
