import { Errno, type HostPasid, KernelError } from "@vsva/kernel";
import type { Mm, SvaBond } from "@vsva/iommu-core";
import { DSA_COMPLETION_SIZE, DSA_DESC_SIZE, type CompletionRecord, decodeCompletion } from "@vsva/dsa";
import type { Idxd, IdxdHw, IdxdWq } from "./idxd.js";

/** IA32_PASID (MSR 0xD93): bits 19:0 the PASID, bit 31 VALID (arch/x86/include/asm/msr-index.h: MSR_IA32_PASID, MSR_IA32_PASID_VALID). */
export const IA32_PASID_VALID = 0x8000_0000;
const PASID_MASK = 0xf_ffff;

/**
 * A user thread as the CPU runs it: its process's mm and its IA32_PASID
 * MSR. ENQCMD takes the PASID from that MSR, never from the descriptor
 * (Intel SDM, ENQCMD: the instruction overwrites bits 19:0 of the payload
 * with IA32_PASID[19:0] and clears bit 31, PRIV).
 */
export class UserThread {
  readonly mm: Mm;
  readonly name: string;
  #msr = 0;

  constructor(mm: Mm, name = `${mm.name}/0`) {
    this.mm = mm;
    this.name = name;
  }

  /** The IA32_PASID value (0 until the first ENQCMD fix-up). */
  get ia32Pasid(): number {
    return this.#msr;
  }

  /**
   * ENQCMD from this thread to a shared WQ's portal. With IA32_PASID not
   * valid the instruction raises #GP; the kernel's handler loads the MSR with
   * the mm's PASID and restarts the instruction when the mm has one
   * (arch/x86/kernel/traps.c: try_fixup_enqcmd_gp()), otherwise the #GP is
   * the thread's SIGSEGV: EFAULT here. "retry" is ZF = 1.
   */
  enqcmd(portal: { enqcmd(desc: Uint8Array): "accepted" | "retry" }, desc: Uint8Array): "accepted" | "retry" {
    if (!(desc instanceof Uint8Array) || desc.length !== DSA_DESC_SIZE) throw new KernelError(Errno.EINVAL, `ENQCMD moves ${DSA_DESC_SIZE} bytes`);
    if ((this.#msr & IA32_PASID_VALID) === 0) {
      const pasid = this.mm.pasid;
      if (pasid === null) throw new KernelError(Errno.EFAULT, `${this.name}: ENQCMD with IA32_PASID not valid and no PASID for ${this.mm.name}: #GP (SIGSEGV)`);
      this.#msr = (IA32_PASID_VALID | pasid) >>> 0;
    }
    const payload = desc.slice();
    const v = new DataView(payload.buffer);
    // Bits 19:0 from IA32_PASID, 30:20 kept zero, bit 31 (PRIV) cleared: user ENQCMD is never privileged.
    v.setUint32(0, this.#msr & PASID_MASK, true);
    return portal.enqcmd(payload);
  }

  /** MOVDIR64B: a 64-byte direct store to a dedicated WQ's portal; posted, nothing comes back. */
  movdir64b(portal: { movdir64b(desc: Uint8Array): void }, desc: Uint8Array): void {
    if (!(desc instanceof Uint8Array) || desc.length !== DSA_DESC_SIZE) throw new KernelError(Errno.EINVAL, `MOVDIR64B moves ${DSA_DESC_SIZE} bytes`);
    // The portal takes the 64 bytes as they are now: the device keeps its own copy.
    portal.movdir64b(desc);
  }
}

/**
 * An open file of a user WQ's char device (/dev/dsa/wqD.Q; drivers/dma/idxd/cdev.c).
 * Open binds the opener's mm (iommu_sva_bind_device) and, for a dedicated
 * WQ, programs the mm's PASID into WQCFG; submissions go through the
 * portal the process mapped; completion records are polled with CPU reads.
 */
export class IdxdUserFile {
  readonly wq: IdxdWq;
  readonly mm: Mm;
  readonly thread: UserThread;
  readonly pasid: HostPasid;
  readonly #bond: SvaBond;
  #open = true;

  /** @internal use {@link openUserWq}. */
  constructor(wq: IdxdWq, thread: UserThread, bond: SvaBond) {
    this.wq = wq;
    this.thread = thread;
    this.mm = thread.mm;
    this.#bond = bond;
    this.pasid = bond.pasid;
  }

  get isOpen(): boolean {
    return this.#open;
  }

  /**
   * One descriptor through the portal: MOVDIR64B to a dedicated WQ (posted:
   * "posted"), ENQCMD from `thread` to a shared WQ ("accepted" or "retry").
   * EBADF after close.
   */
  submit(desc: Uint8Array, thread: UserThread = this.thread): "posted" | "accepted" | "retry" {
    if (!this.#open) throw new KernelError(Errno.EBADF, `${this.wq.name}: file closed`);
    if (thread.mm !== this.mm) throw new KernelError(Errno.EINVAL, `${thread.name} is not a thread of ${this.mm.name}`);
    if (this.wq.mode === "dedicated") {
      thread.movdir64b(this.wq, desc);
      return "posted";
    }
    return thread.enqcmd(this.wq, desc);
  }

  /**
   * Reads a completion record at `va` in the process's memory, as the
   * process polls it. EFAULT when the address is not mapped.
   */
  readCompletion(va: number): CompletionRecord {
    return decodeCompletion(this.mm.read(va, DSA_COMPLETION_SIZE));
  }

  /**
   * cdev.c: idxd_cdev_release(): quiesce, then unbind. A dedicated WQ is
   * drained, disabled, its PASID cleared and enabled again; on a shared WQ
   * the device drains the PASID (DRAIN_PASID) so no descriptor of this
   * process is left. Then the SVA bond is dropped. Cannot fail: a device
   * that refuses is logged. Closing twice does nothing.
   */
  close(): void {
    if (!this.#open) return;
    this.#open = false;
    const idxd = this.wq.idxd;
    try {
      if (this.wq.mode === "dedicated") this.wq.clearPasid();
      else this.wq.drainPasid(this.pasid);
    } catch (e) {
      if (!(e instanceof KernelError)) throw e;
      idxd.kernel.log.warn(`idxd:${idxd.name}:release`, `${this.wq.name}: ${e.message}`, "DEVICE");
    }
    this.wq.clients--;
    idxd.track(this, false);
    idxd.core.sva.unbindDevice(this.#bond);
    idxd.kernel.trace.emit("idxd.cdev.close", "DEVICE", { hpasid: this.pasid }, { device: idxd.name, wq: this.wq.id });
  }
}

/**
 * cdev.c: idxd_cdev_open() by `thread`: the WQ must be a user WQ and
 * enabled (ENODEV, ENXIO), a dedicated WQ takes one opener (EBUSY); the
 * opener's mm is bound (the SVA bind's errors) and, for a dedicated WQ, its
 * PASID programmed (idxd_wq_set_pasid; ENXIO). ENOMEM injected at
 * `idxd.cdev-ctx`. A failed open leaves nothing bound or programmed.
 */
export function openUserWq(idxd: Idxd<IdxdHw>, wqId: number, thread: UserThread): IdxdUserFile {
  idxd.kernel.scheduler.atomic.mightSleep("idxd_cdev_open");
  const wq = idxd.wq(wqId);
  if (wq.type !== "user") throw new KernelError(Errno.ENODEV, `${wq.name} is a ${wq.type} WQ: it has no char device`);
  if (!wq.enabled) throw new KernelError(Errno.ENXIO, `${wq.name} is not enabled`);
  if (wq.mode === "dedicated" && wq.clients > 0) throw new KernelError(Errno.EBUSY, `${wq.name} is dedicated and already open`);
  idxd.kernel.faults.inject("idxd.cdev-ctx");
  const bond = idxd.core.sva.bindDevice(idxd.iommuDev, thread.mm);
  try {
    if (wq.mode === "dedicated") wq.setPasid(bond.pasid, false);
  } catch (e) {
    idxd.core.sva.unbindDevice(bond);
    throw e;
  }
  const f = new IdxdUserFile(wq, thread, bond);
  wq.clients++;
  idxd.track(f, true);
  idxd.kernel.trace.emit("idxd.cdev.open", "DEVICE", { hpasid: bond.pasid }, { device: idxd.name, wq: wq.id, mode: wq.mode });
  return f;
}
