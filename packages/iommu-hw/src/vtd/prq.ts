import type { PageRequest } from "../iommu-port.js";
import type { PhysMem } from "@vsva/pgtable";
import { PAGE_REQUEST_BYTES, PAGE_REQUEST_TYPE, PageRequestDesc } from "./descriptors.js";
import type { EventSource } from "./events.js";
import type { RegisterFile } from "../mmio/register-file.js";
import { PqaReg, PqhReg, PqtReg, PrsReg, RegOffset } from "./regs.js";
import { pageField } from "../page-field.js";

/**
 * The page-request queue (A1.12, A4.1): hardware writes 256-bit page-request
 * descriptors at PQT and advances it; software consumes at PQH. Full when
 * (PQT + 32) mod size == PQH: the request is dropped and PRS.PRO set (the
 * unit then answers a last-in-group request itself). After a write PRS.PPR
 * is set; the page-request event fires when PPR/PRO appear while neither was
 * pending, unless PECTL.IM masks it.
 *
 * PQH/PQT values beyond the queue are taken modulo its size (hardware uses
 * only the offset bits of the configured size). A descriptor write that
 * aborts (PQA pointing at no memory) loses the request like an overflow.
 */
export class PageRequestQueue {
  readonly #pqa: Uint32Array;
  readonly #pqh: Uint32Array;
  readonly #pqt: Uint32Array;
  readonly #prs: Uint32Array;
  readonly #desc = PageRequestDesc.alloc();
  readonly stats = { queued: 0, overflowed: 0 };

  constructor(
    regs: RegisterFile,
    private readonly mem: PhysMem,
    private readonly event: EventSource,
  ) {
    this.#pqh = regs.define(RegOffset.PQH, PqhReg);
    this.#pqt = regs.define(RegOffset.PQT, PqtReg);
    this.#pqa = regs.define(RegOffset.PQA, PqaReg);
    this.#prs = regs.define(RegOffset.PRS, PrsReg);
  }

  /** Queues `req`; false when it was dropped (queue full or unwritable): PRS.PRO is then set. */
  enqueue(req: PageRequest): boolean {
    const size = 4096 * 2 ** PqaReg.get(this.#pqa, "PQS");
    const base = PqaReg.getAddr(this.#pqa, "PQA");
    const tail = (PqtReg.get(this.#pqt, "PQT") * PAGE_REQUEST_BYTES) % size;
    const head = (PqhReg.get(this.#pqh, "PQH") * PAGE_REQUEST_BYTES) % size;
    const next = (tail + PAGE_REQUEST_BYTES) % size;
    const idle = PrsReg.get(this.#prs, "PPR") === 0 && PrsReg.get(this.#prs, "PRO") === 0;
    if (next === head || !this.#write(base + tail, req)) {
      PrsReg.set(this.#prs, "PRO", 1);
      this.stats.overflowed++;
      if (idle) this.event.raise();
      return false;
    }
    PqtReg.set(this.#pqt, "PQT", next / PAGE_REQUEST_BYTES);
    PrsReg.set(this.#prs, "PPR", 1);
    this.stats.queued++;
    if (idle) this.event.raise();
    return true;
  }

  /** After software wrote PRS: once PPR and PRO are both clear, a pending event is dropped. */
  afterPrsWrite(): void {
    if (PrsReg.get(this.#prs, "PPR") === 0 && PrsReg.get(this.#prs, "PRO") === 0) this.event.serviced();
  }

  #write(pa: number, req: PageRequest): boolean {
    const d = this.#desc;
    d.fill(0);
    PageRequestDesc.set(d, "TYPE", PAGE_REQUEST_TYPE);
    if (req.pasid !== undefined) {
      PageRequestDesc.set(d, "PP", 1);
      PageRequestDesc.set(d, "PASID", req.pasid & 0xfffff);
      PageRequestDesc.set(d, "ER", req.exec ? 1 : 0);
      PageRequestDesc.set(d, "PM", req.priv ? 1 : 0);
    }
    PageRequestDesc.set(d, "RID", req.sid & 0xffff);
    PageRequestDesc.set(d, "RD", req.read ? 1 : 0);
    PageRequestDesc.set(d, "WR", req.write ? 1 : 0);
    PageRequestDesc.set(d, "LPIG", req.lastInGroup ? 1 : 0);
    PageRequestDesc.set(d, "PRGI", req.groupIndex & 0x1ff);
    PageRequestDesc.set(d, "ADDR", pageField(req.addr));
    if (req.privateData !== undefined) {
      PageRequestDesc.set(d, "PDP", 1);
      const [q2, q3] = req.privateData;
      PageRequestDesc.set(d, "PRIV_DATA0", Number(BigInt.asUintN(32, q2)));
      PageRequestDesc.set(d, "PRIV_DATA1", Number(BigInt.asUintN(32, q2 >> 32n)));
      PageRequestDesc.set(d, "PRIV_DATA2", Number(BigInt.asUintN(32, q3)));
      PageRequestDesc.set(d, "PRIV_DATA3", Number(BigInt.asUintN(32, q3 >> 32n)));
    }
    return PageRequestDesc.write(this.mem, pa, d);
  }
}
