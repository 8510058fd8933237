import { Errno, KernelError } from "@vsva/kernel";
import type { VfioDeviceOps, VfioRegion } from "./device.js";
import { DeviceFlag, RegionFlag } from "./uapi/structs.js";

/** A physical function's configuration space, as the PCI core reaches it (pci_read_config_*). */
export interface PciConfigAccess {
  /** Bytes of config space (4096 for PCIe). */
  readonly size: number;
  read(offset: number, size: 1 | 2 | 4): number;
  write(offset: number, size: 1 | 2 | 4, value: number): void;
}

/** vfio-pci's fixed region indices (VFIO_PCI_*_REGION_INDEX). */
export const VfioPciRegion = { BAR0: 0, ROM: 6, CONFIG: 7, VGA: 8, NUM: 9 } as const;
export const VFIO_PCI_NUM_IRQS = 5;

const PCI_COMMAND = 0x04;
const PCI_EXT_CAP_START = 0x100;
/** PCIe extended capability IDs (PCIe Base Spec §7.6.x; include/uapi/linux/pci_regs.h). */
export const PciExtCap = { ATS: 0x0f, PRI: 0x13, PASID: 0x1b } as const;

/**
 * Which extended capabilities a user sees. vfio-pci v5.10 hides the ones
 * whose `pci_ext_cap_length[]` entry is 0 (drivers/vfio/pci/vfio_pci_config.c:
 * vfio_ecap_init), which were PASID and PRI ("not yet"); the vSVA series'
 * "vfio/pci: Expose PCIe PASID capability to userspace" gives PASID its
 * length, so a VM can see the device's PASID width. PRI stays hidden: page
 * requests reach the VM through the DMA fault region, not the device.
 */
export const HIDDEN_EXT_CAPS: ReadonlySet<number> = new Set([PciExtCap.PRI]);

interface ExtCap {
  readonly offset: number;
  readonly id: number;
  readonly version: number;
}

/**
 * vfio-pci's device ops over a function's config space: a CONFIG region where
 * the extended capability list skips hidden capabilities (their bytes read
 * as 0) and only the Command register is writable (bus mastering and memory
 * decode; everything else a VMM virtualizes itself). The other regions are
 * present with size 0, as for a function without BARs.
 */
export function vfioPciOps(config: PciConfigAccess): VfioDeviceOps {
  const caps = walkExtCaps(config);
  const visible = caps.filter((c) => !HIDDEN_EXT_CAPS.has(c.id));
  const hiddenRanges = caps
    .map((c, i) => ({ c, end: caps[i + 1]?.offset ?? config.size }))
    .filter(({ c }) => HIDDEN_EXT_CAPS.has(c.id))
    .map(({ c, end }) => [c.offset, Math.min(end, nextHigher(caps, c.offset) ?? config.size)] as const);

  const virtualDword = (off: number): number => {
    // A visible capability's header points at the next visible one; if the
    // first capability is hidden, 0x100 holds a null header that links on.
    const idx = visible.findIndex((c) => c.offset === off);
    if (idx >= 0 || (off === PCI_EXT_CAP_START && caps[0]?.offset === PCI_EXT_CAP_START)) {
      const c = idx >= 0 ? visible[idx] : undefined;
      const next = idx >= 0 ? (visible[idx + 1]?.offset ?? 0) : (visible[0]?.offset ?? 0);
      return ((c?.id ?? 0) | ((c?.version ?? 0) << 16) | (next << 20)) >>> 0;
    }
    if (hiddenRanges.some(([a, b]) => off >= a && off < b)) return 0;
    return config.read(off, 4) >>> 0;
  };

  const regions: VfioRegion[] = [];
  for (let i = 0; i < VfioPciRegion.NUM; i++) {
    regions.push(i === VfioPciRegion.CONFIG ? { index: i, size: config.size, flags: RegionFlag.READ | RegionFlag.WRITE } : { index: i, size: 0, flags: 0 });
  }

  return {
    flags: DeviceFlag.PCI | DeviceFlag.RESET,
    numIrqs: VFIO_PCI_NUM_IRQS,
    regions: () => regions,
    read(index, offset, length) {
      if (index !== VfioPciRegion.CONFIG) throw new KernelError(Errno.EINVAL, `vfio-pci: region ${index} is empty`);
      const out = new Uint8Array(length);
      for (let i = 0; i < length; i++) {
        const at = offset + i;
        const dword = at >= PCI_EXT_CAP_START ? virtualDword(at & ~3) : config.read(at & ~3, 4) >>> 0;
        out[i] = (dword >>> ((at & 3) * 8)) & 0xff;
      }
      return out;
    },
    write(index, offset, bytes) {
      if (index !== VfioPciRegion.CONFIG) throw new KernelError(Errno.EINVAL, `vfio-pci: region ${index} is empty`);
      // Only whole-Command-register writes reach the device; the rest is
      // read-only to the user, and the write is taken and dropped.
      if (offset === PCI_COMMAND && bytes.length === 2) config.write(PCI_COMMAND, 2, (bytes[0] ?? 0) | ((bytes[1] ?? 0) << 8));
      return bytes.length;
    },
  };
}

function nextHigher(caps: readonly ExtCap[], off: number): number | undefined {
  return caps.map((c) => c.offset).filter((o) => o > off).sort((a, b) => a - b)[0];
}

/** The extended capability list from 0x100 (PCIe Base Spec §7.6.3), guarding against loops. */
export function walkExtCaps(config: PciConfigAccess): ExtCap[] {
  const out: ExtCap[] = [];
  const seen = new Set<number>();
  for (let off = PCI_EXT_CAP_START; off !== 0 && off >= PCI_EXT_CAP_START && off + 4 <= config.size && !seen.has(off); ) {
    seen.add(off);
    const h = config.read(off, 4) >>> 0;
    if (h === 0 || h === 0xffff_ffff) break;
    out.push({ offset: off, id: h & 0xffff, version: (h >>> 16) & 0xf });
    off = (h >>> 20) & 0xffc;
  }
  return out;
}
