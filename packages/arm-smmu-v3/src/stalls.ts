import type { HostPasid } from "@vsva/kernel";
import { EventId, EventRecord } from "@vsva/iommu-hw";
import type { PageRequestFault, PageResponse } from "@vsva/iommu-core";
import { resume, stallTerm } from "./commands.js";
import type { FaultRoute } from "./prq.js";
import type { SmmuHardware, SmmuMaster } from "./smmu.js";

/** The events a stalled transaction can carry (Linux's `arm_smmu_handle_evt` takes these four). */
const STALLABLE = new Set<number>([EventId.F_TRANSLATION, EventId.F_ADDR_SIZE, EventId.F_ACCESS, EventId.F_PERMISSION]);
const TWO32 = 2 ** 32;
const TWO63 = 2 ** 63;
const TWO64 = 2 ** 64;
const PAGE = 4096;

/**
 * Stalled transactions, driver side (`arm_smmu_handle_evt` and the stall
 * half of `arm_smmu_page_response`). An event record with Stall = 1 becomes
 * an IO page fault of one request, the last of its group, whose group ID
 * is the STAG; the answer goes back as CMD_RESUME: retry on success, abort
 * otherwise (Linux answers invalid and failure both with abort). A stall
 * nobody takes (no binding, no handler, no SubstreamID, an unknown master)
 * is aborted at once, so the master never waits on a fault no one will
 * answer.
 */
export class StalledFaults {
  /** Stalls reported and not yet answered: `${sid}/${stag}` -> SubstreamID (-1: none). */
  readonly #pending = new Map<string, number>();
  readonly stats = { reported: 0, aborted: 0, resumed: 0 };

  constructor(
    private readonly hw: SmmuHardware,
    private readonly route: FaultRoute,
  ) {}

  get pending(): number {
    return this.#pending.size;
  }

  /** Takes an event record if it is a stall; false leaves it to the event logger. */
  handle(rec: Uint32Array): boolean {
    if (EventRecord.get(rec, "STALL") !== 1) return false;
    const id = EventRecord.get(rec, "EVENTID");
    const sid = EventRecord.get(rec, "SID");
    const stag = EventRecord.get(rec, "STAG");
    const ssid = EventRecord.get(rec, "SSV") === 1 ? EventRecord.get(rec, "SSID") : undefined;
    const m = this.hw.masterBySid(sid);
    if (!STALLABLE.has(id) || m?.stallEnabled !== true) {
      // A stall the driver did not ask for, or of a master it no longer has: nobody can resolve it.
      this.#send(sid, stag, ssid, "abort");
      return true;
    }
    const raw = EventRecord.get(rec, "INPUT_ADDR_LO") + EventRecord.get(rec, "INPUT_ADDR_HI") * TWO32;
    const addr = raw >= TWO63 ? raw - TWO64 : raw;
    const fault: PageRequestFault = {
      pasid: ssid as HostPasid | undefined,
      addr: Math.floor(addr / PAGE) * PAGE,
      read: EventRecord.get(rec, "RNW") === 1,
      write: EventRecord.get(rec, "RNW") === 0,
      exec: EventRecord.get(rec, "IND") === 1,
      priv: EventRecord.get(rec, "PNU") === 1,
      grpid: stag,
      last: true,
    };
    const handler = this.route(m, ssid);
    const key = `${sid}/${stag}`;
    // Pending before the report: a handler may answer from inside it.
    this.#pending.set(key, ssid ?? -1);
    if (handler?.report(m.dev, fault) === true) {
      this.stats.reported++;
      this.#trace(m, ssid, stag, "reported");
      return true;
    }
    this.#pending.delete(key);
    this.#send(sid, stag, ssid, "abort");
    return true;
  }

  /** Answers a stall a handler took. False (nothing sent) when no such stall is pending. */
  respond(m: SmmuMaster, r: PageResponse): boolean {
    const key = `${m.sid}/${r.grpid}`;
    const ssid = this.#pending.get(key);
    if (ssid === undefined || ssid !== (r.pasid ?? -1)) return false;
    this.#pending.delete(key);
    this.#send(m.sid, r.grpid, r.pasid, r.code === "success" ? "retry" : "abort");
    return true;
  }

  /** Aborts every pending stall of (master, SubstreamID): its context is going away. */
  abortSsid(m: SmmuMaster, ssid: number): void {
    for (const [key, s] of [...this.#pending]) {
      if (s !== ssid || !key.startsWith(`${m.sid}/`)) continue;
      this.#pending.delete(key);
      this.#send(m.sid, Number(key.slice(key.indexOf("/") + 1)), ssid, "abort");
    }
  }

  /** The master is going away: CMD_STALL_TERM ends whatever it still has stalled, reported or not. */
  terminateMaster(m: SmmuMaster): void {
    for (const key of [...this.#pending.keys()]) if (key.startsWith(`${m.sid}/`)) this.#pending.delete(key);
    if (!m.stallEnabled) return;
    this.hw.flush("stall-term", [stallTerm(m.sid)]);
    this.#trace(m, undefined, -1, "stall-term");
  }

  #send(sid: number, stag: number, ssid: number | undefined, action: "retry" | "abort"): void {
    if (action === "retry") this.stats.resumed++;
    else this.stats.aborted++;
    this.hw.flush("resume", [resume(sid, stag, action)]);
    const m = this.hw.masterBySid(sid);
    this.#trace(m, ssid, stag, action);
  }

  #trace(m: SmmuMaster | undefined, ssid: number | undefined, stag: number, action: "reported" | "retry" | "abort" | "stall-term"): void {
    const hw = this.hw;
    const ids = { device: m?.dev.name ?? "?", ...(ssid === undefined || ssid < 0 ? {} : { hpasid: ssid }) };
    hw.kernel.trace.emit("smmu-drv.stall", "IOMMU", ids, { unit: hw.name, sid: m?.sid ?? -1, stag, action });
  }
}
