import { asHostPasid, Errno, type FaultInjector, type HostPasid, KernelError } from "@vsva/kernel";
import { DsaCmd, DsaCmdErr, DsaCmdSts, DsaCommand, type DsaDevice, DsaReg, DsaWqCfg, WqMode, WqState } from "@vsva/dsa";
import type { HostWq } from "../host-wq.js";

/** PASIDs are 20 bits (PCIe PASID capability; WQCFG.PASID is 27:8 of dword 2). */
const PASID_LIMIT = 1 << 20;
/** Polls of CMDSTS.ACTIVE before a command counts as timed out (each poll lets a stepwise device take one step). */
const MAX_POLLS = 1 << 16;

/**
 * A host driver's handle on one work queue of a real {@link DsaDevice},
 * driving it only through BAR0 (WQCFG and the CMD/CMDSTS registers), as
 * drivers/dma/idxd/device.c does: idxd_wq_set_pasid() disables the WQ,
 * rewrites WQCFG dword 2 and enables it again; idxd_wq_drain() issues
 * DRAIN_WQ and waits for CMDSTS.ACTIVE to drop. The VDCM's tests run on it
 * until the idxd package's handle exists, and then on both.
 *
 * Waiting for a command is polling: with a stepwise device each poll lets the
 * device take one step, as time passing would. A command that stays active
 * (a descriptor blocked on a page request nobody answers) is ETIMEDOUT; a
 * command the device refuses is ENXIO (what idxd returns for a failed WQ
 * command), with the CMDSTS error in the message.
 */
export class DsaHostWq implements HostWq {
  readonly mode: "dedicated" | "shared";
  readonly size: number;

  constructor(
    readonly dev: DsaDevice,
    readonly id: number,
    private readonly faults?: FaultInjector,
  ) {
    if (!Number.isInteger(id) || id < 0 || id >= dev.numWqs) throw new KernelError(Errno.EINVAL, `${dev.name} has no WQ ${String(id)}`);
    const c = this.#wqcfg();
    this.mode = DsaWqCfg.get(c, "MODE") === WqMode.DEDICATED ? "dedicated" : "shared";
    this.size = DsaWqCfg.get(c, "SIZE");
  }

  get pasid(): HostPasid | null {
    const c = this.#wqcfg();
    return DsaWqCfg.get(c, "PASID_EN") === 1 ? asHostPasid(DsaWqCfg.get(c, "PASID")) : null;
  }

  get enabled(): boolean {
    return DsaWqCfg.get(this.#wqcfg(), "STATE") === WqState.ENABLED;
  }

  setPasid(pasid: HostPasid, priv = false): void {
    if (this.mode !== "dedicated") throw new KernelError(Errno.EINVAL, `WQ ${this.id} is shared: its PASIDs come with each ENQCMD`);
    if (!Number.isInteger(pasid) || pasid < 0 || pasid >= PASID_LIMIT) throw new KernelError(Errno.EINVAL, `PASID ${String(pasid)} is not 20 bits`);
    this.faults?.inject("vdcm.host_wq_cmd", Errno.EIO);
    const was = this.enabled;
    if (was) this.#cmd(DsaCommand.DISABLE_WQ, this.#mask());
    this.#writePasidDword(pasid, true, priv);
    if (was) this.#cmd(DsaCommand.ENABLE_WQ, this.id);
  }

  clearPasid(): void {
    const was = this.enabled;
    if (was) {
      this.#cmd(DsaCommand.DRAIN_WQ, this.#mask());
      this.#cmd(DsaCommand.DISABLE_WQ, this.#mask());
    }
    this.#writePasidDword(0, false, false);
    if (was) this.#cmd(DsaCommand.ENABLE_WQ, this.id);
  }

  drain(): void {
    if (this.enabled) this.#cmd(DsaCommand.DRAIN_WQ, this.#mask());
  }

  drainPasid(pasid: HostPasid): void {
    if (!Number.isInteger(pasid) || pasid < 0 || pasid >= PASID_LIMIT) throw new KernelError(Errno.EINVAL, `PASID ${String(pasid)} is not 20 bits`);
    this.faults?.inject("vdcm.host_wq_cmd", Errno.EIO);
    this.#cmd(DsaCommand.DRAIN_PASID, pasid);
  }

  movdir64b(desc: Uint8Array): void {
    this.dev.movdir64b(this.id, desc);
  }

  enqcmd(desc: Uint8Array): "accepted" | "retry" {
    return this.dev.enqcmd(this.id, desc);
  }

  #wqcfg(): Uint32Array {
    const base = this.dev.wqcfgOffset(this.id);
    return Uint32Array.from({ length: DsaWqCfg.dwords }, (_, i) => this.dev.mmioRead32(base + 4 * i));
  }

  /** WQ-mask operand: bit (id mod 16) of bits 15:0, the group of 16 in bits 19:16. */
  #mask(): number {
    return ((Math.floor(this.id / 16) & 0xf) << 16) | (1 << this.id % 16);
  }

  /** Read-modify-write of WQCFG dword 2 with PASID, PASID_EN and PRIV cleared first, as idxd does (bits 29:8). */
  #writePasidDword(pasid: number, en: boolean, priv: boolean): void {
    const c = this.#wqcfg();
    DsaWqCfg.set(c, "PASID", pasid);
    DsaWqCfg.set(c, "PASID_EN", en ? 1 : 0);
    DsaWqCfg.set(c, "PRIV", priv ? 1 : 0);
    this.dev.mmioWrite32(this.dev.wqcfgOffset(this.id) + 8, c[2] ?? 0);
  }

  #cmd(command: number, operand: number): void {
    this.dev.mmioWrite32(DsaReg.CMD, DsaCmd.encode({ COMMAND: command, OPERAND: operand })[0] ?? 0);
    let sts = Uint32Array.of(this.dev.mmioRead32(DsaReg.CMDSTS));
    for (let n = 0; DsaCmdSts.get(sts, "ACTIVE") === 1; n++) {
      if (n >= MAX_POLLS || !this.dev.step()) throw new KernelError(Errno.ETIMEDOUT, `${this.dev.name}: command ${command} on WQ ${this.id} still active`);
      sts = Uint32Array.of(this.dev.mmioRead32(DsaReg.CMDSTS));
    }
    const err = DsaCmdSts.get(sts, "ERR");
    if (err !== DsaCmdErr.SUCCESS) throw new KernelError(Errno.ENXIO, `${this.dev.name}: command ${command} on WQ ${this.id} failed, CMDSTS error 0x${err.toString(16)}`);
  }
}
