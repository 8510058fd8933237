import type { DmaRequest, StallResolution, TranslateFault, TranslateResult } from "../iommu-port.js";

/** How CMD_RESUME ends a stalled transaction (Resp 0 terminate, 1 retry, 2 abort; SMMUv3 spec chapter 4, CMD_RESUME). */
export type StallEnd = "retry" | "terminate" | "abort";

/** What happened to a stall, for traces. */
export type StallAction = StallEnd | "held" | "stall-term" | "config" | "disable" | "ignored";

/** A transaction the unit holds. */
export interface StalledTransaction {
  readonly sid: number;
  /** SubstreamID as the pipeline used it (-1: none). */
  readonly ssid: number;
  /** The request as it arrived: a retry translates it again. */
  readonly req: DmaRequest;
  /** What the requester gets if the transaction is terminated. */
  readonly fault: TranslateFault;
}

export interface StallHooks {
  /** Runs the held request through the pipeline again (it may stall again, under a new STAG). */
  retranslate(req: DmaRequest): TranslateResult;
  /** Hands the outcome to the requester at `sid`. */
  deliver(sid: number, resolution: StallResolution): void;
  trace(sid: number, ssid: number, stag: number, action: StallAction): void;
}

/**
 * The unit's stalled transactions, by STAG. A STAG is the lowest tag not in
 * use, so it is unique among outstanding stalls and stays below
 * IDR5.STALL_MAX, the number the unit can hold at once.
 *
 * With TERM_MODEL = 1 (the unit's only termination model, CD.A = 1
 * required) a terminate and an abort both end the transaction with an abort
 * to the requester: the fault it stalled on.
 */
export class StallTable {
  readonly #held = new Map<number, StalledTransaction>();

  constructor(
    private readonly max: number,
    private readonly hooks: StallHooks,
  ) {}

  get size(): number {
    return this.#held.size;
  }

  /** The STAG a new stall would get, or -1 when STALL_MAX transactions are held already. */
  freeTag(): number {
    if (this.#held.size >= this.max) return -1;
    for (let tag = 0; tag < this.max; tag++) if (!this.#held.has(tag)) return tag;
    return -1;
  }

  hold(stag: number, t: StalledTransaction): void {
    this.#held.set(stag, t);
    this.hooks.trace(t.sid, t.ssid, stag, "held");
  }

  /** StreamIDs with a stalled transaction. */
  streams(): Set<number> {
    const out = new Set<number>();
    for (const t of this.#held.values()) out.add(t.sid);
    return out;
  }

  /**
   * CMD_RESUME: a STAG that names no transaction stalled on that StreamID is
   * ignored (our reading of the spec: no command error; Linux never relies on one).
   */
  resume(sid: number, stag: number, action: StallEnd): void {
    const t = this.#held.get(stag);
    if (t?.sid !== sid) {
      this.hooks.trace(sid, -1, stag, "ignored");
      return;
    }
    this.#held.delete(stag);
    this.hooks.trace(t.sid, t.ssid, stag, action);
    const result = action === "retry" ? this.hooks.retranslate(t.req) : t.fault;
    this.hooks.deliver(t.sid, { stag, result });
  }

  /** Terminates every stall `which` selects (CMD_STALL_TERM, a disabled stream, SMMUEN cleared). */
  endAll(which: (t: StalledTransaction) => boolean, action: StallAction): number {
    const ended: [number, StalledTransaction][] = [];
    for (const [stag, t] of this.#held) if (which(t)) ended.push([stag, t]);
    // All are released before any requester hears: one that starts a new transaction may reuse a tag.
    for (const [stag] of ended) this.#held.delete(stag);
    for (const [stag, t] of ended) {
      this.hooks.trace(t.sid, t.ssid, stag, action);
      this.hooks.deliver(t.sid, { stag, result: t.fault });
    }
    return ended.length;
  }
}
