import { Errno, KernelError, type SourceId, type TraceBus, formatBdf, sourceId } from "@vsva/kernel";
import type { EndpointPort, IommuPort, PageGroupResponse } from "../iommu-port.js";
import type { PhysMem } from "@vsva/pgtable";
import { DeviceTlb, type DeviceTlbInvalidation } from "./device-tlb.js";
import { DmaEngine, type DmaEngineOptions, type PasidControl } from "./dma-engine.js";
import { type EndpointConfig, type EndpointConfigOptions, buildEndpointConfig } from "./endpoint-config.js";
import { PageRequestInterface } from "./pri.js";
import "./trace-events.js";

/**
 * A PCIe endpoint function: its configuration space with PASID/ATS/PRI
 * capabilities, its device TLB, its Page Request Interface and a DMA engine,
 * and the {@link EndpointPort} the IOMMU above uses to invalidate the device
 * TLB and deliver page group responses.
 *
 * The endpoint reacts to its configuration as hardware does: Bus Master
 * Enable gates every request, the PASID/ATS/PRI enable bits gate their
 * features, and Initiate Function Level Reset returns the function to its
 * reset state (config registers, device TLB, PRI state, DMA engine).
 */
export interface PciEndpointOptions extends EndpointConfigOptions {
  readonly bus: number;
  readonly dev: number;
  readonly fn: number;
  /** Host physical memory the DMA reaches at translated addresses. */
  readonly mem: PhysMem;
  /** Device TLB entries (default 64). */
  readonly deviceTlbEntries?: number;
  readonly dma?: DmaEngineOptions;
  readonly trace?: TraceBus;
  /** Name in traces; default the BDF. */
  readonly name?: string;
}

const PAGE_SHIFT = 12;

/** One bit of a live register view. */
interface LiveBit {
  readonly view: Uint32Array;
  readonly word: number;
  readonly mask: number;
}

const liveBit = (view: Uint32Array, b: { readonly word: number; readonly mask: number }): LiveBit => ({ view, word: b.word, mask: b.mask });
const bitSet = (b: LiveBit): boolean => ((b.view[b.word] ?? 0) & b.mask) !== 0;

/**
 * The smallest naturally aligned power-of-two range of at least `min` bytes
 * covering `[addr, addr + size)`. Garbage in (NaN, negative) covers from 0.
 */
export function normaliseRange(addr: number, size: number, min: number): { addr: number; size: number } {
  const a = Number.isFinite(addr) && addr > 0 ? addr : 0;
  const end = a + (Number.isFinite(size) && size > 0 ? size : 0);
  let s = min;
  while (s < 2 ** 64 && Math.floor(a / s) * s + s < end) s *= 2;
  return { addr: Math.floor(a / s) * s, size: s };
}

export class PciEndpoint implements EndpointPort {
  readonly sid: SourceId;
  readonly name: string;
  readonly config: EndpointConfig;
  readonly deviceTlb: DeviceTlb;
  readonly pri: PageRequestInterface | undefined;
  readonly dma: DmaEngine;
  readonly #mem: PhysMem;
  readonly #trace: TraceBus | undefined;
  #upstream: IommuPort | undefined;
  /** Function Level Resets performed (for tests and reports). */
  flrCount = 0;

  constructor(opts: PciEndpointOptions) {
    let sid: SourceId;
    try {
      sid = sourceId(opts.bus, opts.dev, opts.fn);
    } catch (e) {
      throw new KernelError(Errno.EINVAL, `endpoint ${opts.bus}:${opts.dev}.${opts.fn} is not a valid bus/device/function`, { cause: e });
    }
    this.sid = sid;
    this.name = opts.name ?? formatBdf(sid);
    this.#mem = opts.mem;
    this.#trace = opts.trace;
    this.config = buildEndpointConfig(opts);
    this.#busMaster = liveBit(this.config.command.view, this.config.command.layout.bit("BUS_MASTER"));
    this.#atsEnable = this.config.ats === undefined ? undefined : liveBit(this.config.ats.view, this.config.ats.layout.bit("ENABLE"));
    const entries = opts.deviceTlbEntries ?? 64;
    if (!Number.isInteger(entries) || entries < 1) {
      throw new KernelError(Errno.EINVAL, `${this.name}: device TLB size must be a positive integer, got ${entries}`);
    }
    this.deviceTlb = new DeviceTlb(`${this.name} device TLB`, entries);
    const priRegs = this.config.pri;
    this.pri =
      priRegs === undefined
        ? undefined
        : new PageRequestInterface({
            sid,
            space: this.config.space,
            ctl: priRegs.ctl,
            outstanding: priRegs.outstanding,
            upstream: () => this.#upstream,
            device: this.name,
            ...(opts.trace === undefined ? {} : { trace: opts.trace }),
          });
    this.dma = new DmaEngine(
      {
        sid,
        device: this.name,
        mem: this.#mem,
        deviceTlb: this.deviceTlb,
        pri: this.pri,
        trace: this.#trace,
        upstream: () => this.#upstream,
        busMasterEnabled: () => this.busMasterEnabled,
        atsEnabled: () => this.atsEnabled,
        pasidControl: () => this.#pasidControl(),
        noteMasterAbort: () => this.config.command.setFlag("RECEIVED_MASTER_ABORT", true),
      },
      opts.dma,
    );
    this.config.space.onWrite(this.config.devCtl, () => {
      if (this.config.devCtl.flag("INITIATE_FLR")) this.functionLevelReset();
    });
    // The function latches its PASID control: decoded once per config write,
    // not on every DMA (which made decoding the dominant cost of a transfer).
    const pasidReg = this.config.pasid;
    if (pasidReg !== undefined) {
      this.config.space.onWrite(pasidReg, () => {
        this.#pasidLatch = null;
      });
    }
  }

  #pasidLatch: PasidControl | undefined | null = null;
  /**
   * Bus Master Enable and ATS Enable as (live register view, word, mask) from
   * their layouts: the DMA engine asks for them on every transfer and page,
   * and a by-name field lookup was a visible share of a 4 KiB DMA. Read live,
   * not latched, so device-side updates (`Register.set`) are seen too.
   */
  readonly #busMaster: LiveBit;
  readonly #atsEnable: LiveBit | undefined;

  #pasidControl(): PasidControl | undefined {
    if (this.#pasidLatch !== null) return this.#pasidLatch;
    const r = this.config.pasid;
    this.#pasidLatch =
      r === undefined ? undefined : { enabled: r.flag("ENABLE"), width: r.get("MAX_PASID_WIDTH"), exec: r.flag("EXEC_ENABLE"), priv: r.flag("PRIV_ENABLE") };
    return this.#pasidLatch;
  }

  // --- wiring ---------------------------------------------------------------

  /** Places the endpoint below an IOMMU (the VT-d unit, later the SMMU). */
  attach(port: IommuPort): void {
    this.#upstream = port;
  }

  detach(): void {
    this.#upstream = undefined;
  }

  get upstream(): IommuPort | undefined {
    return this.#upstream;
  }

  // --- configuration space (what software sees) -----------------------------

  configRead(offset: number, size: number): number {
    return this.config.space.read(offset, size);
  }

  configWrite(offset: number, size: number, value: number): void {
    this.config.space.write(offset, size, value);
  }

  get busMasterEnabled(): boolean {
    return bitSet(this.#busMaster);
  }

  get atsEnabled(): boolean {
    return this.#atsEnable !== undefined && bitSet(this.#atsEnable);
  }

  get pasidEnabled(): boolean {
    return this.config.pasid?.flag("ENABLE") ?? false;
  }

  // --- EndpointPort ----------------------------------------------------------

  /**
   * An ATS invalidation request. It acts whether or not ATS is enabled (the
   * cache may hold entries from before it was disabled). The range is
   * widened to the Smallest Translation Unit and, if malformed (not a power
   * of two, or misaligned), to the smallest aligned power of two covering it:
   * over-invalidating is always safe, and the IOMMU above must never be able
   * to make the device model throw.
   */
  invalidateDeviceTlb(inv: DeviceTlbInvalidation): void {
    if (this.config.ats === undefined) return;
    const { addr, size } = normaliseRange(inv.addr, inv.size, 2 ** (PAGE_SHIFT + this.config.ats.get("STU")));
    const global = inv.global === true;
    const removed = this.deviceTlb.invalidate({
      ...(inv.pasid === undefined ? {} : { pasid: inv.pasid }),
      global,
      addr,
      size,
    });
    this.#trace?.emit(
      "pci.devtlb-invalidate",
      "DEVICE",
      inv.pasid === undefined || global ? { device: this.name } : { device: this.name, hpasid: inv.pasid },
      { addr, size, global, removed },
    );
  }

  /** A page group response. Ignored (like an Unsupported Request) by a function without PRI. */
  pageResponse(resp: PageGroupResponse): void {
    if (resp.sid !== this.sid) return;
    this.pri?.response(resp);
  }

  // --- reset ---------------------------------------------------------------

  /** Initiate Function Level Reset: every register, cache and queue of the function back to reset. */
  functionLevelReset(): void {
    this.flrCount++;
    this.dma.abort();
    this.config.space.reset();
    this.#pasidLatch = null;
    this.deviceTlb.flushAll();
    this.pri?.reset();
  }
}
