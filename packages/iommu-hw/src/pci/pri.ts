import type { SourceId, TraceBus } from "@vsva/kernel";
import type { IommuPort, PageGroupResponse } from "../iommu-port.js";
import type { ConfigSpace, Register } from "./config-space.js";
import type { PriCtlField, PriOutstandingField } from "./endpoint-config.js";
import "./trace-events.js";

/**
 * The function side of the PCIe Page Request Interface: issues page requests,
 * tracks outstanding page request groups against the allocated budget, and
 * matches page group responses to them.
 *
 * Register semantics (PCIe ATS spec, PRI capability):
 * - Enable 0→1 clears Stopped, Response Failure and Unexpected PRG Index.
 * - With Enable clear the function issues no new requests; Stopped reads 1
 *   once nothing is outstanding (responses still retire outstanding groups).
 * - Reset, written 1 while Enable is clear (or being cleared by the same
 *   write), discards the credit counter and the pending-request state.
 * - A Response Failure response sets Response Failure; the function then
 *   expects no further responses and ignores any that arrive, abandons every
 *   outstanding group and issues nothing until software re-enables PRI.
 * - A response whose PRG index is not outstanding (or, when PRG Response
 *   PASID Required is set, whose PASID differs) sets Unexpected PRG Index and
 *   is otherwise ignored.
 *
 * Each request here is its own group (Last In Group set): the endpoint's
 * engines fault one page at a time. The budget is the Outstanding Page
 * Request Allocation register, clamped to the capacity (PCIe leaves larger
 * allocations undefined).
 */
export type PageRequestOutcome = "success" | "invalid" | "failure" | "reset";

export interface PriPageRequest {
  readonly pasid?: number;
  readonly priv: boolean;
  readonly exec: boolean;
  /** Any address in the page; the request carries the page address. */
  readonly addr: number;
  readonly read: boolean;
  readonly write: boolean;
}

/** `sent`: outstanding, the callback will hear the outcome; `noCredit`: wait for {@link PageRequestInterface.onCredit}; `unavailable`: PRI cannot be used. */
export type PriIssueResult = "sent" | "noCredit" | "unavailable";

export interface PriStats {
  requests: number;
  /** Requests the IOMMU refused to queue (still outstanding: the function cannot know). */
  dropped: number;
  success: number;
  invalid: number;
  failure: number;
  unexpected: number;
  /** Responses ignored after a Response Failure. */
  ignored: number;
}

interface Group {
  readonly pasid: number | undefined;
  readonly requests: number;
  readonly done: (o: PageRequestOutcome) => void;
}

const PRG_INDEX_COUNT = 512; // 9-bit PRG index
const PAGE_SIZE = 4096;

export interface PriOptions {
  readonly sid: SourceId;
  readonly space: ConfigSpace;
  readonly ctl: Register<PriCtlField>;
  readonly outstanding: Register<PriOutstandingField>;
  readonly upstream: () => IommuPort | undefined;
  readonly trace?: TraceBus;
  readonly device: string;
}

export class PageRequestInterface {
  readonly stats: PriStats = { requests: 0, dropped: 0, success: 0, invalid: 0, failure: 0, unexpected: 0, ignored: 0 };
  readonly #o: PriOptions;
  readonly #groups = new Map<number, Group>();
  #inFlight = 0;
  #nextIndex = 0;
  /** Set by a Response Failure until PRI is re-enabled or reset. */
  #failed = false;
  #creditWaiters: (() => void)[] = [];

  constructor(o: PriOptions) {
    this.#o = o;
    o.space.onWrite(o.ctl, (before) => this.#controlWritten(before));
  }

  get enabled(): boolean {
    return this.#o.ctl.flag("ENABLE");
  }

  /** Requests outstanding (sent and not yet answered). */
  get outstanding(): number {
    return this.#inFlight;
  }

  get budget(): number {
    return Math.min(this.#o.outstanding.get("ALLOCATION"), this.#o.outstanding.get("CAPACITY"));
  }

  /** Whether a page request could ever be issued now: enabled, not failed, a non-zero budget, attached. */
  get usable(): boolean {
    return this.enabled && !this.#failed && this.budget > 0 && this.#o.upstream() !== undefined;
  }

  /** Outstanding group indices (for checkers and tests). */
  get outstandingGroups(): readonly number[] {
    return [...this.#groups.keys()];
  }

  /** Issues a one-page group. `done` is called exactly once, later, when it is answered or abandoned. */
  issue(req: PriPageRequest, done: (o: PageRequestOutcome) => void): PriIssueResult {
    const port = this.#o.upstream();
    if (!this.usable || port === undefined) return "unavailable";
    if (this.#inFlight + 1 > this.budget || this.#groups.size >= PRG_INDEX_COUNT) return "noCredit";
    const groupIndex = this.#allocIndex();
    this.#groups.set(groupIndex, { pasid: req.pasid, requests: 1, done });
    this.#inFlight++;
    this.stats.requests++;
    const page = req.addr - (req.addr % PAGE_SIZE);
    // Traced before delivery: an IOMMU (or fake) may answer synchronously, and
    // the timeline must show the request before its response.
    this.#o.trace?.emit("pci.page-request", "DEVICE", this.#ids(req.pasid), { addr: page, groupIndex, read: req.read, write: req.write });
    const accepted = port.pageRequest({
      sid: this.#o.sid,
      ...(req.pasid === undefined ? {} : { pasid: req.pasid }),
      priv: req.priv,
      exec: req.exec,
      addr: page,
      read: req.read,
      write: req.write,
      lastInGroup: true,
      groupIndex,
    });
    // A dropped request stays outstanding: the function has no way to know.
    if (!accepted) this.stats.dropped++;
    this.#syncStopped();
    return "sent";
  }

  /** Calls `fn` once, the next time credits are returned or PRI state changes. */
  onCredit(fn: () => void): void {
    this.#creditWaiters.push(fn);
  }

  /** A page group response from the IOMMU. Never throws: the IOMMU (or a guest behind it) controls the contents. */
  response(resp: PageGroupResponse): void {
    if (this.#failed) {
      this.stats.ignored++;
      return;
    }
    const g = this.#groups.get(resp.groupIndex);
    const pasidRequired = this.#o.ctl.flag("PRG_RESPONSE_PASID_REQUIRED");
    const expected = g !== undefined && !(pasidRequired && g.pasid !== undefined && resp.pasid !== g.pasid);
    this.#o.trace?.emit("pci.page-response", "DEVICE", this.#ids(resp.pasid), { groupIndex: resp.groupIndex, code: resp.code, expected });
    if (g === undefined || !expected) {
      this.stats.unexpected++;
      this.#o.ctl.setFlag("UNEXPECTED_PRGI", true);
      return;
    }
    if (resp.code === "failure") {
      this.stats.failure++;
      this.#o.ctl.setFlag("RESPONSE_FAILURE", true);
      this.#failed = true;
      this.#abandonAll("failure");
      return;
    }
    this.#groups.delete(resp.groupIndex);
    this.#inFlight -= g.requests;
    if (resp.code === "success") this.stats.success++;
    else this.stats.invalid++;
    this.#syncStopped();
    g.done(resp.code);
    this.#wakeCreditWaiters();
  }

  /** Function Level Reset: back to the reset state, outstanding groups abandoned. */
  reset(): void {
    this.#failed = false;
    this.#abandonAll("reset");
    this.#nextIndex = 0;
  }

  #controlWritten(before: Uint32Array): void {
    const ctl = this.#o.ctl;
    const wasEnabled = ctl.getIn(before, "ENABLE") !== 0;
    const enabled = ctl.flag("ENABLE");
    if (!enabled && ctl.flag("RESET")) {
      this.#failed = false;
      this.#abandonAll("reset");
    }
    if (!wasEnabled && enabled) {
      ctl.setFlag("RESPONSE_FAILURE", false);
      ctl.setFlag("UNEXPECTED_PRGI", false);
      this.#failed = false;
    }
    this.#syncStopped();
    if (wasEnabled !== enabled) this.#wakeCreditWaiters();
  }

  #abandonAll(outcome: PageRequestOutcome): void {
    const groups = [...this.#groups.values()];
    this.#groups.clear();
    this.#inFlight = 0;
    this.#syncStopped();
    for (const g of groups) g.done(outcome);
    this.#wakeCreditWaiters();
  }

  #wakeCreditWaiters(): void {
    const waiters = this.#creditWaiters;
    this.#creditWaiters = [];
    for (const w of waiters) w();
  }

  #syncStopped(): void {
    this.#o.ctl.setFlag("STOPPED", !this.enabled && this.#inFlight === 0);
  }

  #allocIndex(): number {
    for (;;) {
      const i = this.#nextIndex;
      this.#nextIndex = (i + 1) % PRG_INDEX_COUNT;
      if (!this.#groups.has(i)) return i;
    }
  }

  #ids(pasid: number | undefined): { device: string; hpasid?: number } {
    return pasid === undefined ? { device: this.#o.device } : { device: this.#o.device, hpasid: pasid };
  }
}
