import { SparseMemory } from "@vsva/pgtable";
import { type PciEnableOptions, pciEnableForSva } from "../pci-enable.js";
import { PciEndpoint, type PciEndpointOptions } from "../endpoint.js";
import { FakeIommu } from "./fake-iommu.js";

/**
 * A test rig: a PCIe endpoint at 00:04.0 with PASID (20 bits, exec, priv),
 * ATS and PRI, over 16 MiB of host memory at 0, below a {@link FakeIommu},
 * with software's enable sequence already done through config space
 * (Bus Master, PASID, ATS, PRI with an allocation) unless told otherwise.
 */
export interface RigOptions extends Partial<Omit<PciEndpointOptions, "mem">> {
  /** Capabilities the device does not have at all. */
  readonly without?: readonly ("pasid" | "ats" | "pri")[];
  readonly enable?: PciEnableOptions;
}

export interface Rig {
  readonly mem: SparseMemory;
  readonly iommu: FakeIommu;
  readonly ep: PciEndpoint;
}

export const RIG_MEM_SIZE = 16 << 20;

export function makeRig(o: RigOptions = {}): Rig {
  const mem = new SparseMemory({ regions: [{ base: 0, size: RIG_MEM_SIZE }] });
  const iommu = new FakeIommu();
  const without = new Set(o.without ?? []);
  const ep = new PciEndpoint({
    bus: 0,
    dev: 4,
    fn: 0,
    id: { vendorId: 0x8086, deviceId: 0x0b25 },
    ...(without.has("pasid") ? {} : { pasid: o.pasid ?? { maxWidth: 20, exec: true, priv: true } }),
    ...(without.has("ats") ? {} : { ats: o.ats ?? {} }),
    ...(without.has("pri") ? {} : { pri: o.pri ?? { outstandingCapacity: 32 } }),
    ...(o.dma === undefined ? {} : { dma: o.dma }),
    ...(o.deviceTlbEntries === undefined ? {} : { deviceTlbEntries: o.deviceTlbEntries }),
    ...(o.trace === undefined ? {} : { trace: o.trace }),
    ...(o.flr === undefined ? {} : { flr: o.flr }),
    mem,
  });
  ep.attach(iommu);
  iommu.connect(ep);
  const en = o.enable ?? {};
  pciEnableForSva(ep, en);
  return { mem, iommu, ep };
}
