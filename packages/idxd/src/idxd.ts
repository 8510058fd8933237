import { Errno, type HostPasid, type Kernel, KernelError, asHostPasid } from "@vsva/kernel";
import type { IommuCore, IommuDevice } from "@vsva/iommu-core";
import {
  DSA_TABLE_MULT,
  DsaCmd,
  DsaCmdErr,
  DsaCmdSts,
  DsaCommand,
  type DsaDevice,
  DsaDeviceState,
  DsaEngCap,
  DsaGenCap,
  DsaGenSts,
  DsaGrpCap,
  DsaGrpCfg,
  DsaOffsets,
  DsaReg,
  DsaWqCap,
  DsaWqCfg,
  WqMode,
  WqState,
} from "@vsva/dsa";
import "./trace-events.js";

/** How software uses a WQ (drivers/dma/idxd/idxd.h: enum idxd_wq_type). */
export type IdxdWqType = "kernel" | "user" | "mdev";

/** One WQ as the administrator configures it (the sysfs attributes of drivers/dma/idxd/sysfs.c, or accel-config). */
export interface IdxdWqConfig {
  readonly mode: "dedicated" | "shared";
  /** WQCFG.WQ_SIZE: entries of the device's total this WQ gets. */
  readonly size: number;
  readonly type: IdxdWqType;
  /** 0..15 (default 10). */
  readonly priority?: number;
  /** Block on fault: a descriptor's BOF flag is honoured (needs GENCAP.BLOCK_ON_FAULT). */
  readonly bof?: boolean;
  /** Shared WQ: entries limited-portal submissions may fill (default the size). */
  readonly threshold?: number;
  /** Largest transfer as 2^shift (default the device's GENCAP.MAX_XFER_SHIFT). */
  readonly maxXferShift?: number;
  /** The group the WQ belongs to (default 0). */
  readonly group?: number;
  readonly name?: string;
}

export interface IdxdConfig {
  /** WQ i gets entry i; the device's other WQs stay unconfigured. */
  readonly wqs: readonly IdxdWqConfig[];
  /** Engines given to group 0 (default every engine of ENGCAP). */
  readonly engines?: number;
}

/**
 * What the driver touches of the function: BAR0's registers and the WQ
 * portals (and, for a device model that only runs when stepped, a way to
 * let it run). A `DsaDevice` is one; so is a guest's view of an mdev, whose
 * register accesses the VMM forwards to the mdev's VFIO regions.
 */
export interface IdxdHw {
  readonly mode: "immediate" | "stepwise";
  run(): void;
  mmioRead32(offset: number): number;
  mmioRead64(offset: number): bigint;
  mmioWrite32(offset: number, value: number): void;
  /** A 64-byte store to WQ `wq`'s portal. */
  movdir64b(wq: number, bytes: Uint8Array): void;
  enqcmd(wq: number, bytes: Uint8Array): "accepted" | "retry";
}

export interface IdxdProbeOptions<H extends IdxdHw = DsaDevice> {
  readonly kernel: Kernel;
  /** The IOMMU core the device was probed in (SVA binds go through it). */
  readonly core: IommuCore;
  /** The device as the IOMMU core knows it. */
  readonly iommuDev: IommuDevice;
  /** The function's BAR0 and portals. */
  readonly hw: H;
  readonly config: IdxdConfig;
  /** Device name ("dsa0"); default the IOMMU device's. */
  readonly name?: string;
  /** Rounds of "let the machine run" a command may take before the driver gives up (default 64). */
  readonly commandRounds?: number;
}

/** What the capability registers said at probe (drivers/dma/idxd/init.c: idxd_read_caps()). */
export interface IdxdCaps {
  readonly blockOnFault: boolean;
  readonly maxXferShift: number;
  readonly totalWqSize: number;
  readonly numWqs: number;
  readonly sharedMode: boolean;
  readonly dedicatedMode: boolean;
  readonly numGroups: number;
  readonly numEngines: number;
  readonly wqcfgOffset: number;
  readonly grpcfgOffset: number;
}

/** Names of CMDSTS.ERR codes, for messages (drivers/dma/idxd/registers.h: IDXD_CMDSTS_*). */
const CMD_ERR_NAMES: ReadonlyMap<number, string> = new Map(Object.entries(DsaCmdErr).map(([k, v]) => [v, k]));
const CMD_NAMES: ReadonlyMap<number, string> = new Map(Object.entries(DsaCommand).map(([k, v]) => [v, k]));
const DEFAULT_PRIORITY = 10;
const MAX_PRIORITY = 15;

function cmdErrName(err: number): string {
  return `${CMD_ERR_NAMES.get(err) ?? "unknown"} (0x${err.toString(16).padStart(2, "0")})`;
}

/**
 * The host driver of one accelerator (drivers/dma/idxd/: init.c probe,
 * device.c WQ and device control). Everything goes through BAR0 as the
 * driver does it: commands written to CMD and CMDSTS polled until not
 * active, WQCFG and GRPCFG written dword by dword, capabilities read back.
 *
 * Errors are the errnos idxd returns: a command the device refuses is ENXIO
 * with the CMDSTS code in the message (device.c: idxd_wq_enable(),
 * idxd_device_enable() and friends all map a failed status to -ENXIO); a
 * configuration the device cannot take is EINVAL before anything is written
 * (sysfs.c: the wq_size/priority/threshold stores and idxd_engines_setup()).
 */
export class Idxd<H extends IdxdHw = DsaDevice> {
  readonly name: string;
  readonly hw: H;
  readonly iommuDev: IommuDevice;
  readonly core: IommuCore;
  readonly kernel: Kernel;
  readonly caps: IdxdCaps;
  readonly #rounds: number;
  readonly #wqs: IdxdWq[] = [];
  readonly #files = new Set<{ close(): void }>();
  #svaByUs = false;
  #state: "enabled" | "removed" = "enabled";

  /**
   * idxd_pci_probe(): reset, read the capabilities, enable SVA on the
   * function, write the group and WQ configuration, enable the device, then
   * each configured WQ. All or nothing: on any error the device is reset,
   * SVA is disabled again if probe enabled it, and the error is thrown.
   */
  static probe<H extends IdxdHw = DsaDevice>(o: IdxdProbeOptions<H>): Idxd<H> {
    return new Idxd(o);
  }

  private constructor(o: IdxdProbeOptions<H>) {
    this.kernel = o.kernel;
    this.core = o.core;
    this.iommuDev = o.iommuDev;
    this.hw = o.hw;
    this.name = o.name ?? o.iommuDev.name;
    this.#rounds = o.commandRounds ?? 64;
    this.kernel.scheduler.atomic.mightSleep("idxd_pci_probe");
    // Before anything, a reset: a previous owner may have left it enabled (init.c: idxd_device_init_reset()).
    if (this.#gensts() === DsaDeviceState.HALT) throw new KernelError(Errno.ENXIO, `${this.name}: device is halted`);
    this.#exec(DsaCommand.RESET_DEVICE, 0, "reset");
    this.caps = this.#readCaps();
    checkConfig(this.name, this.caps, o.config);
    try {
      // Shared WQs and user WQs need PASIDs: SVA on the function (init.c: idxd_enable_sva()).
      if (!this.iommuDev.hasFeature("sva")) {
        this.core.enableFeature(this.iommuDev, "sva", {});
        this.#svaByUs = true;
      }
      this.kernel.faults.inject("idxd.alloc");
      o.config.wqs.forEach((c, i) => this.#wqs.push(new IdxdWq(this, i, c)));
      this.#writeConfig(o.config);
      this.#exec(DsaCommand.ENABLE_DEVICE, 0, "enable device");
      for (const wq of this.#wqs) wq.enable();
    } catch (e) {
      this.#undoProbe();
      throw e;
    }
  }

  #undoProbe(): void {
    this.hw.mmioWrite32(DsaReg.CMD, encodeCmd(DsaCommand.RESET_DEVICE, 0));
    this.#runMachine();
    if (this.#svaByUs) this.core.disableFeature(this.iommuDev, "sva");
    this.#svaByUs = false;
    this.#wqs.length = 0;
  }

  get state(): "enabled" | "removed" {
    return this.#state;
  }

  /** The configured WQs, by index. */
  get wqs(): readonly IdxdWq[] {
    return this.#wqs;
  }

  /** WQ `id`; ENODEV when no such WQ was configured. */
  wq(id: number): IdxdWq {
    const wq = Number.isInteger(id) ? this.#wqs[id] : undefined;
    if (wq === undefined || this.#state !== "enabled") throw new KernelError(Errno.ENODEV, `${this.name}: no work queue ${String(id)}`);
    return wq;
  }

  /**
   * idxd_remove(): closes every user file still open (each drains and
   * unbinds), disables each WQ and the device, resets it and disables SVA
   * if probe enabled it. Cannot fail: a command the device refuses is
   * logged and teardown goes on.
   */
  remove(): void {
    if (this.#state === "removed") return;
    this.kernel.scheduler.atomic.mightSleep("idxd_remove");
    for (const f of [...this.#files]) f.close();
    for (const wq of this.#wqs) this.#quietly(() => wq.disable());
    this.#quietly(() => this.#exec(DsaCommand.DISABLE_DEVICE, 0, "disable device"));
    this.#quietly(() => this.#exec(DsaCommand.RESET_DEVICE, 0, "reset"));
    if (this.#svaByUs) this.core.disableFeature(this.iommuDev, "sva");
    this.#svaByUs = false;
    this.#state = "removed";
  }

  #quietly(fn: () => void): void {
    try {
      fn();
    } catch (e) {
      if (!(e instanceof KernelError)) throw e;
      this.kernel.log.warn(`idxd:${this.name}:remove`, `${this.name}: ${e.message}`, "DEVICE");
    }
  }

  /** @internal user files register so remove() can close them. */
  track(f: { close(): void }, open: boolean): void {
    if (open) this.#files.add(f);
    else this.#files.delete(f);
  }

  // --- registers ---------------------------------------------------------------

  #gensts(): number {
    return DsaGenSts.get(Uint32Array.of(this.hw.mmioRead32(DsaReg.GENSTS)), "STATE");
  }

  #read64(off: number): Uint32Array {
    const v = this.hw.mmioRead64(off);
    return Uint32Array.of(Number(v & 0xffff_ffffn), Number(v >> 32n));
  }

  #readCaps(): IdxdCaps {
    const gencap = this.#read64(DsaReg.GENCAP);
    const wqcap = this.#read64(DsaReg.WQCAP);
    const grpcap = this.#read64(DsaReg.GRPCAP);
    const engcap = this.#read64(DsaReg.ENGCAP);
    const offsets = Uint32Array.of(this.hw.mmioRead32(DsaReg.OFFSETS), this.hw.mmioRead32(DsaReg.OFFSETS + 4));
    return {
      blockOnFault: DsaGenCap.get(gencap, "BLOCK_ON_FAULT") === 1,
      maxXferShift: DsaGenCap.get(gencap, "MAX_XFER_SHIFT"),
      totalWqSize: DsaWqCap.get(wqcap, "TOTAL_WQ_SIZE"),
      numWqs: DsaWqCap.get(wqcap, "NUM_WQS"),
      sharedMode: DsaWqCap.get(wqcap, "SHARED_MODE") === 1,
      dedicatedMode: DsaWqCap.get(wqcap, "DEDICATED_MODE") === 1,
      numGroups: DsaGrpCap.get(grpcap, "NUM_GROUPS"),
      numEngines: DsaEngCap.get(engcap, "NUM_ENGINES"),
      // Table offsets are in units of 0x100 (registers.h: IDXD_TABLE_MULT).
      wqcfgOffset: DsaOffsets.get(offsets, "WQCFG") * DSA_TABLE_MULT,
      grpcfgOffset: DsaOffsets.get(offsets, "GRPCFG") * DSA_TABLE_MULT,
    };
  }

  /** Byte offset of dword `dword` of WQ `wq`'s WQCFG (registers.h: WQCFG_OFFSET(); 32-byte entries in DSA 1.0). */
  wqcfgReg(wq: number, dword: number): number {
    return this.caps.wqcfgOffset + wq * DsaWqCfg.dwords * 4 + dword * 4;
  }

  /** The WQ's WQCFG as the device holds it now. */
  readWqcfg(wq: number): Uint32Array {
    const v = DsaWqCfg.alloc();
    for (let i = 0; i < v.length; i++) v[i] = this.hw.mmioRead32(this.wqcfgReg(wq, i));
    return v;
  }

  /** Writes WQCFG dwords [from, to) from `v` (device.c: idxd_wq_config_write() writes dword by dword). */
  writeWqcfg(wq: number, v: Uint32Array, from = 0, to = v.length): void {
    for (let i = from; i < to; i++) this.hw.mmioWrite32(this.wqcfgReg(wq, i), v[i] ?? 0);
  }

  /** device.c: idxd_device_config(): GRPCFG (WQ and engine bitmaps), then each WQ's WQCFG. */
  #writeConfig(c: IdxdConfig): void {
    const groups = new Map<number, number>();
    c.wqs.forEach((w, i) => groups.set(w.group ?? 0, ((groups.get(w.group ?? 0) ?? 0) | (1 << i)) >>> 0));
    const engines = c.engines ?? this.caps.numEngines;
    for (let g = 0; g < this.caps.numGroups; g++) {
      const v = DsaGrpCfg.alloc();
      DsaGrpCfg.set(v, "WQS", groups.get(g) ?? 0);
      // Every engine goes to group 0; TC-A 0 and TC-B 1 are the defaults (device.c: idxd_group_flags_setup()).
      DsaGrpCfg.set(v, "ENGINES", g === 0 ? (2 ** engines - 1) >>> 0 : 0);
      DsaGrpCfg.set(v, "TC_B", 1);
      const base = this.caps.grpcfgOffset + g * DsaGrpCfg.dwords * 4;
      for (let i = 0; i < v.length; i++) this.hw.mmioWrite32(base + 4 * i, v[i] ?? 0);
    }
    for (const wq of this.#wqs) wq.writeConfig();
  }

  // --- commands ----------------------------------------------------------------

  /**
   * device.c: idxd_cmd_exec(): write CMD, wait until CMDSTS.ACTIVE clears,
   * return CMDSTS.ERR. While a command waits (a drain behind a descriptor
   * blocked on a page request), the driver sleeps: the machine's deferred
   * work runs (the IOMMU's page-request handling, a stepwise engine).
   * ETIMEDOUT when the device stays busy through every round.
   */
  command(command: number, operand: number): number {
    this.hw.mmioWrite32(DsaReg.CMD, encodeCmd(command, operand));
    for (let round = 0; ; round++) {
      const sts = Uint32Array.of(this.hw.mmioRead32(DsaReg.CMDSTS));
      if (DsaCmdSts.get(sts, "ACTIVE") === 0) return DsaCmdSts.get(sts, "ERR");
      if (round >= this.#rounds) {
        throw new KernelError(Errno.ETIMEDOUT, `${this.name}: command ${CMD_NAMES.get(command) ?? command} still active after ${this.#rounds} rounds`);
      }
      this.#runMachine();
    }
  }

  #runMachine(): void {
    if (this.hw.mode === "stepwise") this.hw.run();
    this.kernel.scheduler.runUntilIdle();
  }

  /** Runs a command; any error status is ENXIO naming it, as device.c does. `ok` lists statuses that count as success. */
  #exec(command: number, operand: number, what: string, ok: readonly number[] = []): void {
    const err = this.command(command, operand);
    if (err !== DsaCmdErr.SUCCESS && !ok.includes(err)) throw new KernelError(Errno.ENXIO, `${this.name}: ${what} failed: ${cmdErrName(err)}`);
  }

  /** @internal for IdxdWq. */
  exec(command: number, operand: number, what: string, ok: readonly number[] = []): void {
    this.#exec(command, operand, what, ok);
  }
}

function encodeCmd(command: number, operand: number): number {
  return DsaCmd.encode({ COMMAND: command, OPERAND: operand })[0] ?? 0;
}

/** The operand naming one WQ in DISABLE/DRAIN/ABORT/RESET_WQ: a bit in a group of 16 (device.c: idxd_wq_disable()). */
export function wqMaskOperand(id: number): number {
  return ((1 << id % 16) | (Math.floor(id / 16) << 16)) >>> 0;
}

/** Rejects a configuration the device cannot take, before anything is written. EINVAL (EOPNOTSUPP for a mode or BOF the device lacks). */
function checkConfig(name: string, caps: IdxdCaps, c: IdxdConfig): void {
  const bad = (what: string): never => {
    throw new KernelError(Errno.EINVAL, `${name}: ${what}`);
  };
  const list: unknown = (c as unknown as { wqs?: unknown } | null)?.wqs;
  if (!Array.isArray(list)) bad("configuration has no WQ list");
  if (c.wqs.length === 0) bad("no work queue configured");
  if (c.wqs.length > caps.numWqs) bad(`${c.wqs.length} work queues configured, the device has ${caps.numWqs}`);
  const engines = c.engines ?? caps.numEngines;
  if (!Number.isInteger(engines) || engines < 1 || engines > caps.numEngines) bad(`${String(engines)} engines (1..${caps.numEngines})`);
  let total = 0;
  c.wqs.forEach((w, i) => {
    const at = `wq${i}`;
    // The configuration comes from an administrator (sysfs strings): check what TypeScript cannot.
    const mode: unknown = w.mode;
    const type: unknown = w.type;
    if (mode !== "dedicated" && mode !== "shared") bad(`${at}: mode ${String(mode)}`);
    if (type !== "kernel" && type !== "user" && type !== "mdev") bad(`${at}: type ${String(type)}`);
    if (w.mode === "shared" && !caps.sharedMode) throw new KernelError(Errno.EOPNOTSUPP, `${name}: ${at}: the device has no shared WQs`);
    if (w.mode === "dedicated" && !caps.dedicatedMode) throw new KernelError(Errno.EOPNOTSUPP, `${name}: ${at}: the device has no dedicated WQs`);
    if (!Number.isInteger(w.size) || w.size < 1) bad(`${at}: size ${String(w.size)}`);
    total += w.size;
    const prio = w.priority ?? DEFAULT_PRIORITY;
    if (!Number.isInteger(prio) || prio < 0 || prio > MAX_PRIORITY) bad(`${at}: priority ${String(prio)} (0..${MAX_PRIORITY})`);
    if (w.bof === true && !caps.blockOnFault) throw new KernelError(Errno.EOPNOTSUPP, `${name}: ${at}: the device cannot block on faults`);
    if (w.threshold !== undefined) {
      if (w.mode !== "shared") bad(`${at}: a threshold is for shared WQs`);
      if (!Number.isInteger(w.threshold) || w.threshold < 0 || w.threshold > w.size) bad(`${at}: threshold ${String(w.threshold)} above size ${w.size}`);
    }
    const x = w.maxXferShift ?? caps.maxXferShift;
    if (!Number.isInteger(x) || x < 1 || x > caps.maxXferShift) bad(`${at}: max transfer shift ${String(x)} (1..${caps.maxXferShift})`);
    const g = w.group ?? 0;
    if (!Number.isInteger(g) || g < 0 || g >= caps.numGroups) bad(`${at}: group ${String(g)} (0..${caps.numGroups - 1})`);
    // Only group 0 gets engines: a WQ in another group would never run (device.c: idxd_engines_setup() refuses a group without engines).
    if (g !== 0) bad(`${at}: group ${g} has no engine`);
  });
  if (total > caps.totalWqSize) bad(`WQ sizes add up to ${total}, the device has ${caps.totalWqSize} entries`);
}

/**
 * One hardware work queue (struct idxd_wq). Satisfies the shape a VDCM
 * borrows a WQ through: its id, mode and size, the PASID WQCFG holds (read
 * back from the register), setting and clearing that PASID with the WQ
 * disabled around the write, a drain, and the portal.
 */
export class IdxdWq {
  readonly id: number;
  readonly mode: "dedicated" | "shared";
  readonly size: number;
  readonly type: IdxdWqType;
  readonly config: IdxdWqConfig;
  readonly idxd: Idxd<IdxdHw>;
  /** @internal openers of this WQ's char device. */
  clients = 0;

  constructor(idxd: Idxd<IdxdHw>, id: number, c: IdxdWqConfig) {
    this.idxd = idxd;
    this.id = id;
    this.mode = c.mode;
    this.size = c.size;
    this.type = c.type;
    this.config = c;
  }

  get name(): string {
    return this.config.name ?? `wq${this.idxd.name.replace(/^[a-z]+/, "")}.${this.id}`;
  }

  /** Whether WQCFG.STATE says enabled. */
  get enabled(): boolean {
    return DsaWqCfg.get(this.idxd.readWqcfg(this.id), "STATE") === WqState.ENABLED;
  }

  /** What WQCFG holds now, read back from the register: the PASID when PASID_EN is set, else null. */
  get pasid(): HostPasid | null {
    const v = this.idxd.readWqcfg(this.id);
    return DsaWqCfg.get(v, "PASID_EN") === 1 ? asHostPasid(DsaWqCfg.get(v, "PASID")) : null;
  }

  /** Whether WQCFG.PRIV is set (supervisor requests on a dedicated WQ). */
  get priv(): boolean {
    return DsaWqCfg.get(this.idxd.readWqcfg(this.id), "PRIV") === 1;
  }

  /** @internal device.c: idxd_wq_config_write(). */
  writeConfig(): void {
    const c = this.config;
    const v = DsaWqCfg.encode({
      SIZE: c.size,
      THRESHOLD: c.threshold ?? (c.mode === "shared" ? c.size : 0),
      MODE: c.mode === "dedicated" ? WqMode.DEDICATED : WqMode.SHARED,
      BOF: c.bof === true ? 1 : 0,
      PRIORITY: c.priority ?? DEFAULT_PRIORITY,
      // A shared WQ takes each descriptor's PASID from its ENQCMD payload but must have PASID_EN; a
      // dedicated WQ gets its PASID when someone programs one (the cdev's open, the VDCM).
      PASID_EN: c.mode === "shared" ? 1 : 0,
      // Kernel WQs submit as supervisor (device.c: idxd_wq_config_write(): priv = type == KERNEL).
      PRIV: c.type === "kernel" ? 1 : 0,
      MAX_XFER_SHIFT: c.maxXferShift ?? this.idxd.caps.maxXferShift,
    });
    this.idxd.writeWqcfg(this.id, v);
  }

  /** device.c: idxd_wq_enable(). ENXIO when the device refuses (CMDSTS code in the message). */
  enable(): void {
    this.idxd.exec(DsaCommand.ENABLE_WQ, this.id, `enable ${this.name}`, [DsaCmdErr.WQ_ENABLED]);
  }

  /** device.c: idxd_wq_disable(): waits for descriptors in flight (the device completes DISABLE_WQ once the WQ is idle). A disabled WQ is left alone. */
  disable(): void {
    if (!this.enabled) return;
    this.idxd.exec(DsaCommand.DISABLE_WQ, wqMaskOperand(this.id), `disable ${this.name}`);
  }

  /** DRAIN_WQ: returns when every descriptor submitted before it has completed (runs the device until then). A disabled WQ has nothing to drain. */
  drain(): void {
    this.idxd.kernel.scheduler.atomic.mightSleep("idxd_wq_drain");
    if (!this.enabled) return;
    this.idxd.exec(DsaCommand.DRAIN_WQ, wqMaskOperand(this.id), `drain ${this.name}`);
  }

  /**
   * DRAIN_PASID (device.c: idxd_device_drain_pasid()): returns when every
   * descriptor of `pasid` submitted before it has completed, in every WQ of
   * the device; other PASIDs keep running. EINVAL for a PASID that does not
   * fit 20 bits; ENXIO when the device refuses.
   */
  drainPasid(pasid: HostPasid): void {
    if (!Number.isInteger(pasid) || pasid < 0 || pasid >= 1 << 20) throw new KernelError(Errno.EINVAL, `${this.name}: PASID ${String(pasid)} does not fit 20 bits`);
    this.idxd.kernel.scheduler.atomic.mightSleep("idxd_device_drain_pasid");
    this.idxd.exec(DsaCommand.DRAIN_PASID, pasid, `drain PASID ${pasid}`);
  }

  /**
   * Dedicated WQ only: disable, write WQCFG.PASID with PASID_EN (and PRIV as
   * given), enable (device.c: idxd_wq_set_pasid()). EINVAL on a shared WQ or
   * a PASID that does not fit 20 bits; ENXIO when the device refuses a step
   * (the WQ is then left disabled, as in Linux).
   */
  setPasid(pasid: HostPasid, priv = false): void {
    if (this.mode !== "dedicated") throw new KernelError(Errno.EINVAL, `${this.name}: a shared WQ takes its PASID from each ENQCMD`);
    if (!Number.isInteger(pasid) || pasid < 0 || pasid >= 1 << 20) throw new KernelError(Errno.EINVAL, `${this.name}: PASID ${String(pasid)} does not fit 20 bits`);
    if (typeof priv !== "boolean") throw new KernelError(Errno.EINVAL, `${this.name}: priv must be a boolean`);
    this.idxd.kernel.scheduler.atomic.mightSleep("idxd_wq_set_pasid");
    this.disable();
    const v = this.idxd.readWqcfg(this.id);
    DsaWqCfg.set(v, "PASID", pasid);
    DsaWqCfg.set(v, "PASID_EN", 1);
    DsaWqCfg.set(v, "PRIV", priv ? 1 : 0);
    this.#writePasidDword(v);
    try {
      this.enable();
    } catch (e) {
      // The WQ stays disabled, as in Linux, but keeps nothing of a PASID nobody will clear.
      DsaWqCfg.set(v, "PASID", 0);
      DsaWqCfg.set(v, "PASID_EN", 0);
      DsaWqCfg.set(v, "PRIV", this.type === "kernel" ? 1 : 0);
      this.#writePasidDword(v);
      throw e;
    }
    this.idxd.kernel.trace.emit("idxd.wq.set-pasid", "DEVICE", { hpasid: pasid }, { device: this.idxd.name, wq: this.id, priv });
  }

  /**
   * Quiesce then clear: drain, disable, clear PASID and PASID_EN (and PRIV
   * unless this is a kernel WQ), enable again (device.c: idxd_wq_disable()
   * then idxd_wq_disable_pasid()). Leaves nothing of the old PASID in the
   * WQ. A shared WQ is only drained (its WQCFG holds no PASID of anyone).
   */
  clearPasid(): void {
    this.idxd.kernel.scheduler.atomic.mightSleep("idxd_wq_disable_pasid");
    this.drain();
    if (this.mode !== "dedicated") return;
    const old = this.pasid;
    this.disable();
    const v = this.idxd.readWqcfg(this.id);
    DsaWqCfg.set(v, "PASID", 0);
    DsaWqCfg.set(v, "PASID_EN", 0);
    DsaWqCfg.set(v, "PRIV", this.type === "kernel" ? 1 : 0);
    this.#writePasidDword(v);
    if (old !== null) this.idxd.kernel.trace.emit("idxd.wq.clear-pasid", "DEVICE", { hpasid: old }, { device: this.idxd.name, wq: this.id });
    this.enable();
  }

  /** Writes the dword holding PASID, PASID_EN and PRIV (registers.h: WQCFG_PASID_IDX = WQCFG_PRIVL_IDX = 2). */
  #writePasidDword(v: Uint32Array): void {
    const d = Math.floor(DsaWqCfg.spec("PASID").lsb / 32);
    this.idxd.writeWqcfg(this.id, v, d, d + 1);
  }

  /** The portal a submitter's MOVDIR64B lands on: posted, nothing comes back. */
  movdir64b(desc: Uint8Array): void {
    this.idxd.hw.movdir64b(this.id, desc);
  }

  /** The portal an ENQCMD lands on: the payload already carries the PASID the CPU put there. */
  enqcmd(desc: Uint8Array): "accepted" | "retry" {
    return this.idxd.hw.enqcmd(this.id, desc);
  }
}
