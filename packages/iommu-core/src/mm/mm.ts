import { Errno, type HostPasid, type Kernel, KernelBug, KernelError, isKernelError } from "@vsva/kernel";
import type { Mapping, PhysMem, PteProt } from "@vsva/pgtable";
import { PAGE_SIZE, type PageAllocator } from "../page-alloc.js";
import "../trace-events.js";
import { type CpuPgtable, type CpuTableWriter, type MmArch, type PgtableFormat, cpuPgtable } from "./cpu-pgtable.js";
import type { MmuNotifier } from "./mmu-notifier.js";
import { type MmAccess, PROT_KNOWN, Prot, protDowngrades, vmaAllows } from "./prot.js";
import { type Vma, VmaList } from "./vma.js";

export interface MmOptions {
  readonly kernel: Kernel;
  /** Physical memory the page tables and the process's pages live in (what the IOMMU walks). */
  readonly mem: PhysMem;
  /** Where table pages and user pages come from (fault-injected, counted). */
  readonly pages: PageAllocator;
  /** Paging levels: 4 (48-bit VA, the default) or 5 (57-bit VA, LA57). */
  readonly levels?: 4 | 5;
  /**
   * The CPU whose tables the mm builds (default "x86-64"). "aarch64": an Arm
   * host's process, 48-bit VA with the 4 KiB granule (4 levels; `levels: 5`
   * is EINVAL), shared with an SMMUv3 through a CD's TTB0.
   */
  readonly arch?: MmArch;
  /** For traces and messages (default "mm"). */
  readonly name?: string;
}

export interface MmapOptions {
  /** MAP_POPULATE: fault every page in now. Best effort, as in Linux: a page that cannot be had is left to fault later. */
  readonly populate?: boolean;
}

/**
 * - live: has users (`mm_users > 0`);
 * - exiting: `exit_mmap` is running (release notifiers, then teardown);
 * - exited: mappings and page tables gone, the pgd page kept (empty) until the last `mmdrop`;
 * - freed: the struct is gone, the PASID given back.
 */
export type MmState = "live" | "exiting" | "exited" | "freed";

/** `handle_mm_fault` as a value: 0 resolved; EFAULT no VMA (SIGSEGV, SEGV_MAPERR); EACCES the VMA forbids the access (SEGV_ACCERR); ENOMEM no page (VM_FAULT_OOM). */
export type MmFaultResult = 0 | typeof Errno.EFAULT | typeof Errno.EACCES | typeof Errno.ENOMEM;

/** The lowest address mmap hands out or accepts (`mmap_min_addr`): EPERM below. */
export const MMAP_MIN_ADDR = PAGE_SIZE;

const PAGE = PAGE_SIZE;

/**
 * A process address space (`struct mm_struct`), anonymous memory only. Its
 * page tables (x86-64, or AArch64 with `arch: "aarch64"`) live in physical
 * memory in the hardware's format, so a VT-d first-level walk or an SMMUv3
 * stage-1 walk from {@link pgd} sees exactly what the CPU sees.
 *
 * Pages are demand-faulted: an mmap creates a VMA and nothing else; the
 * first access (CPU, or a device through a page request) faults a zeroed page
 * in. A reclaimed page keeps its contents in a swap copy and comes back on
 * the next fault. PTE permissions always equal the VMA's; PROT_NONE pages are
 * not present to the hardware (their contents are kept as for reclaim).
 *
 * Life cycle, as in Linux: `mmget`/`mmput` count users (the task, a fault
 * handler borrowing the mm); the last `mmput` runs `exit_mmap` (release
 * notifiers, then unmap everything and free the page tables below the pgd).
 * `mmgrab`/`mmdrop` count references to the struct (users hold one between
 * them; SVA bonds hold their own); the last `mmdrop` frees the pgd and gives
 * the PASID back (`mm_pasid_drop` in `__mmdrop`).
 */
export class Mm {
  readonly name: string;
  readonly levels: 4 | 5;
  readonly arch: MmArch;
  /** How a device must walk {@link pgd} (what an SVA driver checks before sharing it). */
  readonly format: PgtableFormat;
  /** Physical address of the top-level table (CR3 / TTBR0 / a PASID entry's first-level pointer). Valid until the mm is freed. */
  readonly pgd: number;
  /** End of the user address space (`TASK_SIZE`): one page below the canonical hole. */
  readonly taskSize: number;
  /** Where mmap without an address starts looking (the legacy bottom-up layout's TASK_SIZE / 3). */
  readonly mmapBase: number;
  readonly #kernel: Kernel;
  readonly #mem: PhysMem;
  readonly #pages: PageAllocator;
  readonly #writer: CpuTableWriter;
  readonly #vmas = new VmaList();
  /** Resident pages: page VA -> the physical page mapped there (the mm's rss). */
  readonly #resident = new Map<number, number>();
  /** Contents of reclaimed (and PROT_NONE) pages, by page VA. */
  readonly #swap = new Map<number, Uint8Array>();
  readonly #notifiers: MmuNotifier[] = [];
  readonly #pt: CpuPgtable;
  #users = 1;
  #count = 1;
  #taskAlive = true;
  #state: MmState = "live";
  #pasid: HostPasid | null = null;
  #pasidRelease: (() => void) | null = null;

  /** `mm_alloc`: an empty address space with one user (the task). ENOMEM (fault point `mm.alloc`, or no page for the pgd). */
  constructor(opts: MmOptions) {
    const levels: number = opts.levels ?? 4;
    if (levels !== 4 && levels !== 5) throw new KernelError(Errno.EINVAL, `an mm has 4 or 5 paging levels, not ${levels}`);
    const arch: string = opts.arch ?? "x86-64";
    if (arch !== "x86-64" && arch !== "aarch64") throw new KernelError(Errno.EINVAL, `an mm's arch is x86-64 or aarch64, not ${arch}`);
    if (arch === "aarch64" && levels !== 4) throw new KernelError(Errno.EINVAL, "an AArch64 mm has 48-bit VAs (4 levels of 4 KiB tables); 52-bit VAs are not modelled");
    this.levels = levels;
    this.arch = arch;
    this.name = opts.name ?? "mm";
    this.#kernel = opts.kernel;
    this.#mem = opts.mem;
    this.#pages = opts.pages;
    opts.kernel.faults.inject("mm.alloc");
    const pages = opts.pages;
    this.#pt = cpuPgtable({
      arch,
      levels,
      mem: opts.mem,
      alloc: () => {
        try {
          return pages.allocPage("mm.pgtable");
        } catch (e) {
          // The writer reports ENOMEM itself and gives back what it took.
          if (isKernelError(e, Errno.ENOMEM)) return null;
          throw e;
        }
      },
      free: (pa) => {
        pages.freePages(pa);
      },
    });
    this.#writer = this.#pt.writer;
    this.format = this.#pt.format;
    this.pgd = this.#writer.root;
    this.taskSize = this.#pt.taskSize;
    this.mmapBase = Math.floor(this.taskSize / 3 / PAGE) * PAGE;
  }

  // ------------------------------------------------------------ life cycle

  get state(): MmState {
    return this.#state;
  }

  /** `mm_users`. */
  get users(): number {
    return this.#users;
  }

  /** `mm_count`. */
  get count(): number {
    return this.#count;
  }

  /** The PASID given to this mm by its first SVA bind (`mm->pasid`), kept until the mm is freed. */
  get pasid(): HostPasid | null {
    return this.#pasid;
  }

  /** `mmget`: the caller must already hold a user. */
  mmget(): void {
    if (this.#users === 0) throw new KernelBug(`${this.name}: mmget on an mm without users`);
    this.#users++;
  }

  /** `mmget_not_zero`: a user reference unless the mm is exiting or gone. */
  mmgetNotZero(): boolean {
    if (this.#users === 0) return false;
    this.#users++;
    return true;
  }

  /** `mmput`: the last user runs `exit_mmap` and drops the users' reference to the struct. */
  mmput(): void {
    if (this.#users === 0) throw new KernelBug(`${this.name}: mmput underflow`);
    this.#users--;
    if (this.#users > 0) return;
    this.#exitMmap();
    this.mmdrop();
  }

  /** `mmgrab`: keeps the struct (pgd, PASID) alive, not the mappings. */
  mmgrab(): void {
    if (this.#count === 0) throw new KernelBug(`${this.name}: mmgrab on a freed mm`);
    this.#count++;
  }

  /** `mmdrop`: the last one frees the pgd and the PASID. */
  mmdrop(): void {
    if (this.#count === 0) throw new KernelBug(`${this.name}: mmdrop underflow`);
    this.#count--;
    if (this.#count > 0) return;
    if (this.#users > 0) throw new KernelBug(`${this.name}: struct freed with ${this.#users} users`);
    this.#pages.freePages(this.pgd);
    this.#state = "freed";
    const pasid = this.#pasid;
    const release = this.#pasidRelease;
    this.#pasid = null;
    this.#pasidRelease = null;
    release?.();
    this.#kernel.trace.emit("mm.free", "MM", pasid === null ? {} : { hpasid: pasid }, { mm: this.name, pasid });
  }

  /** The task exits: it drops its user reference (`exit_mm` -> `mmput`). Once only. */
  exit(): void {
    if (!this.#taskAlive) throw new KernelBug(`${this.name}: the task exited twice`);
    this.#taskAlive = false;
    this.mmput();
  }

  /**
   * @internal The SVA layer gives the mm its PASID; `release` gives it back
   * when the mm is freed. An mm has at most one PASID in its life.
   */
  setPasid(pasid: HostPasid, release: () => void): void {
    if (this.#pasid !== null) throw new KernelBug(`${this.name}: PASID ${pasid} set over ${this.#pasid}`);
    if (this.#state === "freed") throw new KernelBug(`${this.name}: PASID set on a freed mm`);
    this.#pasid = pasid;
    this.#pasidRelease = release;
  }

  /** @internal Undoes {@link setPasid} for a bind that is rolled back; the caller frees the PASID. */
  clearPasid(): void {
    this.#pasid = null;
    this.#pasidRelease = null;
  }

  // ------------------------------------------------------------ notifiers

  /**
   * `mmu_notifier_register`. EINVAL once the mm has no users (exiting or
   * gone: nothing left to mirror); EEXIST when already registered; ENOMEM
   * (fault point `mm.notifier-alloc`).
   */
  registerNotifier(n: MmuNotifier): void {
    if (this.#users === 0) throw new KernelError(Errno.EINVAL, `${this.name} is ${this.#state}; no notifier can be registered`);
    if (this.#notifiers.includes(n)) throw new KernelError(Errno.EEXIST, `notifier already registered on ${this.name}`);
    this.#kernel.faults.inject("mm.notifier-alloc");
    this.#notifiers.push(n);
  }

  /** `mmu_notifier_unregister`: false when it is not hooked (never was, or already unhooked by release). */
  unregisterNotifier(n: MmuNotifier): boolean {
    const i = this.#notifiers.indexOf(n);
    if (i < 0) return false;
    this.#notifiers.splice(i, 1);
    return true;
  }

  get notifierCount(): number {
    return this.#notifiers.length;
  }

  // ------------------------------------------------------------ mappings

  /** The VMAs, in address order. */
  vmas(): readonly Vma[] {
    return this.#vmas.all();
  }

  findVma(va: number): Vma | undefined {
    return this.#vmas.find(va);
  }

  /** Resident pages (rss). */
  get residentPages(): number {
    return this.#resident.size;
  }

  /** Pages whose contents sit in swap (reclaimed, or PROT_NONE). */
  get swappedPages(): number {
    return this.#swap.size;
  }

  /** The leaf the page tables hold for `va` (no A/D update), or null; null once the mm is freed. */
  lookup(va: number): Mapping | null {
    if (this.#state === "freed") return null;
    return this.#writer.lookup(va);
  }

  /**
   * `mmap(addr, len, prot, MAP_ANONYMOUS | MAP_PRIVATE | MAP_FIXED_NOREPLACE)`,
   * or with `va` null the lowest free range from {@link mmapBase}. `len` is
   * rounded up to pages. Returns the start.
   * EINVAL: bad length, protection or alignment, or the mm has no users;
   * EPERM: below {@link MMAP_MIN_ADDR}; ENOMEM: beyond TASK_SIZE, no room, or
   * injected (`mm.vma-alloc`); EEXIST: overlaps a VMA.
   */
  mmap(va: number | null, len: number, prot: number, opts: MmapOptions = {}): number {
    this.#kernel.scheduler.atomic.mightSleep("mmap");
    this.#checkLive("mmap");
    if (!Number.isSafeInteger(len) || len <= 0) throw new KernelError(Errno.EINVAL, `length ${len}`);
    if (!Number.isInteger(prot) || (prot & ~PROT_KNOWN) !== 0) throw new KernelError(Errno.EINVAL, `prot 0x${prot.toString(16)}`);
    const size = roundUp(len);
    let start: number;
    if (va === null) {
      start = this.#vmas.findGap(size, this.mmapBase, this.taskSize);
      if (start < 0) throw new KernelError(Errno.ENOMEM, `no free range of 0x${size.toString(16)} bytes in ${this.name}`);
    } else {
      if (!Number.isSafeInteger(va) || va % PAGE !== 0) throw new KernelError(Errno.EINVAL, `address ${hex(va)} is not page aligned`);
      if (va < MMAP_MIN_ADDR) throw new KernelError(Errno.EPERM, `address ${hex(va)} is below mmap_min_addr`);
      if (size > this.taskSize - va) throw new KernelError(Errno.ENOMEM, `[${hex(va)}, +${hex(size)}) goes beyond TASK_SIZE`);
      if (this.#vmas.overlapping(va, va + size).length > 0) throw new KernelError(Errno.EEXIST, `[${hex(va)}, +${hex(size)}) overlaps a mapping`);
      start = va;
    }
    this.#kernel.faults.inject("mm.vma-alloc");
    this.#vmas.insert(start, start + size, prot);
    this.#kernel.trace.emit("mm.mmap", "MM", {}, { mm: this.name, start, end: start + size, prot });
    if (opts.populate === true) for (let p = start; p < start + size; p += PAGE) this.#fault(p, {});
    return start;
  }

  /**
   * `munmap`: removes [va, va + len) (rounded up to pages) from the VMAs,
   * clears the PTEs, tells the notifiers, then frees the pages. Holes are
   * fine. EINVAL: misaligned, empty or outside the user range, or the mm has
   * no users; ENOMEM: a VMA split was refused (`mm.vma-alloc`).
   */
  munmap(va: number, len: number): void {
    this.#kernel.scheduler.atomic.mightSleep("munmap");
    this.#checkLive("munmap");
    const end = this.#checkRange(va, len);
    if (this.#vmas.needsSplit(va, end)) this.#kernel.faults.inject("mm.vma-alloc");
    this.#vmas.remove(va, end);
    for (const v of [...this.#swap.keys()]) if (v >= va && v < end) this.#swap.delete(v);
    const pages = this.#zap(va, end, false);
    this.#kernel.trace.emit("mm.munmap", "MM", {}, { mm: this.name, start: va, end, pages });
  }

  /**
   * `mprotect`: new protection for [va, va + len), which must be mapped
   * throughout (ENOMEM otherwise, as Linux). Resident PTEs follow; if any lost
   * a permission the notifiers are told before returning. PROT_NONE takes the
   * pages out of the tables (their contents kept). EINVAL: bad range or prot;
   * ENOMEM: hole, or a refused split (`mm.vma-alloc`).
   */
  mprotect(va: number, len: number, prot: number): void {
    this.#kernel.scheduler.atomic.mightSleep("mprotect");
    this.#checkLive("mprotect");
    const end = this.#checkRange(va, len);
    if (!Number.isInteger(prot) || (prot & ~PROT_KNOWN) !== 0) throw new KernelError(Errno.EINVAL, `prot 0x${prot.toString(16)}`);
    if (!this.#vmas.covers(va, end)) throw new KernelError(Errno.ENOMEM, `[${hex(va)}, ${hex(end)}) is not entirely mapped`);
    if (this.#vmas.needsSplit(va, end)) this.#kernel.faults.inject("mm.vma-alloc");
    const before = this.#vmas.overlapping(va, end);
    this.#vmas.setProt(va, end, prot);
    if ((prot & PROT_KNOWN) === 0) {
      this.#zap(va, end, true);
    } else {
      let downgraded = false;
      for (const [v] of this.#residentIn(va, end)) {
        const old = before.find((b) => v >= b.start && v < b.end)?.prot ?? Prot.NONE;
        this.#writer.protect(v, PAGE, pteProt(prot));
        if (protDowngrades(old, prot)) downgraded = true;
      }
      if (downgraded) this.#invalidate(va, end);
    }
    this.#kernel.trace.emit("mm.mprotect", "MM", {}, { mm: this.name, start: va, end, prot });
  }

  /**
   * Page reclaim over [va, va + len): each resident page is taken out of the
   * tables, the notifiers are told, its contents go to swap and the page is
   * freed. The next access faults it back in. Returns the pages reclaimed.
   */
  reclaim(va: number, len: number): number {
    this.#checkLive("reclaim");
    const end = this.#checkRange(va, len);
    const pages = this.#zap(va, end, true);
    this.#kernel.trace.emit("mm.reclaim", "MM", {}, { mm: this.name, start: va, end, pages });
    return pages;
  }

  // ------------------------------------------------------------ faults

  /**
   * `handle_mm_fault` for the CPU and for IO page faults: makes the page at
   * `va` present with the VMA's permissions. May sleep (allocates), so never
   * from atomic context (a KernelBug there). See {@link MmFaultResult}.
   */
  handleMmFault(va: number, access: MmAccess = {}): MmFaultResult {
    this.#kernel.scheduler.atomic.mightSleep("handle_mm_fault");
    const r = this.#fault(Number.isFinite(va) ? Math.floor(va / PAGE) * PAGE : Number.NaN, access);
    this.#kernel.trace.emit("mm.fault", "MM", this.#pasid === null ? {} : { hpasid: this.#pasid }, {
      mm: this.name,
      va,
      write: access.write === true,
      result: r,
    });
    return r;
  }

  /**
   * A CPU load of `len` bytes at `va`, through the page tables (setting A
   * bits), faulting pages in as needed. EFAULT outside any VMA, EACCES when
   * the VMA forbids reading (the process would get SIGSEGV), ENOMEM.
   */
  read(va: number, len: number): Uint8Array {
    this.#checkCpuRange(va, len);
    const out = new Uint8Array(len);
    for (let off = 0; off < len; ) {
      const n = Math.min(len - off, PAGE - ((va + off) % PAGE));
      const pa = this.#cpuTranslate(va + off, false);
      if (!this.#mem.readBytes(pa, out.subarray(off, off + n))) throw new KernelBug(`${this.name}: page at ${hex(pa)} is not in memory`);
      off += n;
    }
    return out;
  }

  /** A CPU store of `data` at `va` (setting A and D). Errors as {@link read}, EACCES without write permission. */
  write(va: number, data: Uint8Array): void {
    this.#checkCpuRange(va, data.length);
    for (let off = 0; off < data.length; ) {
      const n = Math.min(data.length - off, PAGE - ((va + off) % PAGE));
      const pa = this.#cpuTranslate(va + off, true);
      if (!this.#mem.writeBytes(pa, data.subarray(off, off + n))) throw new KernelBug(`${this.name}: page at ${hex(pa)} is not in memory`);
      off += n;
    }
  }

  toString(): string {
    return `${this.name}(${this.#state}, pasid ${this.#pasid ?? "-"})`;
  }

  // ------------------------------------------------------------ internals

  #checkLive(what: string): void {
    if (this.#users === 0) throw new KernelError(Errno.EINVAL, `${what} on ${this.name}, which is ${this.#state}`);
  }

  #checkRange(va: number, len: number): number {
    if (!Number.isSafeInteger(va) || va % PAGE !== 0) throw new KernelError(Errno.EINVAL, `address ${hex(va)} is not page aligned`);
    if (!Number.isSafeInteger(len) || len <= 0) throw new KernelError(Errno.EINVAL, `length ${len}`);
    const size = roundUp(len);
    if (va < 0 || size > this.taskSize - va) throw new KernelError(Errno.EINVAL, `[${hex(va)}, +${hex(size)}) is outside the user address space`);
    return va + size;
  }

  #checkCpuRange(va: number, len: number): void {
    if (!Number.isSafeInteger(va) || !Number.isSafeInteger(len) || len < 0 || va < 0 || len > this.taskSize - va) {
      throw new KernelError(Errno.EFAULT, `[${hex(va)}, +${len}) is outside the user address space`);
    }
  }

  /** One CPU access: walk; on a fault, handle it and walk again. */
  #cpuTranslate(va: number, write: boolean): number {
    if (this.#state !== "freed") {
      const w = this.#pt.walk(va, write);
      if (w.ok) return w.pa;
    }
    const r = this.handleMmFault(va, { write });
    if (r !== 0) throw new KernelError(r, `SIGSEGV: ${write ? "write" : "read"} at ${hex(va)} in ${this.name}`);
    const w = this.#pt.walk(va, write);
    if (!w.ok) throw new KernelBug(`${this.name}: ${hex(va)} still faults (${w.kind}) after the fault was handled`);
    return w.pa;
  }

  #fault(page: number, access: MmAccess): MmFaultResult {
    if (this.#users === 0 || !Number.isSafeInteger(page)) return Errno.EFAULT;
    const vma = this.#vmas.find(page);
    if (vma === undefined) return Errno.EFAULT;
    if (!vmaAllows(vma.prot, access)) return Errno.EACCES;
    // Present already: another fault (CPU or IO) got here first, or the
    // device saw a translation since flushed. Nothing to do.
    if (this.#resident.has(page)) return 0;
    let pa: number;
    try {
      pa = this.#pages.allocPage("mm.page");
    } catch (e) {
      if (isKernelError(e, Errno.ENOMEM)) return Errno.ENOMEM;
      throw e;
    }
    const saved = this.#swap.get(page);
    if (saved !== undefined && !this.#mem.writeBytes(pa, saved)) {
      this.#pages.freePages(pa);
      throw new KernelBug(`${this.name}: a fresh page at ${hex(pa)} is not in memory`);
    }
    try {
      this.#writer.map(page, pa, PAGE, pteProt(vma.prot));
    } catch (e) {
      this.#pages.freePages(pa);
      if (isKernelError(e, Errno.ENOMEM)) return Errno.ENOMEM;
      throw e;
    }
    this.#resident.set(page, pa);
    this.#swap.delete(page);
    return 0;
  }

  #residentIn(start: number, end: number): [number, number][] {
    const out: [number, number][] = [];
    for (const e of this.#resident) if (e[0] >= start && e[0] < end) out.push(e);
    return out.sort((a, b) => a[0] - b[0]);
  }

  /**
   * Takes the resident pages of [start, end) out of the tables, tells the
   * notifiers, then (with `keep`) saves their contents and frees them — in
   * that order, so no device can reach a page once it is reused.
   */
  #zap(start: number, end: number, keep: boolean): number {
    const victims = this.#residentIn(start, end);
    if (victims.length === 0) return 0;
    for (const [v] of victims) {
      this.#writer.unmap(v, PAGE);
      this.#resident.delete(v);
    }
    this.#invalidate(start, end);
    for (const [v, pa] of victims) {
      if (keep) {
        const buf = new Uint8Array(PAGE);
        if (!this.#mem.readBytes(pa, buf)) throw new KernelBug(`${this.name}: page at ${hex(pa)} is not in memory`);
        this.#swap.set(v, buf);
      }
      this.#pages.freePages(pa);
    }
    return victims.length;
  }

  #invalidate(start: number, end: number): void {
    const ns = [...this.#notifiers];
    this.#kernel.trace.emit("mm.invalidate-range", "MM", this.#pasid === null ? {} : { hpasid: this.#pasid }, { mm: this.name, start, end, notifiers: ns.length });
    if (ns.length === 0) return;
    // The old `invalidate_range` ran under the page-table lock: notifiers flush, they do not sleep.
    this.#kernel.scheduler.atomic.run("mmu_notifier_invalidate_range", () => {
      for (const n of ns) n.invalidateRange(this, start, end);
    });
  }

  /**
   * `exit_mmap`: release notifiers first, while the tables still translate
   * (most recently registered first, as `mmu_notifier_release` walks its
   * list), unhook them, then unmap everything, free the pages and every
   * table below the pgd, and clear the pgd. The pgd page stays (empty) until
   * the last `mmdrop`, so a PASID entry still pointing at it walks to nothing.
   */
  #exitMmap(): void {
    this.#kernel.scheduler.atomic.mightSleep("exit_mmap");
    this.#state = "exiting";
    const ns = [...this.#notifiers].reverse();
    this.#kernel.trace.emit("mm.release", "MM", this.#pasid === null ? {} : { hpasid: this.#pasid }, { mm: this.name, notifiers: ns.length });
    for (const n of ns) {
      // The exit cannot be refused or retried: a release callback that throws is a WARN, and exit_mmap goes on.
      try {
        n.release(this);
      } catch (e) {
        this.#kernel.log.warn("mm.release", `${this.name}: an mmu notifier's release threw (${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}); exit continued`, "MM");
      }
    }
    this.#notifiers.length = 0;
    const victims = this.#residentIn(-Infinity, Infinity);
    for (const [v] of victims) this.#writer.unmap(v, PAGE);
    for (const [, pa] of victims) this.#pages.freePages(pa);
    this.#resident.clear();
    this.#swap.clear();
    this.#vmas.clear();
    const tables = this.#writer.tablePages().filter((t) => t !== this.pgd);
    for (const t of tables) this.#pages.freePages(t);
    if (!this.#mem.writeBytes(this.pgd, new Uint8Array(PAGE))) throw new KernelBug(`${this.name}: pgd at ${hex(this.pgd)} is not in memory`);
    this.#state = "exited";
    this.#kernel.trace.emit("mm.exit", "MM", this.#pasid === null ? {} : { hpasid: this.#pasid }, { mm: this.name, pages: victims.length, tables: tables.length });
  }
}

function pteProt(prot: number): PteProt {
  return { write: (prot & Prot.WRITE) !== 0, exec: (prot & Prot.EXEC) !== 0, user: true };
}

function roundUp(len: number): number {
  return Math.ceil(len / PAGE) * PAGE;
}

function hex(n: number): string {
  return Number.isFinite(n) ? (n < 0 ? "-0x" + (-n).toString(16) : "0x" + n.toString(16)) : String(n);
}
