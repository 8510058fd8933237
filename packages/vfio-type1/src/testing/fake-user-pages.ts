import { Errno, KernelError } from "@vsva/kernel";
import type { UserPages } from "../user.js";

const PAGE = 4096;

/**
 * A user address range backed page by page by host pages, with pin counts:
 * what a VMM's guest-RAM mapping looks like to get_user_pages. `layout`
 * "contiguous" backs it with one physically contiguous run (as 2 MiB pages
 * would), "scattered" with every page on its own, in reverse order.
 */
export class FakeUserPages implements UserPages {
  readonly base: number;
  readonly size: number;
  readonly #host: number[];
  readonly #pins: number[];

  constructor(opts: { base: number; size: number; hostBase: number; layout?: "contiguous" | "scattered" }) {
    this.base = opts.base;
    this.size = opts.size;
    const n = opts.size / PAGE;
    this.#host = Array.from({ length: n }, (_, i) => opts.hostBase + (opts.layout === "scattered" ? (n - 1 - i) * 2 : i) * PAGE);
    this.#pins = new Array<number>(n).fill(0);
  }

  hostAddr(vaddr: number): number | undefined {
    return this.#host[Math.floor((vaddr - this.base) / PAGE)];
  }

  get pinned(): number {
    return this.#pins.reduce((a, b) => a + b, 0);
  }

  pin(vaddr: number, npages: number): number[] {
    const first = (vaddr - this.base) / PAGE;
    if (!Number.isInteger(first) || first < 0 || first + npages > this.#host.length) {
      throw new KernelError(Errno.EFAULT, `[0x${vaddr.toString(16)}, +${npages} pages) is not mapped`);
    }
    const out: number[] = [];
    for (let i = 0; i < npages; i++) {
      this.#pins[first + i] = (this.#pins[first + i] ?? 0) + 1;
      out.push(this.#host[first + i] ?? 0);
    }
    return out;
  }

  unpin(vaddr: number, npages: number): void {
    const first = (vaddr - this.base) / PAGE;
    for (let i = 0; i < npages; i++) this.#pins[first + i] = (this.#pins[first + i] ?? 0) - 1;
  }
}
