import { Errno, KernelError } from "@vsva/kernel";
import type { Layout } from "@vsva/pgtable";
import {
  DSA_TABLE_MULT,
  DSA_WQCFG_STRIDE,
  DsaCmd,
  DsaCmdSts,
  DsaCommand,
  DsaDeviceState,
  DsaEngCap,
  DsaGenCap,
  DsaGenCfg,
  DsaGenCtrl,
  DsaGenSts,
  DsaGrpCap,
  DsaGrpCfg,
  DsaIntCause,
  DsaOffsets,
  DsaOpcode,
  DsaReg,
  DsaSwErr,
  DsaVersion,
  DsaWqCap,
  DsaWqCfg,
  WqMode,
  WqState,
} from "@vsva/dsa";

/**
 * The guest's view of the accelerator's BAR0 for one mdev (the virtual BAR0 of
 * the 2020 idxd mdev series, drivers/dma/idxd/vdev.c, and its later form in
 * drivers/vfio/mdev/idxd/vdev.c): a shadow of the registers a guest idxd
 * driver reads and programs, with one group and one virtual WQ that stands for
 * the hardware WQ the host driver lent. The registers use the device's own
 * layouts (`@vsva/dsa`); what differs is who acts on a write: the VDCM, not
 * the silicon.
 *
 * Guest-writable, as the vDCM does it: GENCFG (only while the virtual device
 * is disabled), GENCTRL, INTCAUSE and SWERR bits 1:0 (write 1 to clear), CMD
 * (a whole 32-bit write runs the command), and in WQCFG only dword 2's PASID,
 * PASID_EN and PRIV, only while the virtual WQ is disabled. Everything else
 * is read-only (capabilities, GRPCFG, the WQ's size, mode, priority and
 * limits, which belong to the host WQ). The WQ mode is read-only too: the
 * later vdev.c took it from the guest with a note that it should not, and a
 * host WQ cannot change mode under its host driver.
 */
export const VBAR0_SIZE = 0x2000;
/** GRPCFG and WQCFG tables, in OFFSETS units of 0x100 (where the vDCM places them: 0x400 and 0x500). */
export const VBAR0_GRPCFG_TABLE = 0x4;
export const VBAR0_WQCFG_TABLE = 0x5;
export const VBAR0_GRPCFG = VBAR0_GRPCFG_TABLE * DSA_TABLE_MULT;
export const VBAR0_WQCFG = VBAR0_WQCFG_TABLE * DSA_TABLE_MULT;
/** CMDSTS.ERR for a command the device could not carry out (drivers/dma/idxd/registers.h: IDXD_CMDSTS_HW_ERR). */
export const CMD_ERR_HW = 0x03;

/** What the virtual device advertises for its one WQ. */
export interface VirtualCaps {
  readonly mode: "dedicated" | "shared";
  readonly size: number;
  /** GENCAP.MAX_XFER_SHIFT (and the WQ's limit). */
  readonly maxXferShift: number;
}

const WQCFG_GUEST_DWORD = 2;
const DWORDS = VBAR0_SIZE / 4;

/** The bits of `field` that fall in dword `dword` of `layout`. */
function fieldMask<F extends string>(layout: Layout<F>, field: F, dword: number): number {
  const s = layout.spec(field);
  const lo = Math.max(s.lsb, dword * 32);
  const hi = Math.min(s.msb, dword * 32 + 31);
  if (lo > hi) return 0;
  const width = hi - lo + 1;
  return (width === 32 ? 0xffff_ffff : ((1 << width) - 1) << (lo & 31)) >>> 0;
}

function accessMask<F extends string>(layout: Layout<F>, dword: number, access: "RW" | "RW1C"): number {
  let m = 0;
  for (const f of layout.fieldNames) if (layout.spec(f).access === access) m |= fieldMask(layout, f, dword);
  return m >>> 0;
}

/** The guest's accesses as the vDCM allows them: 1, 2, 4 or 8 bytes, naturally aligned, inside the BAR. EINVAL otherwise. */
export function checkAccess(offset: number, length: number, size: number): void {
  if (
    !Number.isSafeInteger(offset) ||
    !(length === 1 || length === 2 || length === 4 || length === 8) ||
    offset < 0 ||
    offset % length !== 0 ||
    offset + length > size
  ) {
    throw new KernelError(Errno.EINVAL, `vBAR0 access of ${String(length)} bytes at ${String(offset)}: not a naturally aligned 1, 2, 4 or 8 bytes inside the BAR`);
  }
}

export class VirtualBar0 {
  readonly words = new Uint32Array(DWORDS);
  readonly #reset: Uint32Array;
  readonly #rw = new Map<number, number>();
  readonly #w1c = new Map<number, number>();
  readonly #wqcfgGuestMask: number;

  constructor(readonly caps: VirtualCaps) {
    const at = (off: number, dwords: number) => this.words.subarray(off >>> 2, (off >>> 2) + dwords);
    DsaVersion.set(at(DsaReg.VERSION, 1), "MAJOR", 1);
    const gencap = at(DsaReg.GENCAP, 2);
    DsaGenCap.set(gencap, "BLOCK_ON_FAULT", 1);
    DsaGenCap.set(gencap, "CMD_CAP", 1);
    DsaGenCap.set(gencap, "MAX_XFER_SHIFT", caps.maxXferShift);
    // CONFIG_EN stays 0: the guest cannot reconfigure groups or WQ sizes, the host owns them.
    const wqcap = at(DsaReg.WQCAP, 2);
    DsaWqCap.set(wqcap, "TOTAL_WQ_SIZE", caps.size);
    DsaWqCap.set(wqcap, "NUM_WQS", 1);
    DsaWqCap.set(wqcap, caps.mode === "dedicated" ? "DEDICATED_MODE" : "SHARED_MODE", 1);
    DsaGrpCap.set(at(DsaReg.GRPCAP, 2), "NUM_GROUPS", 1);
    DsaEngCap.set(at(DsaReg.ENGCAP, 2), "NUM_ENGINES", 1);
    let opcap = 0;
    for (const op of [DsaOpcode.NOOP, DsaOpcode.MEMMOVE, DsaOpcode.MEMFILL, DsaOpcode.COMPARE]) opcap |= 1 << op;
    this.words[DsaReg.OPCAP >>> 2] = opcap >>> 0;
    const offsets = at(DsaReg.OFFSETS, 4);
    DsaOffsets.set(offsets, "GRPCFG", VBAR0_GRPCFG_TABLE);
    DsaOffsets.set(offsets, "WQCFG", VBAR0_WQCFG_TABLE);
    let cmdcap = 0;
    for (const c of Object.values(DsaCommand)) cmdcap |= 1 << c;
    this.words[DsaReg.CMDCAP >>> 2] = cmdcap >>> 0;
    const grp = at(VBAR0_GRPCFG, DsaGrpCfg.dwords);
    DsaGrpCfg.set(grp, "WQS", 1);
    DsaGrpCfg.set(grp, "ENGINES", 1);
    const wq = this.wqcfg;
    DsaWqCfg.set(wq, "SIZE", caps.size);
    DsaWqCfg.set(wq, "MODE", caps.mode === "dedicated" ? WqMode.DEDICATED : WqMode.SHARED);
    DsaWqCfg.set(wq, "PRIORITY", 1);
    DsaWqCfg.set(wq, "MAX_XFER_SHIFT", caps.maxXferShift);
    // A shared WQ takes its PASID from each ENQCMD: PASID_EN comes preset (the vDCM's WQCFG init).
    if (caps.mode === "shared") DsaWqCfg.set(wq, "PASID_EN", 1);
    this.#reset = this.words.slice();

    this.#rw.set(DsaReg.GENCFG >>> 2, accessMask(DsaGenCfg, 0, "RW"));
    this.#rw.set(DsaReg.GENCTRL >>> 2, accessMask(DsaGenCtrl, 0, "RW"));
    this.#w1c.set(DsaReg.INTCAUSE >>> 2, accessMask(DsaIntCause, 0, "RW1C"));
    this.#w1c.set(DsaReg.SWERR >>> 2, accessMask(DsaSwErr, 0, "RW1C"));
    this.#wqcfgGuestMask = (fieldMask(DsaWqCfg, "PASID", WQCFG_GUEST_DWORD) | fieldMask(DsaWqCfg, "PASID_EN", WQCFG_GUEST_DWORD) | fieldMask(DsaWqCfg, "PRIV", WQCFG_GUEST_DWORD)) >>> 0;
  }

  /** The virtual WQ's configuration entry (a live view). */
  get wqcfg(): Uint32Array {
    return this.words.subarray(VBAR0_WQCFG >>> 2, (VBAR0_WQCFG + DSA_WQCFG_STRIDE) >>> 2);
  }

  get gensts(): Uint32Array {
    return this.words.subarray(DsaReg.GENSTS >>> 2, (DsaReg.GENSTS >>> 2) + 1);
  }

  get enabled(): boolean {
    return DsaGenSts.get(this.gensts, "STATE") === DsaDeviceState.ENABLED;
  }

  get wqEnabled(): boolean {
    return DsaWqCfg.get(this.wqcfg, "STATE") === WqState.ENABLED;
  }

  setDeviceState(state: number): void {
    DsaGenSts.set(this.gensts, "STATE", state);
  }

  setWqState(state: number): void {
    DsaWqCfg.set(this.wqcfg, "STATE", state);
  }

  /** Back to the values at creation (RESET_DEVICE, FLR, the last close). */
  reset(): void {
    this.words.set(this.#reset);
  }

  /** The virtual WQCFG back to its creation value (RESET_WQ). */
  resetWqcfg(): void {
    const first = VBAR0_WQCFG >>> 2;
    this.words.set(this.#reset.subarray(first, first + (DSA_WQCFG_STRIDE >>> 2)), first);
  }

  read(offset: number, length: number): Uint8Array {
    checkAccess(offset, length, VBAR0_SIZE);
    const out = new Uint8Array(length);
    for (let i = 0; i < length; i++) {
      const at = offset + i;
      out[i] = ((this.words[at >>> 2] ?? 0) >>> ((at & 3) * 8)) & 0xff;
    }
    return out;
  }

  /**
   * A guest write: each dword it touches gets the written bytes where the
   * register lets the guest write. Returns the CMD value when the write was a
   * whole write of CMD (the caller runs the command), else null.
   */
  write(offset: number, bytes: Uint8Array): number | null {
    checkAccess(offset, bytes.length, VBAR0_SIZE);
    let cmd: number | null = null;
    for (let d = offset >>> 2; d <= (offset + bytes.length - 1) >>> 2; d++) {
      let value = 0;
      let mask = 0;
      for (let b = 0; b < 4; b++) {
        const at = d * 4 + b;
        if (at < offset || at >= offset + bytes.length) continue;
        value |= (bytes[at - offset] ?? 0) << (b * 8);
        mask |= 0xff << (b * 8);
      }
      value >>>= 0;
      mask >>>= 0;
      if (d === DsaReg.CMD >>> 2) {
        // CMD takes 32-bit writes only; a partial write does nothing.
        if (mask === 0xffff_ffff) cmd = value;
        continue;
      }
      this.#writeDword(d, value, mask);
    }
    return cmd;
  }

  #writeDword(d: number, value: number, byteMask: number): void {
    const old = this.words[d] ?? 0;
    if (d === (VBAR0_WQCFG >>> 2) + WQCFG_GUEST_DWORD) {
      if (this.wqEnabled) return;
      const m = this.#wqcfgGuestMask & byteMask;
      this.words[d] = ((old & ~m) | (value & m)) >>> 0;
      return;
    }
    if (d === DsaReg.GENCFG >>> 2 && this.enabled) return;
    const rw = (this.#rw.get(d) ?? 0) & byteMask;
    const w1c = (this.#w1c.get(d) ?? 0) & byteMask;
    if ((rw | w1c) === 0) return;
    this.words[d] = (((old & ~rw) | (value & rw)) & ~(value & w1c)) >>> 0;
  }

  /** Completes a command: CMDSTS.ERR = err, ACTIVE clear, INTCAUSE.CMD when the guest asked for an interrupt. */
  complete(cmd: number, err: number): void {
    const sts = this.words.subarray(DsaReg.CMDSTS >>> 2, (DsaReg.CMDSTS >>> 2) + 1);
    sts[0] = 0;
    DsaCmdSts.set(sts, "ERR", err);
    this.words[DsaReg.CMD >>> 2] = cmd >>> 0;
    if (DsaCmd.get(Uint32Array.of(cmd), "INT_REQ") === 1) DsaIntCause.set(this.words.subarray(DsaReg.INTCAUSE >>> 2, (DsaReg.INTCAUSE >>> 2) + 1), "CMD", 1);
  }
}

