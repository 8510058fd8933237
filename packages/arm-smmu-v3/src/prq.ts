import type { HostPasid } from "@vsva/kernel";
import { EventRecord, PriEntry, addrOfPageField, eventName } from "@vsva/iommu-hw";
import type { IommuDevice, PageRequestFault, PageResponse } from "@vsva/iommu-core";
import { priResp } from "./commands.js";
import type { SmmuHardware, SmmuMaster } from "./smmu.js";
import { StalledFaults } from "./stalls.js";

/**
 * Where recoverable faults go (iommu-core's IO page fault queue, through
 * `IommuCore.reportPageRequest`). `report` returns true when it takes the
 * fault: the group is then answered later through the driver's `pageResponse`.
 */
export interface IoPageFaultHandler {
  report(dev: IommuDevice, fault: PageRequestFault): boolean;
}

/** Who handles page requests for (master, SubstreamID): decided by the driver from what is bound. */
export type FaultRoute = (m: SmmuMaster, ssid: number | undefined) => IoPageFaultHandler | null;

/**
 * The PRI queue and event queue, driver side (`arm_smmu_priq_thread`,
 * `arm_smmu_evtq_thread`). A PRI record goes to the handler the route names;
 * a last-in-group request nobody takes (no binding, no handler, no
 * SubstreamID, an unknown StreamID) is answered at once with PRI_RESP
 * DENIED. Events are logged (rate-limited) and traced.
 */
export class PageRequests {
  /** Groups reported and not yet answered: `${sid}/${ssid}/${prgi}`. */
  readonly #pending = new Set<string>();
  readonly stats = { processed: 0, reported: 0, autoDenied: 0, responses: 0, events: 0 };
  /** Event records with Stall = 1: IO page faults answered with CMD_RESUME. */
  readonly stalls: StalledFaults;

  constructor(
    private readonly hw: SmmuHardware,
    private readonly route: FaultRoute,
  ) {
    this.stalls = new StalledFaults(hw, route);
  }

  get pendingGroups(): number {
    return this.#pending.size;
  }

  /** Consumes the PRI queue; returns the requests handled. */
  process(): number {
    const n = this.hw.priq.drain((rec) => this.#handle(rec));
    this.stats.processed += n;
    return n;
  }

  /** Consumes the event queue; returns the events consumed (stalls are reported as faults, the rest logged). */
  processEvents(): number {
    const hw = this.hw;
    const n = hw.evtq.drain((rec) => {
      if (this.stalls.handle(rec)) return;
      const id = EventRecord.get(rec, "EVENTID");
      const sid = EventRecord.get(rec, "SID");
      const ssid = EventRecord.get(rec, "SSV") === 1 ? EventRecord.get(rec, "SSID") : null;
      const addr = EventRecord.get(rec, "INPUT_ADDR_LO") + EventRecord.get(rec, "INPUT_ADDR_HI") * 2 ** 32;
      const name = eventName(id);
      const m = hw.masterBySid(sid);
      hw.warn(`event-${name}`, `event ${name} (0x${id.toString(16)}) from StreamID ${sid}${ssid === null ? "" : ` SSID ${ssid}`} at 0x${addr.toString(16)}`);
      const ids = { device: m?.dev.name ?? String(sid), ...(ssid === null ? {} : { hpasid: ssid }) };
      hw.kernel.trace.emit("smmu-drv.event", "IOMMU", ids, { unit: hw.name, event: id, name, sid, ssid, addr });
    });
    this.stats.events += n;
    return n;
  }

  /** Answers a group a handler took. Returns false (nothing sent) when no such group is pending. */
  respond(m: SmmuMaster, r: PageResponse): boolean {
    const key = `${m.sid}/${r.pasid ?? "-"}/${r.grpid}`;
    if (!this.#pending.delete(key)) return false;
    this.#send(m.sid, r.pasid, r.grpid, r.code);
    return true;
  }

  /** Denies every pending group of (master, SubstreamID): the binding is going away. */
  forget(m: SmmuMaster, ssid: number): void {
    const prefix = `${m.sid}/${ssid}/`;
    for (const key of [...this.#pending]) {
      if (!key.startsWith(prefix)) continue;
      this.#pending.delete(key);
      this.#send(m.sid, ssid, Number(key.slice(prefix.length)), "invalid");
    }
  }

  /** Drops every pending group of a master (it is being removed; nobody will answer). */
  forgetMaster(m: SmmuMaster): void {
    for (const key of [...this.#pending]) if (key.startsWith(`${m.sid}/`)) this.#pending.delete(key);
  }

  #handle(rec: Uint32Array): void {
    const hw = this.hw;
    const sid = PriEntry.get(rec, "SID");
    const ssid = PriEntry.get(rec, "SSV") === 1 ? PriEntry.get(rec, "SSID") : undefined;
    const pfn = PriEntry.get(rec, "ADDR");
    const fault: PageRequestFault = {
      pasid: ssid as HostPasid | undefined,
      addr: addrOfPageField(pfn),
      read: PriEntry.get(rec, "READ") === 1,
      write: PriEntry.get(rec, "WRITE") === 1,
      exec: PriEntry.get(rec, "EXEC") === 1,
      priv: PriEntry.get(rec, "PRIV") === 1,
      grpid: PriEntry.get(rec, "PRGINDEX"),
      last: PriEntry.get(rec, "LAST") === 1,
    };
    const m = hw.masterBySid(sid);
    const handler = m === undefined ? null : this.route(m, ssid);
    let outcome: "reported" | "invalid" | "no-response" = "no-response";
    if (m !== undefined && handler?.report(m.dev, fault) === true) {
      outcome = "reported";
      this.stats.reported++;
      if (fault.last) this.#pending.add(`${sid}/${ssid ?? "-"}/${fault.grpid}`);
    } else if (fault.last) {
      outcome = "invalid";
      this.stats.autoDenied++;
      this.#send(sid, ssid, fault.grpid, "invalid");
    }
    const ids = { device: m?.dev.name ?? String(sid), ...(ssid === undefined ? {} : { hpasid: ssid }) };
    hw.kernel.trace.emit("smmu-drv.page-request", "IOMMU", ids, { unit: hw.name, addr: fault.addr, groupIndex: fault.grpid, outcome });
  }

  #send(sid: number, ssid: number | undefined, grpid: number, code: PageResponse["code"]): void {
    const hw = this.hw;
    this.stats.responses++;
    hw.flush("pri-resp", [priResp(sid, ssid, grpid, code)]);
    hw.kernel.trace.emit("smmu-drv.page-response", "IOMMU", ssid === undefined ? {} : { hpasid: ssid }, { unit: hw.name, groupIndex: grpid, code });
  }
}
