import { Errno, type Kernel, KernelError } from "@vsva/kernel";
import { type Layout, OutqConsReg, OutqProdReg, type PhysMem } from "@vsva/iommu-hw";
import type { PageAllocator } from "@vsva/iommu-core";
import { type Mmio, programQueue, readReg, writeReg } from "./mmio.js";

export interface OutputQueueOptions<F extends string> {
  readonly name: string;
  readonly mmio: Mmio;
  readonly mem: PhysMem;
  readonly pages: PageAllocator;
  readonly kernel: Kernel;
  readonly layout: Layout<F>;
  readonly entryBytes: number;
  /** Register offsets of *_BASE, *_PROD and *_CONS (PROD/CONS on page 1). */
  readonly baseReg: number;
  readonly prodReg: number;
  readonly consReg: number;
  /** IDR1's maximum, and our cap (entries of one page by default). */
  readonly maxLog2: number;
  readonly tag: string;
}

/**
 * A queue the SMMU produces into (event queue, PRI queue), driver side:
 * allocated from the page allocator, programmed into *_BASE with PROD and
 * CONS zeroed, and drained by `drain`, which hands every record from CONS
 * up to PROD to a handler and publishes CONS after each one. An overflow
 * (PROD.OVFLG toggled; records were lost) is counted and acknowledged by
 * copying OVFLG into CONS.OVACKFLG (`queue_sync_cons_ovf`).
 */
export class OutputQueueReader<F extends string> {
  #base = -1;
  #log2 = 0;
  readonly #o: OutputQueueOptions<F>;
  readonly #rec: Uint32Array;
  readonly stats = { records: 0, overflows: 0 };

  constructor(o: OutputQueueOptions<F>) {
    this.#o = o;
    this.#rec = o.layout.alloc();
  }

  get enabled(): boolean {
    return this.#base >= 0;
  }

  /** ENOMEM. The queue must be disabled in CR0. */
  setup(): void {
    const o = this.#o;
    if (this.#base >= 0) throw new KernelError(Errno.EBUSY, `${o.name}: queue already set up`);
    const log2 = Math.min(o.maxLog2, Math.log2(4096 / o.entryBytes));
    const base = o.pages.allocPage(o.tag);
    programQueue(o.mmio, { base: o.baseReg, prod: o.prodReg, cons: o.consReg }, base, log2);
    this.#log2 = log2;
    this.#base = base;
  }

  /** Frees the queue; its enable bit in CR0 must be clear. Cannot fail. */
  free(): void {
    if (this.#base < 0) return;
    this.#o.pages.freePages(this.#base);
    this.#base = -1;
  }

  /** Consumes every record; returns how many. Handlers must not throw. */
  drain(handle: (rec: Uint32Array) => void): number {
    if (this.#base < 0) return 0;
    const o = this.#o;
    const mask = 2 ** (this.#log2 + 1) - 1;
    let n = 0;
    for (;;) {
      const prod = readReg(o.mmio, o.prodReg, OutqProdReg);
      const consV = readReg(o.mmio, o.consReg, OutqConsReg);
      const p = OutqProdReg.get(prod, "WR") & mask;
      const c = OutqConsReg.get(consV, "RD") & mask;
      const ovf = OutqProdReg.get(prod, "OVFLG");
      if (ovf !== OutqConsReg.get(consV, "OVACKFLG")) {
        this.stats.overflows++;
        o.kernel.log.warn(`${o.name}.overflow`, `${o.name}: queue overflow, records lost`, "IOMMU");
        OutqConsReg.set(consV, "OVACKFLG", ovf);
        writeReg(o.mmio, o.consReg, consV);
      }
      if (p === c) break;
      const at = this.#base + (c & (2 ** this.#log2 - 1)) * o.entryBytes;
      if (o.layout.read(o.mem, at, this.#rec)) handle(this.#rec);
      OutqConsReg.set(consV, "RD", (c + 1) & mask);
      writeReg(o.mmio, o.consReg, consV);
      n++;
    }
    this.stats.records += n;
    return n;
  }
}
