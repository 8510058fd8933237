import { Board, type DeviceSlot } from "@vsva/machine";
import { type VtdPlatform, vtdPlatform } from "@vsva/intel-svm";
import { Vfio, type VfioDevice, vfioPciOps } from "@vsva/vfio-type1";
import type { AssignedDevice } from "./vm.js";

/**
 * Test support (not exported): a VT-d host board with VFIO loaded and a
 * DSA-like endpoint given to vfio-pci, as an administrator prepares a host
 * for device assignment (the IOMMU driver probed it; it is bound to
 * vfio-pci, not to a host driver).
 */
export interface VmTestHost {
  readonly board: Board<VtdPlatform>;
  readonly vfio: Vfio;
  readonly slot: DeviceSlot;
  readonly vdev: VfioDevice;
  readonly device: AssignedDevice;
}

export function vmTestHost(opts: { readonly deferBringUp?: boolean } = {}): VmTestHost {
  const board = new Board({ platform: vtdPlatform(), ...(opts.deferBringUp === true ? { deferBringUp: true } : {}) });
  return assign(board);
}

/**
 * Plugs in dsa0 and hands it to vfio-pci; the board must be up. No host
 * driver enabled SVA on it: VFIO does when a nesting container takes the
 * group, with its own fault handler (the DMA fault region) in place first.
 */
export function assign(board: Board<VtdPlatform>, name = "dsa0", dev = 4, vfioIn?: Vfio): VmTestHost {
  const vfio = vfioIn ?? new Vfio({ kernel: board.kernel, core: board.core, ioasid: board.ioasid });
  const slot = board.addDevice(name, { bus: 0, dev, fn: 0 });
  const space = slot.ep.config.space;
  const vdev = vfio.bindPciDevice(slot.dev, vfioPciOps({ size: 4096, read: (o, s) => space.read(o, s), write: (o, s, v) => space.write(o, s, v) }));
  const group = slot.dev.group;
  if (group === null) throw new Error(`${name} has no IOMMU group`);
  return { board, vfio, slot, vdev, device: { group: group.id, name: slot.dev.name, endpoint: slot.ep } };
}
