import { Errno, type HostPasid, KernelError, isKernelError } from "@vsva/kernel";
import { PAGE_REQUEST_BYTES, PageRequestDesc, PqaReg, PqhReg, PqtReg, PrsReg, RegOffset, addrOfPageField } from "@vsva/iommu-hw";
import type { IommuDevice, PageRequestFault } from "@vsva/iommu-core";
import { type PageGroupResponseArgs, type ResponseCodeName, pageGroupResponse } from "./descriptors.js";
import { readReg32, readReg64, writeReg64 } from "./mmio.js";

/** The page-request event's MSI message: an x86 interrupt address and a vector of our own. */
const PRQ_MSI_ADDR = 0xfee0_0000;
const PRQ_MSI_DATA = 0x4021;
/** PECTL.IM (bit 31), set while the event is masked. */
const EVENT_CTL_IM = 0x8000_0000;
import type { VtdDevice, VtdHardware } from "./unit.js";

type PrivateData = readonly [bigint, bigint];

/** One 64-bit private-data word of a page request, from its two 32-bit halves. */
function qword(v: Uint32Array, lo: "PRIV_DATA0" | "PRIV_DATA2", hi: "PRIV_DATA1" | "PRIV_DATA3"): bigint {
  return (BigInt(PageRequestDesc.get(v, hi) >>> 0) << 32n) | BigInt(PageRequestDesc.get(v, lo) >>> 0);
}

/** Page-request queue size: 2^PQS pages of 32-byte descriptors (Linux's PRQ_ORDER). */
const PQS = 2;
const QUEUE_BYTES = 4096 * 2 ** PQS;

/**
 * Where recoverable faults go (the part 2 IO page fault queue, or VFIO's
 * fault region for a guest). `report` returns true when it takes the fault:
 * it then answers the group later through the driver's `pageResponse`.
 */
export interface IoPageFaultHandler {
  report(dev: IommuDevice, fault: PageRequestFault): boolean;
}

/** Who handles page requests for (device, PASID): decided by the driver from what is bound. */
export type FaultRoute = (d: VtdDevice, pasid: number | undefined) => IoPageFaultHandler | null;

/**
 * The page-request queue, driver side (`intel_svm_enable_prq` and
 * `prq_event_thread`): a queue of 2^PQS pages from the page allocator;
 * `process` consumes descriptors from PQH to PQT, hands each to the handler
 * the route names, and answers a last-in-group request itself with
 * "invalid" when nobody takes it (no binding for the PASID, no handler, a
 * request without PASID, an unknown requester). Responses are page group
 * response descriptors (type 9) on the invalidation queue.
 */
export class PageRequestQueue {
  #base = -1;
  readonly #hw: VtdHardware;
  readonly #route: FaultRoute;
  readonly #desc = PageRequestDesc.alloc();
  /** Groups reported and not yet answered, `${sid}/${pasid}/${prgi}` -> the request's private data, if any. */
  readonly #pending = new Map<string, PrivateData | undefined>();
  readonly stats = { processed: 0, reported: 0, autoInvalid: 0, responses: 0, overflows: 0 };

  constructor(hw: VtdHardware, route: FaultRoute) {
    this.#hw = hw;
    this.#route = route;
  }

  get enabled(): boolean {
    return this.#base >= 0;
  }

  /** ENOMEM. */
  enable(): void {
    const hw = this.#hw;
    const base = hw.pages.allocPages(PQS, "vtd.prq");
    hw.mmio.mmioWrite64(RegOffset.PQH, 0);
    hw.mmio.mmioWrite64(RegOffset.PQT, 0);
    const pqa = PqaReg.alloc();
    PqaReg.setAddr(pqa, "PQA", base);
    PqaReg.set(pqa, "PQS", PQS);
    writeReg64(hw.mmio, RegOffset.PQA, pqa);
    this.#base = base;
    // Request the page-request interrupt (dmar_alloc_hwirq + unmask): program
    // the MSI message, then clear PECTL.IM, which is set out of reset.
    // Without this the unit queues requests silently and nobody drains them.
    hw.mmio.mmioWrite32(RegOffset.PEDATA, PRQ_MSI_DATA);
    hw.mmio.mmioWrite32(RegOffset.PEADDR, PRQ_MSI_ADDR);
    hw.mmio.mmioWrite32(RegOffset.PEUADDR, 0);
    hw.mmio.mmioWrite32(RegOffset.PECTL, 0);
  }

  /** Cannot fail. The unit must have stopped writing requests (translation off). */
  disable(): void {
    if (this.#base < 0) return;
    this.#hw.mmio.mmioWrite32(RegOffset.PECTL, EVENT_CTL_IM);
    this.#hw.mmio.mmioWrite64(RegOffset.PQA, 0);
    this.#hw.pages.freePages(this.#base);
    this.#base = -1;
    this.#pending.clear();
  }

  /** Groups reported to handlers and not yet answered. */
  get pendingGroups(): number {
    return this.#pending.size;
  }

  /**
   * Consumes every queued page request; returns how many. PRS.PPR is
   * cleared first, so a request that arrives meanwhile sets it again; PRO
   * (overflow, the unit answered those itself) is cleared after the queue
   * was emptied.
   */
  process(): number {
    if (this.#base < 0) return 0;
    const hw = this.#hw;
    const prs = readReg32(hw.mmio, RegOffset.PRS, PrsReg);
    const overflow = PrsReg.get(prs, "PRO") === 1;
    hw.clearPrs(true, false);
    let n = 0;
    for (;;) {
      const head = (PqhReg.get(readReg64(hw.mmio, RegOffset.PQH, PqhReg), "PQH") * PAGE_REQUEST_BYTES) % QUEUE_BYTES;
      const tail = (PqtReg.get(readReg64(hw.mmio, RegOffset.PQT, PqtReg), "PQT") * PAGE_REQUEST_BYTES) % QUEUE_BYTES;
      if (head === tail) break;
      this.#handle(this.#base + head);
      n++;
      const next = PqhReg.alloc();
      PqhReg.set(next, "PQH", ((head + PAGE_REQUEST_BYTES) % QUEUE_BYTES) / PAGE_REQUEST_BYTES);
      writeReg64(hw.mmio, RegOffset.PQH, next);
    }
    if (overflow) {
      this.stats.overflows++;
      hw.clearPrs(false, true);
    }
    this.stats.processed += n;
    return n;
  }

  /**
   * Answers a group a handler took. EINVAL when no such group is pending
   * (a response nobody asked for must not reach the device); EIO when the
   * queue refused the descriptor.
   */
  respond(dev: IommuDevice, pasid: number | undefined, groupIndex: number, code: ResponseCodeName): void {
    const d = this.#hw.device(dev);
    const key = `${d.sid}/${pasid ?? "-"}/${groupIndex}`;
    if (!this.#pending.has(key)) throw new KernelError(Errno.EINVAL, `no page request group ${groupIndex} pending for ${dev.toString()} PASID ${pasid ?? "none"}`);
    const privateData = this.#pending.get(key);
    this.#pending.delete(key);
    // intel_svm_page_response(): LPIG from the fault's LAST_PAGE flag, which
    // intel_svm_prq_report() sets for a request with private data too, so
    // always 1 here; PDP and the private data from the request; the code
    // as the core gave it.
    this.#send({ sid: d.sid, pasid, groupIndex, code, codes: "core", last: true, ...(privateData === undefined ? {} : { privateData }) });
  }

  /** Drops (answers "invalid") every pending group of (device, PASID): the PASID is going away. */
  forget(d: VtdDevice, pasid: number): void {
    const prefix = `${d.sid}/${pasid}/`;
    for (const [key, privateData] of [...this.#pending]) {
      if (!key.startsWith(prefix)) continue;
      this.#pending.delete(key);
      const groupIndex = Number(key.slice(prefix.length));
      this.#send({ sid: d.sid, pasid, groupIndex, code: "invalid", codes: "driver", last: true, ...(privateData === undefined ? {} : { privateData }) });
    }
  }

  #handle(pa: number): void {
    const hw = this.#hw;
    const v = this.#desc;
    if (!PageRequestDesc.read(hw.mem, pa, v)) return;
    const sid = PageRequestDesc.get(v, "RID");
    const pasid = PageRequestDesc.get(v, "PP") === 1 ? PageRequestDesc.get(v, "PASID") : undefined;
    const pfn = PageRequestDesc.get(v, "ADDR");
    const privateData: PrivateData | undefined =
      PageRequestDesc.get(v, "PDP") === 1 ? [qword(v, "PRIV_DATA0", "PRIV_DATA1"), qword(v, "PRIV_DATA2", "PRIV_DATA3")] : undefined;
    const fault: PageRequestFault = {
      pasid: pasid as HostPasid | undefined,
      addr: addrOfPageField(pfn),
      read: PageRequestDesc.get(v, "RD") === 1,
      write: PageRequestDesc.get(v, "WR") === 1,
      exec: PageRequestDesc.get(v, "ER") === 1,
      priv: PageRequestDesc.get(v, "PM") === 1,
      grpid: PageRequestDesc.get(v, "PRGI"),
      last: PageRequestDesc.get(v, "LPIG") === 1,
      ...(privateData === undefined ? {} : { privateData }),
    };
    // VT-d spec 7.7: a group is answered when its last request arrives, and
    // a request with private data is answered on its own.
    const needsResponse = fault.last || privateData !== undefined;
    let d: VtdDevice | undefined;
    for (const x of hw.devices) if (x.sid === sid) d = x;
    const handler = d === undefined ? null : this.#route(d, pasid);
    let outcome: "reported" | "invalid" | "no-response" = "no-response";
    if (d !== undefined && handler?.report(d.dev, fault) === true) {
      outcome = "reported";
      this.stats.reported++;
      if (needsResponse) this.#pending.set(`${sid}/${pasid ?? "-"}/${fault.grpid}`, privateData);
    } else if (needsResponse) {
      outcome = "invalid";
      this.stats.autoInvalid++;
      // prq_event_thread(): the VT-d code, LPIG and PDP as the request had
      // them. It also returns the private data, where v5.10 zeroes qw2/qw3
      // after copying them in (a slip in prq_event_thread()); the VT-d spec
      // (7.7) asks for the data back, so we return it.
      this.#send({ sid, pasid, groupIndex: fault.grpid, code: "invalid", codes: "driver", last: fault.last, ...(privateData === undefined ? {} : { privateData }) });
    }
    const ids = pasid === undefined ? { device: d?.dev.name ?? String(sid) } : { device: d?.dev.name ?? String(sid), hpasid: pasid };
    hw.kernel.trace.emit("vtd-drv.page-request", "IOMMU", ids, { unit: hw.name, addr: fault.addr, groupIndex: fault.grpid, outcome });
  }

  #send(a: PageGroupResponseArgs): void {
    const hw = this.#hw;
    this.stats.responses++;
    try {
      hw.qi.submit([pageGroupResponse(a)]);
    } catch (e) {
      if (!isKernelError(e)) throw e;
      hw.warn("page-response", `page group response ${a.groupIndex}: ${e.message}`);
    }
    const ids = a.pasid === undefined ? {} : { hpasid: a.pasid };
    hw.kernel.trace.emit("vtd-drv.page-response", "IOMMU", ids, { unit: hw.name, groupIndex: a.groupIndex, code: a.code });
  }
}
