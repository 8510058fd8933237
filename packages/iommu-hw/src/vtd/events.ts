import type { VtdInterrupt } from "./options.js";
import type { RegisterFile } from "../mmio/register-file.js";
import { EventAddrReg, EventCtlReg, EventDataReg, EventUaddrReg } from "./regs.js";

/**
 * One interrupt source of the unit (fault event, invalidation-completion
 * event, page-request event): a control register with IM (mask) and IP
 * (pending), and the MSI data/address registers.
 *
 * raise() delivers at once when unmasked; when masked it sets IP, and
 * clearing IM later delivers the pending interrupt. When software services
 * the condition that caused it (clears the status bits), the owner calls
 * serviced() and a pending, undelivered interrupt is dropped.
 */
export class EventSource {
  readonly #ctl: Uint32Array;
  readonly #data: Uint32Array;
  readonly #addr: Uint32Array;
  readonly #uaddr: Uint32Array;
  delivered = 0;

  constructor(
    regs: RegisterFile,
    ctlOffset: number,
    readonly source: VtdInterrupt["source"],
    private readonly deliver: ((irq: VtdInterrupt) => void) | undefined,
  ) {
    this.#ctl = regs.define(ctlOffset, EventCtlReg);
    this.#data = regs.define(ctlOffset + 4, EventDataReg);
    this.#addr = regs.define(ctlOffset + 8, EventAddrReg);
    this.#uaddr = regs.define(ctlOffset + 12, EventUaddrReg);
    this.reset();
  }

  /** IM is set out of reset (QEMU's intel_iommu.c register model: FECTL/IECTL reset value 0x80000000). */
  reset(): void {
    EventCtlReg.set(this.#ctl, "IM", 1);
    EventCtlReg.set(this.#ctl, "IP", 0);
  }

  get pending(): boolean {
    return EventCtlReg.get(this.#ctl, "IP") === 1;
  }

  get masked(): boolean {
    return EventCtlReg.get(this.#ctl, "IM") === 1;
  }

  raise(): void {
    if (this.masked) EventCtlReg.set(this.#ctl, "IP", 1);
    else this.#send();
  }

  /** After a software write to the control register. */
  onCtlWrite(): void {
    if (!this.masked && this.pending) {
      EventCtlReg.set(this.#ctl, "IP", 0);
      this.#send();
    }
  }

  serviced(): void {
    EventCtlReg.set(this.#ctl, "IP", 0);
  }

  #send(): void {
    this.delivered++;
    const addr = EventUaddrReg.get(this.#uaddr, "UADDR") * 2 ** 32 + EventAddrReg.getAddr(this.#addr, "ADDR");
    this.deliver?.({ source: this.source, addr, data: EventDataReg.get(this.#data, "DATA") });
  }
}
