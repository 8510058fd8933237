import { DsaCmd, DsaCmdSts, DsaCommand, DsaOffsets, DsaReg, DSA_TABLE_MULT, DsaWqCfg, WqState } from "@vsva/dsa";
import { PasidCapCtl, PciExtCapId, PciHeader } from "@vsva/iommu-hw";
import { regionOffset, type VfioDeviceFile, VfioPciRegion } from "@vsva/vfio-type1";
import { VDCM_PORTAL_REGION } from "../mdev.js";

/** Command register bits (include/uapi/linux/pci_regs.h: PCI_COMMAND_MEMORY, PCI_COMMAND_MASTER). */
const PCI_COMMAND_MEMORY = 0x2;
const PCI_COMMAND_MASTER = 0x4;

/**
 * A stand-in for the guest's idxd driver on an mdev, reaching it only the way
 * a guest can: through the VMM's VFIO device file (config-space and BAR
 * region reads and writes). It programs its WQ as idxd does: WQCFG dword 2
 * (PASID, PASID_EN, PRIV) while the WQ is disabled, then ENABLE_DEVICE and
 * ENABLE_WQ through CMD, reading CMDSTS for the outcome.
 */
export class MdevGuest {
  constructor(readonly file: VfioDeviceFile) {}

  configRead(offset: number, size: 1 | 2 | 4): number {
    const b = this.file.pread(regionOffset(VfioPciRegion.CONFIG) + offset, size);
    let v = 0;
    for (let i = 0; i < size; i++) v |= (b[i] ?? 0) << (8 * i);
    return v >>> 0;
  }

  configWrite(offset: number, size: 1 | 2 | 4, value: number): void {
    const b = new Uint8Array(size);
    for (let i = 0; i < size; i++) b[i] = (value >>> (8 * i)) & 0xff;
    this.file.pwrite(regionOffset(VfioPciRegion.CONFIG) + offset, b);
  }

  /** The extended capability `id`'s offset (PCIe Base Spec 7.6.3 list walk), 0 when absent. */
  findExtCap(id: number): number {
    for (let off: number = PciHeader.EXT_START, ttl = 64; off >= PciHeader.EXT_START && ttl > 0; ttl--) {
      const h = this.configRead(off, 4);
      if (h === 0) return 0;
      if ((h & 0xffff) === id) return off;
      off = (h >>> 20) & 0xffc;
    }
    return 0;
  }

  /** Bus mastering on, and the PASID capability enabled (with privileged mode when `priv`), as the guest's PCI core and idxd probe do. */
  enablePasid(priv = false): void {
    this.configWrite(PciHeader.COMMAND_STATUS, 2, this.configRead(PciHeader.COMMAND_STATUS, 2) | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    const pasid = this.findExtCap(PciExtCapId.PASID);
    if (pasid === 0) throw new Error("no PASID capability visible");
    const v = Uint32Array.of(this.configRead(pasid + 4, 4));
    PasidCapCtl.set(v, "ENABLE", 1);
    if (priv) PasidCapCtl.set(v, "PRIV_ENABLE", 1);
    this.configWrite(pasid + 4, 4, v[0] ?? 0);
  }

  read32(offset: number): number {
    const b = this.file.pread(regionOffset(VfioPciRegion.BAR0) + offset, 4);
    return ((b[0] ?? 0) | ((b[1] ?? 0) << 8) | ((b[2] ?? 0) << 16) | ((b[3] ?? 0) << 24)) >>> 0;
  }

  write32(offset: number, value: number): void {
    this.file.pwrite(regionOffset(VfioPciRegion.BAR0) + offset, Uint8Array.of(value & 0xff, (value >>> 8) & 0xff, (value >>> 16) & 0xff, (value >>> 24) & 0xff));
  }

  /** BAR0 offset of WQ 0's WQCFG, from the OFFSETS register. */
  wqcfgOffset(): number {
    const off = Uint32Array.of(this.read32(DsaReg.OFFSETS), this.read32(DsaReg.OFFSETS + 4), 0, 0);
    return DsaOffsets.get(off, "WQCFG") * DSA_TABLE_MULT;
  }

  /** The virtual WQCFG as the guest reads it. */
  wqcfg(): Uint32Array {
    const base = this.wqcfgOffset();
    return Uint32Array.from({ length: DsaWqCfg.dwords }, (_, i) => this.read32(base + 4 * i));
  }

  /** What the guest reads back as its WQ's PASID (null when PASID_EN is clear). */
  readbackPasid(): number | null {
    const c = this.wqcfg();
    return DsaWqCfg.get(c, "PASID_EN") === 1 ? DsaWqCfg.get(c, "PASID") : null;
  }

  wqEnabled(): boolean {
    return DsaWqCfg.get(this.wqcfg(), "STATE") === WqState.ENABLED;
  }

  /** Writes WQCFG dword 2's PASID fields, keeping its other bits (idxd clears bits 29:8 first). */
  writePasid(pasid: number, en = true, priv = false): void {
    const c = this.wqcfg();
    DsaWqCfg.set(c, "PASID", pasid);
    DsaWqCfg.set(c, "PASID_EN", en ? 1 : 0);
    DsaWqCfg.set(c, "PRIV", priv ? 1 : 0);
    this.write32(this.wqcfgOffset() + 8, c[2] ?? 0);
  }

  /** Issues a command and returns CMDSTS.ERR. */
  command(command: number, operand = 0): number {
    this.write32(DsaReg.CMD, DsaCmd.encode({ COMMAND: command, OPERAND: operand })[0] ?? 0);
    return DsaCmdSts.get(Uint32Array.of(this.read32(DsaReg.CMDSTS)), "ERR");
  }

  /** The whole guest sequence for a dedicated WQ: PASID capability on, WQCFG, ENABLE_DEVICE (if needed), ENABLE_WQ. Returns ENABLE_WQ's CMDSTS.ERR. */
  programWq(gpasid: number | null, priv = false): number {
    this.enablePasid(priv);
    if (gpasid === null) this.writePasid(0, false, false);
    else this.writePasid(gpasid, true, priv);
    this.command(DsaCommand.ENABLE_DEVICE);
    return this.command(DsaCommand.ENABLE_WQ, 0);
  }

  /** DISABLE_WQ of WQ 0; returns CMDSTS.ERR. */
  disableWq(): number {
    return this.command(DsaCommand.DISABLE_WQ, 1);
  }

  /** A 64-byte store to the WQ's unlimited portal; returns the bytes the mdev took (0: ENQCMD retry). */
  submit(desc: Uint8Array): number {
    return this.file.pwrite(regionOffset(VDCM_PORTAL_REGION), desc);
  }
}
