import type { EventSource } from "./events.js";
import type { RegisterFile } from "../mmio/register-file.js";
import { FrcdReg, FstsReg, RegOffset } from "./regs.js";
import { pageField } from "../page-field.js";

/** What the unit knows about a fault it must record (VT-d §10.4 FRCD). */
export interface FaultRecord {
  readonly sid: number;
  /** Present for requests with a PASID (PP=1). */
  readonly pasid?: number;
  readonly priv: boolean;
  readonly exec: boolean;
  readonly write: boolean;
  /** Faulting address (sign-extended when bit 63 is set); FI keeps bits 63:12. */
  readonly addr: number;
  readonly reason: number;
  /** PCIe AT of the request: 0 untranslated, 1 translation request. */
  readonly at: number;
}

const FSTS_EVENT_BITS = ["PFO", "PPF", "IQE", "ICE", "ITE"] as const;

/**
 * Primary fault logging: FSTS and the FRCD ring (QEMU's "next free record"
 * model, VT-d spec chapter 7 and appendix A). A record goes into the register at the internal
 * index; if that register still holds an unserviced fault (F=1) the new fault
 * is dropped and PFO set. PPF is the OR of every F bit; FRI points at the
 * oldest pending record. A fault event is raised when a status condition
 * appears while none was pending, and dropped once software has serviced them all.
 */
export class FaultRecorder {
  readonly #fsts: Uint32Array;
  readonly #frcd: Uint32Array[] = [];
  #next = 0;
  readonly stats = { recorded: 0, overflowed: 0 };

  constructor(
    regs: RegisterFile,
    readonly frcdOffset: number,
    count: number,
    private readonly event: EventSource,
  ) {
    this.#fsts = regs.define(RegOffset.FSTS, FstsReg);
    for (let i = 0; i < count; i++) this.#frcd.push(regs.define(frcdOffset + 16 * i, FrcdReg));
  }

  get count(): number {
    return this.#frcd.length;
  }

  /** Records a fault; false when it was dropped for overflow. */
  record(f: FaultRecord): boolean {
    const idle = !this.#anyStatus();
    const r = this.#frcd[this.#next];
    if (r === undefined || FrcdReg.get(r, "F") === 1) {
      FstsReg.set(this.#fsts, "PFO", 1);
      this.stats.overflowed++;
      if (idle) this.event.raise();
      return false;
    }
    r.fill(0);
    FrcdReg.set(r, "FI", pageField(f.addr));
    FrcdReg.set(r, "SID", f.sid & 0xffff);
    if (f.pasid !== undefined) {
      FrcdReg.set(r, "PP", 1);
      FrcdReg.set(r, "PV", f.pasid & 0xfffff);
      FrcdReg.set(r, "PRIV", f.priv ? 1 : 0);
      FrcdReg.set(r, "EXE", f.exec ? 1 : 0);
    }
    FrcdReg.set(r, "FR", f.reason & 0xff);
    FrcdReg.set(r, "AT", f.at & 3);
    // T1: 1 = read, 0 = write (VT-d §10.4 FRCD).
    FrcdReg.set(r, "T1", f.write ? 0 : 1);
    FrcdReg.set(r, "F", 1);
    if (FstsReg.get(this.#fsts, "PPF") === 0) FstsReg.set(this.#fsts, "FRI", this.#next);
    FstsReg.set(this.#fsts, "PPF", 1);
    this.#next = (this.#next + 1) % this.#frcd.length;
    this.stats.recorded++;
    if (idle) this.event.raise();
    return true;
  }

  /** IQE/ICE/ITE: an invalidation-queue error condition (raises the fault event like a fault does). */
  setStatus(bit: "IQE" | "ICE" | "ITE"): void {
    const idle = !this.#anyStatus();
    FstsReg.set(this.#fsts, bit, 1);
    if (idle) this.event.raise();
  }

  status(bit: (typeof FSTS_EVENT_BITS)[number]): boolean {
    return FstsReg.get(this.#fsts, bit) === 1;
  }

  /** After software wrote FSTS or an FRCD register: recompute PPF/FRI, drop a serviced event. */
  afterSoftwareWrite(): void {
    let first = -1;
    const n = this.#frcd.length;
    const start = FstsReg.get(this.#fsts, "FRI") % n;
    for (let k = 0; k < n; k++) {
      const i = (start + k) % n;
      const r = this.#frcd[i];
      if (r !== undefined && FrcdReg.get(r, "F") === 1) {
        first = i;
        break;
      }
    }
    FstsReg.set(this.#fsts, "PPF", first >= 0 ? 1 : 0);
    if (first >= 0) FstsReg.set(this.#fsts, "FRI", first);
    if (!this.#anyStatus()) this.event.serviced();
  }

  /** Whether `offset` falls in the FRCD block. */
  owns(offset: number): boolean {
    return offset >= this.frcdOffset && offset < this.frcdOffset + 16 * this.#frcd.length;
  }

  #anyStatus(): boolean {
    for (const b of FSTS_EVENT_BITS) if (FstsReg.get(this.#fsts, b) === 1) return true;
    return false;
  }
}
