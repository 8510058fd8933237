import type { HostPasid } from "@vsva/kernel";
/** One hardware work queue the host driver lends to the VDCM (drivers/dma/idxd/device.c). Every method throws KernelError only. */
export interface HostWq {
  readonly id: number;
  readonly mode: "dedicated" | "shared";
  readonly size: number;
  /** What WQCFG holds now, read back from the register: the PASID when PASID_EN is set, else null. */
  readonly pasid: HostPasid | null;
  /** Dedicated WQ only: disable, write WQCFG.PASID with PASID_EN (and PRIV as given), enable (idxd_wq_set_pasid). EINVAL on a shared WQ. */
  setPasid(pasid: HostPasid, priv?: boolean): void;
  /** Quiesce then clear: drain, disable, clear PASID and PASID_EN, enable again. */
  clearPasid(): void;
  /** DRAIN_WQ: returns when every descriptor submitted before it has completed. */
  drain(): void;
  /**
   * DRAIN_PASID: returns when every descriptor of `pasid` submitted before it
   * has completed, in every WQ of the device (the one way to quiesce one
   * PASID on a shared WQ, whose other PASIDs keep running).
   */
  drainPasid(pasid: HostPasid): void;
  movdir64b(desc: Uint8Array): void;
  enqcmd(desc: Uint8Array): "accepted" | "retry";
}
