import { CONTEXT_ENTRY_BYTES, ContextEntry, type PhysMem, ROOT_ENTRY_BYTES, RootEntry, RegOffset, RtaddrReg } from "@vsva/iommu-hw";
import type { PageAllocator } from "@vsva/iommu-core";
import { Errno, KernelBug, KernelError } from "@vsva/kernel";
import { globalCommand } from "./gcmd.js";
import { type VtdMmio, writeReg64 } from "./mmio.js";

/** What a scalable-mode context entry says about a device (A2.2). */
export interface ContextSetup {
  readonly pasidDir: number;
  /** PDTS: the directory has 2^(pdts + 7) entries. */
  readonly pdts: number;
  readonly deviceTlb: boolean;
  readonly pageRequests: boolean;
}

/**
 * The root table and the per-bus scalable-mode context tables (A2.1, A2.2):
 * a root entry points at a lower table (devfn 0x00–0x7F) and an upper one
 * (0x80–0xFF), each allocated the first time a device needs it. Entries are
 * written with the present bit last when set and first when cleared, so the
 * unit never sees a half-written present entry.
 */
export class ContextTables {
  readonly root: number;
  readonly #mem: PhysMem;
  readonly #pages: PageAllocator;
  /** bus*2 + upper -> context table page. */
  readonly #tables = new Map<number, number>();
  readonly #re = RootEntry.alloc();
  readonly #ce = ContextEntry.alloc();

  /** Allocates the root table. ENOMEM. */
  constructor(mem: PhysMem, pages: PageAllocator) {
    this.#mem = mem;
    this.#pages = pages;
    this.root = pages.allocPage("vtd.root-table");
  }

  /** Points RTADDR at the root table in scalable mode (TTM=1) and latches it with SRTP. EIO. */
  install(mmio: VtdMmio): void {
    const rt = RtaddrReg.alloc();
    RtaddrReg.setAddr(rt, "RTA", this.root);
    RtaddrReg.set(rt, "TTM", 1);
    writeReg64(mmio, RegOffset.RTADDR, rt);
    globalCommand(mmio, "SRTP");
  }

  /**
   * Writes the context entry of `sid` (allocating its context table if
   * needed). EBUSY if present already; ENOMEM with nothing changed.
   */
  set(sid: number, s: ContextSetup): void {
    const at = this.#entryAddr(sid, true);
    const ce = this.#ce;
    if (!ContextEntry.read(this.#mem, at, ce)) throw new KernelBug(`context entry of ${sid} unreadable`);
    if (ContextEntry.get(ce, "P") === 1) throw new KernelError(Errno.EBUSY, `context entry of requester ${sid} is already present`);
    ce.fill(0);
    ContextEntry.setAddr(ce, "PASIDDIRPTR", s.pasidDir);
    ContextEntry.set(ce, "PDTS", s.pdts);
    ContextEntry.set(ce, "DTE", s.deviceTlb ? 1 : 0);
    // PASIDE stays clear until the first PASID user: see enablePasid().
    ContextEntry.set(ce, "PRE", s.pageRequests ? 1 : 0);
    // RID_PASID stays 0: requests without PASID use PASID entry 0 (A2.5).
    ContextEntry.set(ce, "P", 1);
    this.#writeEntry(at, ce, true);
  }

  /**
   * Sets PASIDE in the present context entry of `sid`; false when it was
   * set already. As in v5.10, where the scalable-mode context entry is
   * written without it (`domain_context_mapping_one()`) and PASID use turns
   * it on the first time (drivers/iommu/intel/iommu.c:
   * intel_iommu_enable_pasid()). The caller flushes the context cache.
   */
  enablePasid(sid: number): boolean {
    const at = this.#entryAddr(sid, false);
    const ce = this.#ce;
    if (at < 0 || !ContextEntry.read(this.#mem, at, ce) || ContextEntry.get(ce, "P") === 0) {
      throw new KernelBug(`context entry of requester ${sid} is not present`);
    }
    if (ContextEntry.get(ce, "PASIDE") === 1) return false;
    ContextEntry.set(ce, "PASIDE", 1);
    this.#mem.write64(at, ce[0] ?? 0, ce[1] ?? 0);
    return true;
  }

  /** Clears the context entry of `sid`, if any. The caller flushes the context cache. */
  clear(sid: number): void {
    const at = this.#entryAddr(sid, false);
    if (at < 0) return;
    this.#ce.fill(0);
    this.#writeEntry(at, this.#ce, false);
  }

  /** Context-table pages held, for leak accounting. */
  get tablePages(): number {
    return this.#tables.size;
  }

  /** Frees every context table and the root table. The unit must no longer use them (translation off). */
  free(): void {
    for (const pa of this.#tables.values()) this.#pages.freePages(pa);
    this.#tables.clear();
    this.#pages.freePages(this.root);
  }

  #entryAddr(sid: number, alloc: boolean): number {
    const bus = (sid >>> 8) & 0xff;
    const devfn = sid & 0xff;
    const upper = devfn >= 0x80 ? 1 : 0;
    const key = bus * 2 + upper;
    let table = this.#tables.get(key);
    if (table === undefined) {
      if (!alloc) return -1;
      table = this.#pages.allocPage("vtd.context-table");
      this.#tables.set(key, table);
      const re = this.#re;
      const rpa = this.root + bus * ROOT_ENTRY_BYTES;
      if (!RootEntry.read(this.#mem, rpa, re)) throw new KernelBug(`root entry of bus ${bus} unreadable`);
      // UCTP lies in qword 1: its value is the address >> 12, not >> its wide bit position.
      if (upper === 1) {
        RootEntry.set(re, "UCTP", table / 4096);
        RootEntry.set(re, "UP", 1);
      } else {
        RootEntry.setAddr(re, "LCTP", table);
        RootEntry.set(re, "LP", 1);
      }
      RootEntry.write(this.#mem, rpa, re);
    }
    return table + (devfn & 0x7f) * CONTEXT_ENTRY_BYTES;
  }

  /** qword 0 (present bit) last when setting, first when clearing. */
  #writeEntry(pa: number, v: Uint32Array, setting: boolean): void {
    const m = this.#mem;
    const q0 = (): boolean => m.write64(pa, v[0] ?? 0, v[1] ?? 0);
    if (!setting) q0();
    for (let w = 2; w < v.length; w += 2) m.write64(pa + w * 4, v[w] ?? 0, v[w + 1] ?? 0);
    if (setting) q0();
  }
}
