import { PASID_DIR_ENTRY_BYTES, PASID_ENTRY_BYTES, PasidDirEntry, PasidEntry, type PhysMem, pasidDirIndex, pasidTableIndex } from "@vsva/iommu-hw";
import type { PageAllocator } from "@vsva/iommu-core";
import { KernelBug } from "@vsva/kernel";

const PAGE = 4096;
/** VT-d spec §9.4 (PDTS): the directory has at least 2^7 entries (PDTS = 0). */
const MIN_DIR_BITS = 7;

/**
 * One device's PASID directory and its PASID tables (VT-d spec §9.5, §9.6), per
 * physical device "for better security" (v11 VT-d bind_gpasid review, iommu list, 2020). The directory is sized
 * for the device's PASID width and allocated with the device; each 64-entry
 * table is allocated the first time a PASID in its range is set up, from the
 * page allocator, and kept until the device goes (as Linux keeps them).
 */
export class PasidTable {
  readonly dir: number;
  /** Directory entries: 2^(pdts + 7). */
  readonly pdts: number;
  /** PASIDs the directory covers. */
  readonly maxPasids: number;
  readonly #dirOrder: number;
  readonly #mem: PhysMem;
  readonly #pages: PageAllocator;
  /** directory index -> PASID table page. */
  readonly #tables = new Map<number, number>();
  readonly #de = PasidDirEntry.alloc();
  readonly #pe = PasidEntry.alloc();

  /** ENOMEM. `pasidBits` 0 still gets the smallest directory: PASID 0 serves requests without PASID. */
  constructor(mem: PhysMem, pages: PageAllocator, pasidBits: number) {
    const dirBits = Math.max(pasidBits - 6, MIN_DIR_BITS);
    const bytes = 2 ** dirBits * PASID_DIR_ENTRY_BYTES;
    let order = 0;
    while (PAGE * 2 ** order < bytes) order++;
    this.#mem = mem;
    this.#pages = pages;
    this.#dirOrder = order;
    this.pdts = dirBits - MIN_DIR_BITS;
    this.maxPasids = 2 ** (dirBits + 6);
    this.dir = pages.allocPages(order, "vtd.pasid-dir");
  }

  /** Address of the entry for `pasid`; allocates its table when `alloc` (ENOMEM), else -1 when there is none. */
  entryAddr(pasid: number, alloc: boolean): number {
    if (!Number.isInteger(pasid) || pasid < 0 || pasid >= this.maxPasids) throw new KernelBug(`PASID ${pasid} outside this directory`);
    const di = pasidDirIndex(pasid);
    let table = this.#tables.get(di);
    if (table === undefined) {
      if (!alloc) return -1;
      table = this.#pages.allocPage("vtd.pasid-table");
      this.#tables.set(di, table);
      const de = this.#de;
      de.fill(0);
      PasidDirEntry.setAddr(de, "SMPTBLPTR", table);
      PasidDirEntry.set(de, "P", 1);
      PasidDirEntry.write(this.#mem, this.dir + di * PASID_DIR_ENTRY_BYTES, de);
    }
    return table + pasidTableIndex(pasid) * PASID_ENTRY_BYTES;
  }

  /** The entry for `pasid` as memory holds it, or null when its table was never allocated. */
  read(pasid: number, into: Uint32Array = this.#pe): Uint32Array | null {
    const at = this.entryAddr(pasid, false);
    if (at < 0) return null;
    if (!PasidEntry.read(this.#mem, at, into)) throw new KernelBug(`PASID entry ${pasid} unreadable`);
    return into;
  }

  isPresent(pasid: number): boolean {
    const e = this.read(pasid);
    return e !== null && PasidEntry.get(e, "P") === 1;
  }

  /** Writes a whole entry, qword 0 (the present bit) last. ENOMEM when its table cannot be had. */
  write(pasid: number, v: Uint32Array): void {
    const at = this.entryAddr(pasid, true);
    const m = this.#mem;
    for (let w = 2; w < v.length; w += 2) m.write64(at + w * 4, v[w] ?? 0, v[w + 1] ?? 0);
    m.write64(at, v[0] ?? 0, v[1] ?? 0);
  }

  /** Clears an entry, present bit first. */
  clear(pasid: number): void {
    const at = this.entryAddr(pasid, false);
    if (at < 0) return;
    const m = this.#mem;
    m.write64(at, 0, 0);
    for (let off = 8; off < PASID_ENTRY_BYTES; off += 8) m.write64(at + off, 0, 0);
  }

  /**
   * Sets FPD in the entry (present or not): the unit stops recording
   * non-recoverable faults for the PASID (`fault_ignore` in Linux's
   * teardown, used when the mm exits while the device may still issue DMA).
   */
  setFpd(pasid: number): void {
    const e = this.read(pasid);
    if (e === null) return;
    PasidEntry.set(e, "FPD", 1);
    this.#mem.write64(this.entryAddr(pasid, false), e[0] ?? 0, e[1] ?? 0);
  }

  /** Pages this table holds (directory blocks count as one allocation). */
  get tablePages(): number {
    return this.#tables.size;
  }

  /** Frees every PASID table and the directory; the context entry must be cleared and flushed first. */
  free(): void {
    for (const pa of this.#tables.values()) this.#pages.freePages(pa);
    this.#tables.clear();
    this.#pages.freePages(this.dir);
  }

  /** For the directory order in reports. */
  get dirOrder(): number {
    return this.#dirOrder;
  }
}
