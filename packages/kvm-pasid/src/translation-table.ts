import { Errno, type FaultInjector, type GuestPasid, type HostPasid, KernelError } from "@vsva/kernel";
import { PAGE_SIZE, type PhysMem } from "@vsva/pgtable";
import {
  GUEST_PASID_MAX,
  GuestPasidIndex,
  PASID_DIR_ENTRIES,
  PASID_DIR_ENTRY_BYTES,
  PASID_TABLE_ENTRIES,
  PASID_TABLE_ENTRY_BYTES,
  VmxPasidDirEntry,
  VmxPasidTableEntry,
} from "./layout.js";

/**
 * Where the translation structure's pages come from. A VMM backs it with host
 * pages (`PagePool` from `@vsva/pgtable` fits as is).
 */
export interface TablePageSource {
  /** The physical address of a zeroed, 4 KiB-aligned page, or null when out of memory. */
  alloc(): number | null;
  free(pa: number): void;
}

/** The two PASID directories, as the VMCS fields 0x2038 and 0x203A hold them. */
export interface PasidDirectories {
  readonly low: number;
  readonly high: number;
}

/** Why the CPU could not translate a guest PASID. */
export type TranslationMiss =
  /** Directory entry not present. */
  | "dir-not-present"
  /** Directory entry with a reserved bit set (unverified: treated as a failure). */
  | "dir-reserved"
  /** Translation entry not valid. */
  | "entry-not-valid"
  /** Translation entry with a reserved bit set (unverified: treated as a failure). */
  | "entry-reserved"
  /** A structure read aborted on the memory bus. */
  | "abort";

export type TranslationWalk =
  | { readonly ok: true; readonly hostPasid: HostPasid; readonly reads: number }
  | { readonly ok: false; readonly miss: TranslationMiss; readonly reads: number };

/** The fault-injection point of a translation-structure page allocation. */
export const TABLE_PAGE_FAULT_POINT = "kvm_pasid.table_page";

/** Splits a guest PASID into (directory select, directory index, table index) via the declared layout. */
function split(gpasid: number, scratch: Uint32Array): { high: boolean; dir: number; table: number } {
  scratch[0] = gpasid;
  return {
    high: GuestPasidIndex.get(scratch, "HIGH") === 1,
    dir: GuestPasidIndex.get(scratch, "DIR"),
    table: GuestPasidIndex.get(scratch, "TABLE"),
  };
}

/**
 * The CPU's walk for ENQCMD/ENQCMDS in VMX non-root: directory entry, then
 * translation entry, each read from memory (two references when it succeeds).
 * `gpasid` must be a 20-bit value (the callers take it from IA32_PASID[19:0]
 * or the ENQCMDS source's bits 19:0).
 */
export function walkPasidTranslation(mem: PhysMem, dirs: PasidDirectories, gpasid: number): TranslationWalk {
  const s = split(gpasid, new Uint32Array(1));
  const dirBase = s.high ? dirs.high : dirs.low;
  const de = VmxPasidDirEntry.alloc();
  if (!VmxPasidDirEntry.read(mem, dirBase + s.dir * PASID_DIR_ENTRY_BYTES, de)) return { ok: false, miss: "abort", reads: 1 };
  if (VmxPasidDirEntry.get(de, "P") === 0) return { ok: false, miss: "dir-not-present", reads: 1 };
  if (VmxPasidDirEntry.hasReservedBits(de)) return { ok: false, miss: "dir-reserved", reads: 1 };
  const te = VmxPasidTableEntry.alloc();
  const table = VmxPasidDirEntry.getAddr(de, "TABLE");
  if (!VmxPasidTableEntry.read(mem, table + s.table * PASID_TABLE_ENTRY_BYTES, te)) return { ok: false, miss: "abort", reads: 2 };
  if (VmxPasidTableEntry.get(te, "V") === 0) return { ok: false, miss: "entry-not-valid", reads: 2 };
  if (VmxPasidTableEntry.hasReservedBits(te)) return { ok: false, miss: "entry-reserved", reads: 2 };
  return { ok: true, hostPasid: VmxPasidTableEntry.get(te, "HPASID") as HostPasid, reads: 2 };
}

/**
 * Every valid translation the structure holds, read from memory as the CPU
 * would find it (guest PASID -> host PASID, ascending), for invariant checks:
 * what is in memory, not what the owner believes it wrote.
 */
export function readPasidTranslations(mem: PhysMem, dirs: PasidDirectories): Map<GuestPasid, HostPasid> {
  const out = new Map<GuestPasid, HostPasid>();
  const de = VmxPasidDirEntry.alloc();
  const te = VmxPasidTableEntry.alloc();
  for (const [high, base] of [[0, dirs.low], [1, dirs.high]] as const) {
    for (let d = 0; d < PASID_DIR_ENTRIES; d++) {
      if (!VmxPasidDirEntry.read(mem, base + d * PASID_DIR_ENTRY_BYTES, de)) continue;
      if (VmxPasidDirEntry.get(de, "P") === 0 || VmxPasidDirEntry.hasReservedBits(de)) continue;
      const table = VmxPasidDirEntry.getAddr(de, "TABLE");
      for (let t = 0; t < PASID_TABLE_ENTRIES; t++) {
        if (!VmxPasidTableEntry.read(mem, table + t * PASID_TABLE_ENTRY_BYTES, te)) continue;
        if (VmxPasidTableEntry.get(te, "V") === 0 || VmxPasidTableEntry.hasReservedBits(te)) continue;
        const g = GuestPasidIndex.encode({ HIGH: high, DIR: d, TABLE: t })[0] ?? 0;
        out.set(g as GuestPasid, VmxPasidTableEntry.get(te, "HPASID") as HostPasid);
      }
    }
  }
  return out;
}

/**
 * One VM's guest->host PASID translation structure in memory, written the way
 * the CPU reads it (see `layout.ts`). The two directory pages live as long as
 * the structure; a translation-table page is allocated on the first entry of
 * its 1024-PASID range and freed with its last, so the pages held are bounded
 * by the PASIDs bound. Entries are written so that the CPU never sees a
 * half-built path: a new table's entry is written before the directory entry
 * that makes it reachable, and a directory entry is cleared before its table
 * page is freed.
 */
export class PasidTranslationTable {
  readonly dirs: PasidDirectories;
  readonly #mem: PhysMem;
  readonly #pages: TablePageSource;
  readonly #faults: FaultInjector;
  /** Table page of each (directory, index) in use: key high * 512 + dir index. */
  readonly #tables = new Map<number, { pa: number; used: number }>();
  readonly #scratch = new Uint32Array(1);
  #live = true;

  /**
   * Allocates the two directory pages.
   * Errors: ENOMEM (fault point `kvm_pasid.table_page`, or the source ran
   * dry); EIO the source returned an address that is not a page. Nothing is
   * held on failure.
   */
  constructor(mem: PhysMem, pages: TablePageSource, faults: FaultInjector) {
    this.#mem = mem;
    this.#pages = pages;
    this.#faults = faults;
    const low = this.#allocPage();
    let high: number;
    try {
      high = this.#allocPage();
    } catch (e) {
      pages.free(low);
      throw e;
    }
    this.dirs = { low, high };
  }

  /** Pages held: the two directories and every translation-table page. */
  get pages(): number {
    return this.#live ? 2 + this.#tables.size : 0;
  }

  /**
   * Makes `gpasid` translate to `hpasid` (`vmcs_update_atomic`). The entry
   * must not be valid already (the caller keeps one translation per guest
   * PASID).
   * Errors: EINVAL a PASID out of range or an entry already valid; ENOMEM (a
   * new table page could not be had); EIO the entry could not be written.
   * Nothing changes on failure.
   */
  install(gpasid: GuestPasid, hpasid: HostPasid): void {
    this.#checkLive();
    if (!Number.isInteger(gpasid) || gpasid < 0 || gpasid > GUEST_PASID_MAX) {
      throw new KernelError(Errno.EINVAL, `guest PASID ${gpasid} is outside the 20-bit translation range`);
    }
    if (!Number.isInteger(hpasid) || hpasid < 0 || hpasid >= 2 ** (VmxPasidTableEntry.spec("HPASID").msb + 1)) {
      throw new KernelError(Errno.EINVAL, `host PASID ${hpasid} does not fit the translation entry`);
    }
    const te = VmxPasidTableEntry.encode({ V: 1, HPASID: hpasid });
    const s = split(gpasid, this.#scratch);
    const key = (s.high ? PASID_DIR_ENTRIES : 0) + s.dir;
    const dirBase = s.high ? this.dirs.high : this.dirs.low;
    let t = this.#tables.get(key);
    const fresh = t === undefined;
    if (t === undefined) {
      t = { pa: this.#allocPage(), used: 0 };
    } else {
      const cur = VmxPasidTableEntry.alloc();
      if (VmxPasidTableEntry.read(this.#mem, t.pa + s.table * PASID_TABLE_ENTRY_BYTES, cur) && VmxPasidTableEntry.get(cur, "V") === 1) {
        throw new KernelError(Errno.EINVAL, `guest PASID ${gpasid} already translates`);
      }
    }
    const ok =
      VmxPasidTableEntry.write(this.#mem, t.pa + s.table * PASID_TABLE_ENTRY_BYTES, te) &&
      (!fresh || VmxPasidDirEntry.write(this.#mem, dirBase + s.dir * PASID_DIR_ENTRY_BYTES, this.#dirEntry(t.pa)));
    if (!ok) {
      if (fresh) this.#pages.free(t.pa);
      throw new KernelError(Errno.EIO, `cannot write the translation of guest PASID ${gpasid}`);
    }
    t.used++;
    if (fresh) this.#tables.set(key, t);
  }

  /**
   * Invalidates the translation of `gpasid`; frees its table page when that
   * was the page's last valid entry. Returns false when there was none.
   */
  remove(gpasid: GuestPasid): boolean {
    this.#checkLive();
    if (!Number.isInteger(gpasid) || gpasid < 0 || gpasid > GUEST_PASID_MAX) return false;
    const s = split(gpasid, this.#scratch);
    const key = (s.high ? PASID_DIR_ENTRIES : 0) + s.dir;
    const t = this.#tables.get(key);
    if (t === undefined) return false;
    const at = t.pa + s.table * PASID_TABLE_ENTRY_BYTES;
    const cur = VmxPasidTableEntry.alloc();
    if (!VmxPasidTableEntry.read(this.#mem, at, cur) || VmxPasidTableEntry.get(cur, "V") === 0) return false;
    VmxPasidTableEntry.write(this.#mem, at, VmxPasidTableEntry.alloc());
    t.used--;
    if (t.used === 0) {
      VmxPasidDirEntry.write(this.#mem, (s.high ? this.dirs.high : this.dirs.low) + s.dir * PASID_DIR_ENTRY_BYTES, VmxPasidDirEntry.alloc());
      this.#tables.delete(key);
      this.#pages.free(t.pa);
    }
    return true;
  }

  /** The CPU's walk over this structure. */
  walk(gpasid: number): TranslationWalk {
    this.#checkLive();
    return walkPasidTranslation(this.#mem, this.dirs, gpasid);
  }

  /** What memory holds, guest PASID -> host PASID. */
  read(): Map<GuestPasid, HostPasid> {
    this.#checkLive();
    return readPasidTranslations(this.#mem, this.dirs);
  }

  /** Frees every page (translation tables first, then the directories). Idempotent. */
  destroy(): void {
    if (!this.#live) return;
    this.#live = false;
    for (const t of this.#tables.values()) this.#pages.free(t.pa);
    this.#tables.clear();
    this.#pages.free(this.dirs.low);
    this.#pages.free(this.dirs.high);
  }

  #dirEntry(table: number): Uint32Array {
    const de = VmxPasidDirEntry.encode({ P: 1 });
    VmxPasidDirEntry.setAddr(de, "TABLE", table);
    return de;
  }

  #allocPage(): number {
    this.#faults.inject(TABLE_PAGE_FAULT_POINT);
    const pa = this.#pages.alloc();
    if (pa === null) throw new KernelError(Errno.ENOMEM, "no page for the PASID translation structure");
    if (!Number.isInteger(pa) || pa < 0 || pa % PAGE_SIZE !== 0 || pa >= 2 ** this.#mem.addrBits) {
      throw new KernelError(Errno.EIO, `page source returned 0x${pa.toString(16)}, not a page address`);
    }
    return pa;
  }

  #checkLive(): void {
    if (!this.#live) throw new KernelError(Errno.EINVAL, "PASID translation structure was destroyed");
  }
}
