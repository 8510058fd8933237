import { Errno, type Kernel, KernelBug, KernelError, isKernelError } from "@vsva/kernel";
import {
  Cr0AckReg,
  Cr0Reg,
  Cr1Reg,
  Cr2Reg,
  EVENT_BYTES,
  EventRecord,
  GbpaReg,
  IrqCtrlAckReg,
  IrqCtrlReg,
  PRI_BYTES,
  type PhysMem,
  PriEntry,
  S1Dss,
  SmmuReg,
  Ste,
  SteConfig,
  Strw,
} from "@vsva/iommu-hw";
import type { IommuDevice, PageAllocator } from "@vsva/iommu-core";
import { type SmmuCaps, checkCaps, readCaps } from "./caps.js";
import { CdTable } from "./cd-table.js";
import { CommandQueue } from "./cmdq.js";
import { cfgiAll, cfgiCd, cfgiSte, tlbiNsnhAll } from "./commands.js";
import { IdAllocator } from "./ids.js";
import { type SmmuMmio, readReg, writeReg } from "./mmio.js";
import { OutputQueueReader } from "./outq.js";
import { SHCFG_INCOMING, StreamTable } from "./strtab.js";
import "./trace-events.js";

/** What a stream's STE translates with, besides the CDs of SVA binds. */
export type StreamConfig =
  | { readonly kind: "abort" }
  | { readonly kind: "bypass" }
  /** Stage 1: CD 0 is the domain's (requests without SubstreamID use it: S1DSS = SSID0). */
  | { readonly kind: "s1"; readonly asid: number }
  | { readonly kind: "s2"; readonly vmid: number; readonly s2: Stage2Params };

/** VTCR-like fields of a stage-2 domain (the STE's S2* fields). */
export interface Stage2Params {
  readonly ttb: number;
  readonly t0sz: number;
  readonly sl0: number;
}

/** Per device (`struct arm_smmu_master`). */
export interface SmmuMaster {
  readonly dev: IommuDevice;
  readonly sid: number;
  /** SubstreamID bits: min(the device's PASID width, IDR1.SSIDSIZE). */
  readonly ssidBits: number;
  config: StreamConfig;
  /** The CD table, made at the first stage-1 attach or SVA bind; freed with the master. */
  cd: CdTable | null;
  /** SVA binds on this master (CDs at SSID ≥ 1). */
  svaBinds: number;
  /**
   * Its CDs stall faulting transactions (`master->stall_enabled`): the unit
   * has stalls and firmware says the master can take them ("dma-can-stall"),
   * or the unit forces stalls.
   */
  readonly stallEnabled: boolean;
}

/** What firmware (DT or IORT) says about the masters behind the unit. */
export interface SmmuFirmware {
  /** The "dma-can-stall" property (IORT: the named component's stall flag) of the master at `sid`. */
  dmaCanStall(sid: number): boolean;
}

export interface SmmuHardwareOptions {
  /** Unit name in traces and logs. */
  readonly name: string;
  readonly mmio: SmmuMmio;
  /** The memory the unit reads (host RAM, or a guest's RAM for a vSMMU). */
  readonly mem: PhysMem;
  /** Every page the driver puts in memory comes from here. */
  readonly pages: PageAllocator;
  readonly kernel: Kernel;
  /** Lets a unit that runs its command queue from a work item progress while the driver waits. */
  readonly poll?: () => void;
  /** Firmware's description of the masters (which of them can stall); none: no master stalls unless the unit forces it. */
  readonly firmware?: SmmuFirmware;
}

/** Polls of CR0ACK before giving up (`arm_smmu_write_reg_sync`). */
const ACK_POLLS = 1000;

/**
 * One SMMUv3 as the driver holds it (`struct arm_smmu_device`): its
 * capabilities, stream table, queues, ASID and VMID spaces, and the
 * masters (devices) behind it, plus the rule for turning a master's state
 * into its STE.
 */
export class SmmuHardware {
  readonly name: string;
  readonly caps: SmmuCaps;
  readonly mmio: SmmuMmio;
  readonly mem: PhysMem;
  readonly pages: PageAllocator;
  readonly kernel: Kernel;
  readonly cmdq: CommandQueue;
  readonly evtq: OutputQueueReader<string>;
  readonly priq: OutputQueueReader<string>;
  readonly strtab: StreamTable;
  readonly asids: IdAllocator;
  readonly vmids: IdAllocator;
  readonly #masters = new Map<IommuDevice, SmmuMaster>();
  readonly #firmware: SmmuFirmware | undefined;
  #started = false;

  /** Reads the ID registers. ENODEV for a unit this driver cannot run. */
  constructor(o: SmmuHardwareOptions) {
    this.name = o.name;
    this.mmio = o.mmio;
    this.mem = o.mem;
    this.pages = o.pages;
    this.kernel = o.kernel;
    this.#firmware = o.firmware;
    this.caps = readCaps(o.mmio);
    checkCaps(this.caps, o.name);
    const c = this.caps;
    this.cmdq = new CommandQueue({
      name: o.name, mmio: o.mmio, mem: o.mem, pages: o.pages, kernel: o.kernel, maxLog2: c.cmdqBits, msiPolling: c.msi && c.coherent,
      ...(o.poll === undefined ? {} : { poll: o.poll }),
    });
    const q = { mmio: o.mmio, mem: o.mem, pages: o.pages, kernel: o.kernel };
    this.evtq = new OutputQueueReader({
      ...q, name: `${o.name}-evtq`, layout: EventRecord, entryBytes: EVENT_BYTES, baseReg: SmmuReg.EVENTQ_BASE, prodReg: SmmuReg.EVENTQ_PROD,
      consReg: SmmuReg.EVENTQ_CONS, maxLog2: c.eventqBits, tag: "smmu.evtq",
    });
    this.priq = new OutputQueueReader({
      ...q, name: `${o.name}-priq`, layout: PriEntry, entryBytes: PRI_BYTES, baseReg: SmmuReg.PRIQ_BASE, prodReg: SmmuReg.PRIQ_PROD,
      consReg: SmmuReg.PRIQ_CONS, maxLog2: c.priqBits, tag: "smmu.priq",
    });
    this.strtab = new StreamTable(o.mem, o.pages, c);
    this.asids = new IdAllocator("asid", c.asidBits, o.kernel.faults);
    this.vmids = new IdAllocator("vmid", c.vmidBits, o.kernel.faults);
  }

  get started(): boolean {
    return this.#started;
  }

  /**
   * `arm_smmu_device_reset`: SMMU off; GBPA abort (traffic while disabled
   * is terminated); table and queue attributes (CR1: write-back, inner
   * shareable), CR2 (record invalid StreamIDs, private TLB maintenance);
   * stream table; command queue on, then CFGI_ALL and TLBI_NSNH_ALL so
   * nothing cached from before is used; event queue, PRI queue; interrupts;
   * SMMUEN. Each CR0 step waits for CR0ACK. ENOMEM/ETIMEDOUT/EIO with
   * everything undone.
   */
  start(): void {
    if (this.#started) throw new KernelBug(`${this.name} started twice`);
    this.kernel.faults.inject("smmu.init");
    try {
      this.#writeCr0(0);
      const gbpa = GbpaReg.alloc();
      GbpaReg.set(gbpa, "ABORT", 1);
      GbpaReg.set(gbpa, "UPDATE", 1);
      this.mmio.mmioWrite32(SmmuReg.GBPA, gbpa[0] ?? 0);
      const cr1 = Cr1Reg.alloc();
      for (const f of ["QUEUE_IC", "QUEUE_OC", "TABLE_IC", "TABLE_OC"] as const) Cr1Reg.set(cr1, f, 1);
      Cr1Reg.set(cr1, "QUEUE_SH", 3);
      Cr1Reg.set(cr1, "TABLE_SH", 3);
      writeReg(this.mmio, SmmuReg.CR1, cr1);
      const cr2 = Cr2Reg.alloc();
      Cr2Reg.set(cr2, "RECINVSID", 1);
      Cr2Reg.set(cr2, "PTM", 1);
      writeReg(this.mmio, SmmuReg.CR2, cr2);
      this.strtab.setup(this.mmio);
      this.cmdq.setup();
      let en = Cr0Reg.alloc();
      Cr0Reg.set(en, "CMDQEN", 1);
      this.#writeCr0(en[0] ?? 0);
      this.cmdq.submit([cfgiAll(), tlbiNsnhAll()]);
      this.evtq.setup();
      en = Cr0Reg.alloc();
      Cr0Reg.set(en, "CMDQEN", 1);
      Cr0Reg.set(en, "EVENTQEN", 1);
      if (this.caps.pri) {
        this.priq.setup();
        Cr0Reg.set(en, "PRIQEN", 1);
      }
      this.#writeCr0(en[0] ?? 0);
      this.#enableIrqs();
      Cr0Reg.set(en, "SMMUEN", 1);
      this.#writeCr0(en[0] ?? 0);
    } catch (e) {
      this.#teardown();
      throw e;
    }
    this.#started = true;
    this.kernel.trace.emit("smmu-drv.start", "IOMMU", {}, { unit: this.name, sidBits: this.strtab.sidBits, ssidBits: this.caps.ssidBits, twoLevel: this.strtab.twoLevel });
  }

  /** SMMU off (GBPA aborts), queues and tables freed. Masters must be gone. Cannot fail. */
  stop(): void {
    if (!this.#started) return;
    this.#started = false;
    this.#teardown();
  }

  #teardown(): void {
    try {
      this.#writeCr0(0);
      this.mmio.mmioWrite32(SmmuReg.IRQ_CTRL, 0);
    } catch (e) {
      if (!isKernelError(e)) throw e;
      this.warn("stop", e.message);
    }
    this.priq.free();
    this.evtq.free();
    this.cmdq.free();
    this.strtab.free();
  }

  #writeCr0(v: number): void {
    this.mmio.mmioWrite32(SmmuReg.CR0, v);
    for (let i = 0; i < ACK_POLLS; i++) {
      if (this.mmio.mmioRead32(SmmuReg.CR0ACK) === v) return;
    }
    throw new KernelError(Errno.ETIMEDOUT, `${this.name}: CR0ACK did not follow CR0 = 0x${v.toString(16)} (${JSON.stringify(Cr0AckReg.decode(readReg(this.mmio, SmmuReg.CR0ACK, Cr0AckReg)))})`);
  }

  /** Wired interrupts (IRQ_CFG0 addresses stay 0) for GERROR, the event queue and the PRI queue; waits for IRQ_CTRLACK. */
  #enableIrqs(): void {
    const v = IrqCtrlReg.alloc();
    IrqCtrlReg.set(v, "GERROR_IRQEN", 1);
    IrqCtrlReg.set(v, "EVENTQ_IRQEN", 1);
    if (this.caps.pri) IrqCtrlReg.set(v, "PRIQ_IRQEN", 1);
    writeReg(this.mmio, SmmuReg.IRQ_CTRL, v);
    for (let i = 0; i < ACK_POLLS; i++) if (this.mmio.mmioRead32(SmmuReg.IRQ_CTRLACK) === (v[0] ?? 0)) return;
    throw new KernelError(Errno.ETIMEDOUT, `${this.name}: IRQ_CTRLACK did not follow (${JSON.stringify(IrqCtrlAckReg.decode(readReg(this.mmio, SmmuReg.IRQ_CTRLACK, IrqCtrlAckReg)))})`);
  }

  // ------------------------------------------------------------------ masters

  master(dev: IommuDevice): SmmuMaster {
    const m = this.#masters.get(dev.physical);
    if (m === undefined) throw new KernelError(Errno.ENODEV, `${dev.toString()} is not behind ${this.name}`);
    return m;
  }

  hasMaster(dev: IommuDevice): boolean {
    return this.#masters.has(dev.physical);
  }

  get masters(): IterableIterator<SmmuMaster> {
    return this.#masters.values();
  }

  masterBySid(sid: number): SmmuMaster | undefined {
    for (const m of this.#masters.values()) if (m.sid === sid) return m;
    return undefined;
  }

  /** `arm_smmu_probe_device`: its STE exists (level-2 table made) and aborts. ENODEV (StreamID out of range), EBUSY, ENOMEM. */
  addMaster(dev: IommuDevice): void {
    if (!this.#started) throw new KernelError(Errno.ENODEV, `${this.name} is not started`);
    if (dev.isSubDevice) throw new KernelBug(`${dev.toString()}: sub-devices are not probed`);
    if (this.#masters.has(dev)) throw new KernelError(Errno.EBUSY, `${dev.toString()} is already probed on ${this.name}`);
    for (const m of this.#masters.values()) if (m.sid === dev.sid) throw new KernelError(Errno.EBUSY, `StreamID ${dev.sid} is taken by ${m.dev.toString()}`);
    const fresh = this.strtab.ensure(dev.sid);
    // arm_smmu_probe_device: stalls only where the unit has them and firmware vouches for the master (or the unit forces them).
    const c = this.caps;
    const stallEnabled = c.stallForced || (!c.stallForbidden && this.#firmware?.dmaCanStall(dev.sid) === true);
    const m: SmmuMaster = { dev, sid: dev.sid, ssidBits: Math.min(dev.pasidWidth, c.ssidBits), config: { kind: "abort" }, cd: null, svaBinds: 0, stallEnabled };
    this.#masters.set(dev, m);
    // A new level-2 table: the unit must refetch the L1 descriptor it may have seen invalid.
    if (fresh) this.flush("probe", [cfgiSte(dev.sid)]);
  }

  /** Aborting STE, CD table freed. Cannot fail. */
  removeMaster(dev: IommuDevice): void {
    const m = this.#masters.get(dev);
    if (m === undefined) return;
    m.config = { kind: "abort" };
    m.svaBinds = 0;
    this.installSte(m);
    this.#masters.delete(dev);
    m.cd?.free();
    m.cd = null;
  }

  /** The master's CD table, made on first need. ENOMEM. */
  cdTable(m: SmmuMaster): CdTable {
    m.cd ??= new CdTable(this.mem, this.pages, m.ssidBits, this.caps.twoLevelCdTable);
    return m.cd;
  }

  /** The STE a master's state calls for (`arm_smmu_write_strtab_ent`). */
  steFor(m: SmmuMaster): Uint32Array {
    const v = Ste.alloc();
    Ste.set(v, "V", 1);
    const c = m.config;
    const eats = this.caps.ats ? 1 : 0;
    const cd = m.cd;
    const useCds = cd !== null && (c.kind === "s1" || m.svaBinds > 0);
    if (c.kind === "s2") {
      Ste.set(v, "CONFIG", SteConfig.S2_TRANS);
      Ste.set(v, "EATS", eats);
      Ste.set(v, "S2VMID", c.vmid);
      Ste.set(v, "S2T0SZ", c.s2.t0sz);
      Ste.set(v, "S2SL0", c.s2.sl0);
      Ste.set(v, "S2IR0", 1);
      Ste.set(v, "S2OR0", 1);
      Ste.set(v, "S2SH0", 3);
      Ste.set(v, "S2PS", this.caps.oasCode);
      Ste.set(v, "S2AA64", 1);
      // Protected table walks, as arm_smmu_write_strtab_ent() sets STRTAB_STE_2_S2PTW.
      Ste.set(v, "S2PTW", 1);
      Ste.set(v, "S2R", 1);
      Ste.setAddr(v, "S2TTB", c.s2.ttb);
    } else if (useCds) {
      Ste.set(v, "CONFIG", SteConfig.S1_TRANS);
      Ste.set(v, "S1FMT", cd.fmt);
      Ste.setAddr(v, "S1CONTEXTPTR", cd.base);
      Ste.set(v, "S1CDMAX", cd.bits);
      // Requests without a SubstreamID: CD 0 (the domain's), or the attached identity/blocked behaviour.
      Ste.set(v, "S1DSS", c.kind === "s1" ? S1Dss.SSID0 : c.kind === "bypass" ? S1Dss.BYPASS : S1Dss.TERMINATE);
      Ste.set(v, "S1CIR", 1);
      Ste.set(v, "S1COR", 1);
      Ste.set(v, "S1CSH", 3);
      Ste.set(v, "STRW", Strw.NSEL1);
      Ste.set(v, "EATS", eats);
      // A master that cannot stall must not be stalled by a CD (STE.S1STALLD); not allowed without the stall model.
      if (!this.caps.stallForbidden && !this.caps.stallForced && !m.stallEnabled) Ste.set(v, "S1STALLD", 1);
    } else {
      // Bypass and abort as arm_smmu_write_strtab_ent() writes them: V,
      // Config and SHCFG = incoming. One difference kept: a bypass STE keeps
      // EATS on a unit with ATS. Linux leaves ATS disabled in the device
      // while it is bypassed (arm_smmu_attach_dev() enables it only for a
      // translating domain), so EATS there would be moot; in this model the
      // endpoint's ATS is the PCI layer's to enable and stays on, and with
      // EATS = 0 its translation requests would be aborted.
      Ste.set(v, "CONFIG", c.kind === "bypass" ? SteConfig.BYPASS : SteConfig.ABORT);
      Ste.set(v, "SHCFG", SHCFG_INCOMING);
      if (c.kind === "bypass") Ste.set(v, "EATS", eats);
    }
    return v;
  }

  /** Writes the master's STE and invalidates the cached copy (CFGI_STE + sync). Cannot fail: a refused command is logged. */
  installSte(m: SmmuMaster): void {
    const ste = this.steFor(m);
    this.strtab.writeSte(m.sid, ste);
    this.flush("ste", [cfgiSte(m.sid)]);
    const config = ["abort", "abort", "abort", "abort", "bypass", "s1", "s2", "nested"][Ste.get(ste, "CONFIG")] ?? "?";
    this.kernel.trace.emit("smmu-drv.ste", "IOMMU", { device: m.dev.name }, { unit: this.name, sid: m.sid, config });
  }

  /** Writes a CD and invalidates its cached copy. EINVAL (SSID beyond the table), ENOMEM. */
  writeCd(m: SmmuMaster, ssid: number, cd: Uint32Array): void {
    this.cdTable(m).write(ssid, cd);
    this.flush("cd", [cfgiCd(m.sid, ssid)]);
  }

  /** Clears a CD and invalidates its cached copy. Cannot fail. */
  clearCd(m: SmmuMaster, ssid: number): void {
    if (m.cd === null) return;
    m.cd.clear(ssid);
    this.flush("cd", [cfgiCd(m.sid, ssid)]);
  }

  /** Submits commands whose failure the caller cannot act on (teardown and maintenance): logged, rate-limited. */
  flush(what: string, cmds: readonly Uint32Array[]): void {
    try {
      this.cmdq.submit(cmds);
    } catch (e) {
      if (!isKernelError(e)) throw e;
      this.warn(`flush-${what}`, `${what}: ${e.message}`);
    }
  }

  warn(key: string, message: string): boolean {
    return this.kernel.log.warn(`${this.name}.${key}`, `${this.name}: ${message}`, "IOMMU");
  }
}
