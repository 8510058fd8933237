import type { Layout, PhysMem } from "@vsva/pgtable";
import { OutqConsReg, OutqProdReg, QueueBaseReg } from "./regs.js";

/**
 * Circular-queue arithmetic of SMMUv3 (SMMUv3 spec §3.5): a pointer holds
 * an index in bits LOG2SIZE−1:0 and a wrap bit at LOG2SIZE; the queue is
 * empty when PROD and CONS are equal (index and wrap), full when the
 * indexes are equal and the wraps differ. LOG2SIZE above the IDR1 maximum
 * is treated as the maximum.
 */
export class QueueGeometry {
  constructor(
    readonly log2: number,
    readonly base: number,
  ) {}

  static of(baseReg: Uint32Array, maxLog2: number): QueueGeometry {
    return new QueueGeometry(Math.min(QueueBaseReg.get(baseReg, "LOG2SIZE"), maxLog2), QueueBaseReg.getAddr(baseReg, "ADDR"));
  }

  /** Index and wrap bit of a pointer value, as one (LOG2SIZE + 1)-bit counter. */
  pos(ptr: number): number {
    return ptr & (2 * 2 ** this.log2 - 1);
  }

  index(ptr: number): number {
    return ptr & (2 ** this.log2 - 1);
  }

  empty(prod: number, cons: number): boolean {
    return this.pos(prod) === this.pos(cons);
  }

  full(prod: number, cons: number): boolean {
    return this.index(prod) === this.index(cons) && this.pos(prod) !== this.pos(cons);
  }

  next(ptr: number): number {
    return (this.pos(ptr) + 1) & (2 * 2 ** this.log2 - 1);
  }
}

/** What an output queue needs from the unit. */
export interface OutputQueueHooks {
  /** CR0ACK.*QEN. */
  enabled(): boolean;
  /** Raises GERROR.*_ABT_ERR. */
  abort(): void;
  /** The queue's interrupt (when its IRQEN is set). */
  interrupt(): void;
}

/**
 * A queue the SMMU produces into (events, PRI requests): records are
 * written at PROD, which then advances; when the queue is full the record
 * is lost and PROD.OVFLG is toggled, unless an overflow is already
 * signalled and not yet acknowledged (OVFLG ≠ CONS.OVACKFLG). A write that
 * aborts raises the queue's GERROR abort bit and loses the record.
 */
export class OutputQueue<F extends string> {
  readonly stats = { written: 0, overflowed: 0, aborted: 0, dropped: 0 };

  constructor(
    private readonly mem: PhysMem,
    private readonly layout: Layout<F>,
    private readonly entryBytes: number,
    private readonly base: Uint32Array,
    private readonly prod: Uint32Array,
    private readonly cons: Uint32Array,
    private readonly maxLog2: number,
    private readonly hooks: OutputQueueHooks,
  ) {}

  /** Writes a record; "written", "overflow", "abort" or "disabled". */
  push(record: Uint32Array): "written" | "overflow" | "abort" | "disabled" {
    if (!this.hooks.enabled()) {
      this.stats.dropped++;
      return "disabled";
    }
    const g = QueueGeometry.of(this.base, this.maxLog2);
    const p = OutqProdReg.get(this.prod, "WR");
    const c = OutqConsReg.get(this.cons, "RD");
    if (g.full(p, c)) {
      this.stats.overflowed++;
      if (OutqProdReg.get(this.prod, "OVFLG") === OutqConsReg.get(this.cons, "OVACKFLG")) {
        OutqProdReg.set(this.prod, "OVFLG", OutqProdReg.get(this.prod, "OVFLG") ^ 1);
        this.hooks.interrupt();
      }
      return "overflow";
    }
    if (!this.layout.write(this.mem, g.base + g.index(p) * this.entryBytes, record)) {
      this.stats.aborted++;
      this.hooks.abort();
      return "abort";
    }
    OutqProdReg.set(this.prod, "WR", g.next(p));
    this.stats.written++;
    this.hooks.interrupt();
    return "written";
  }
}
