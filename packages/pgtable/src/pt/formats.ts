import { Errno, KernelError } from "@vsva/kernel";
import { levelShift } from "./geometry.js";
import { SL, SL_PDE_2M, SL_PDPTE_1G, SL_PTE } from "./sl-pte.js";
import { X86, X86_PDE_2M, X86_PDPTE_1G, X86_PTE } from "./x86-pte.js";

/**
 * Permissions and attributes of a leaf, as a table writer sets them. Unset
 * fields take the default noted on each: the common case of a user page
 * mapped read-only and not executable.
 */
export interface PteProt {
  /** Default true. Second level only: false maps a write-only page. x86 pages are always readable. */
  readonly read?: boolean;
  readonly write: boolean;
  /** Default false. x86: clears XD (only meaningful when the format sets XD at all); second level: X. */
  readonly exec?: boolean;
  /** Default true. x86 U/S; ignored by the second level. */
  readonly user?: boolean;
  /** Default false. x86 G. */
  readonly global?: boolean;
  /** Default false: preset A (x86, or second level used with SLADE). */
  readonly accessed?: boolean;
  /** Default false: preset D. */
  readonly dirty?: boolean;
  /** Default false. Second-level SNP (needs ECAP.SC on the walker side). */
  readonly snoop?: boolean;
}

/** What a leaf says, decoded. */
export interface LeafProt {
  readonly read: boolean;
  readonly write: boolean;
  readonly exec: boolean;
  readonly user: boolean;
  readonly global: boolean;
  readonly accessed: boolean;
  readonly dirty: boolean;
  readonly snoop: boolean;
}

/** One of the two entry formats, as the table writer needs it. Entries are [lo, hi] dwords. */
export interface PageTableFormat {
  readonly name: string;
  readonly levels: number;
  /** Inclusive lower and exclusive upper bound of the input addresses the tables can map. */
  readonly vaMin: number;
  readonly vaEnd: number;
  /** Whether a leaf may sit at `level` (1 always; 2 and 3 as the format's large pages allow). */
  leafAllowed(level: number): boolean;
  tableEntry(table: number): Uint32Array;
  leafEntry(pa: number, level: number, prot: PteProt): Uint32Array;
  present(lo: number): boolean;
  isLeaf(lo: number, level: number): boolean;
  /** Next-table address of a non-leaf, or frame base of a leaf at `level`. */
  target(v: Uint32Array, level: number): number;
  prot(v: Uint32Array, level: number): LeafProt;
  /** The accessed/dirty bits of `from`, for carrying them over when rewriting a leaf. */
  adBits(lo: number): number;
}

export interface X86FormatOptions {
  readonly levels: 4 | 5;
  /** Set XD on non-executable leaves (the tables are meant for NXE=1 walks). Default true. */
  readonly nx?: boolean;
  /** Allow 1 GiB leaves (CAP.FL1GP / CPU pdpe1gb). Default true. 2 MiB leaves are always allowed. */
  readonly pages1g?: boolean;
}

function x86Leaf(level: number): typeof X86_PTE | typeof X86_PDE_2M {
  return level === 3 ? X86_PDPTE_1G : level === 2 ? X86_PDE_2M : X86_PTE;
}

/** The x86-64 format (VT-d spec §9.7), for VT-d first-level tables and the CPU page tables of a process. */
export function x86Format(opts: X86FormatOptions): PageTableFormat {
  // Checked at run time too: the options may come from a caller that is not type-checked.
  const levels: number = opts.levels;
  if (levels !== 4 && levels !== 5) throw new KernelError(Errno.EINVAL, `x86 paging has 4 or 5 levels, not ${String(levels)}`);
  const nx = opts.nx ?? true;
  const pages1g = opts.pages1g ?? true;
  const half = 2 ** (levelShift(levels + 1) - 1);
  return {
    name: `x86-${levels}level`,
    levels,
    vaMin: -half,
    vaEnd: half,
    leafAllowed: (level) => level === 1 || level === 2 || (level === 3 && pages1g),
    // Non-leaf entries grant everything, as Linux builds them: the leaf decides.
    tableEntry: (table) => X86_PTE.encode({ P: 1, RW: 1, US: 1, ADDR: table / 4096 }),
    leafEntry(pa, level, prot) {
      if (prot.read === false) throw new KernelError(Errno.EINVAL, "an x86 page cannot be mapped without read permission");
      const layout = x86Leaf(level);
      return layout.encode({
        P: 1,
        RW: prot.write ? 1 : 0,
        US: prot.user === false ? 0 : 1,
        G: prot.global === true ? 1 : 0,
        A: prot.accessed === true ? 1 : 0,
        D: prot.dirty === true ? 1 : 0,
        PS: level > 1 ? 1 : 0,
        XD: nx && prot.exec !== true ? 1 : 0,
        ADDR: pa / 2 ** layout.spec("ADDR").lsb,
      });
    },
    present: (lo) => (lo & X86.P) !== 0,
    isLeaf: (lo, level) => level === 1 || ((lo & X86.PS) !== 0 && (level === 2 || level === 3)),
    target(v, level) {
      const layout = (v[0] ?? 0) & X86.PS && (level === 2 || level === 3) ? x86Leaf(level) : X86_PTE;
      return layout.getAddr(v, "ADDR");
    },
    prot(v) {
      const f = X86_PTE.decode(v);
      return {
        read: true,
        write: f.RW === 1,
        exec: f.XD === 0,
        user: f.US === 1,
        global: f.G === 1,
        accessed: f.A === 1,
        dirty: f.D === 1,
        snoop: false,
      };
    },
    adBits: (lo) => lo & (X86.A | X86.D),
  };
}

export interface SlFormatOptions {
  readonly levels: 3 | 4 | 5;
  /** SLLPS 2 MiB. Default true. */
  readonly pages2m?: boolean;
  /** SLLPS 1 GiB. Default true. */
  readonly pages1g?: boolean;
}

function slLeaf(level: number): typeof SL_PTE | typeof SL_PDE_2M {
  return level === 3 ? SL_PDPTE_1G : level === 2 ? SL_PDE_2M : SL_PTE;
}

/** The VT-d second-level format (VT-d spec §9.8). */
export function slFormat(opts: SlFormatOptions): PageTableFormat {
  const levels: number = opts.levels;
  if (levels !== 3 && levels !== 4 && levels !== 5) {
    throw new KernelError(Errno.EINVAL, `second-level paging has 3, 4 or 5 levels, not ${String(levels)}`);
  }
  const pages2m = opts.pages2m ?? true;
  const pages1g = opts.pages1g ?? true;
  return {
    name: `vtd-sl-${levels}level`,
    levels,
    vaMin: 0,
    vaEnd: 2 ** levelShift(levels + 1),
    leafAllowed: (level) => level === 1 || (level === 2 && pages2m) || (level === 3 && pages1g),
    // X in non-leaf entries too, so execute works when the PASID entry sets SLEE.
    tableEntry: (table) => SL_PTE.encode({ R: 1, W: 1, X: 1, ADDR: table / 4096 }),
    leafEntry(pa, level, prot) {
      const read = prot.read ?? true;
      if (!read && !prot.write) throw new KernelError(Errno.EINVAL, "a second-level page needs read or write permission to be present");
      const layout = slLeaf(level);
      return layout.encode({
        R: read ? 1 : 0,
        W: prot.write ? 1 : 0,
        X: prot.exec === true ? 1 : 0,
        PS: level > 1 ? 1 : 0,
        A: prot.accessed === true ? 1 : 0,
        D: prot.dirty === true ? 1 : 0,
        SNP: prot.snoop === true ? 1 : 0,
        ADDR: pa / 2 ** layout.spec("ADDR").lsb,
      });
    },
    present: (lo) => (lo & (SL.R | SL.W)) !== 0,
    isLeaf: (lo, level) => level === 1 || ((lo & SL.PS) !== 0 && (level === 2 || level === 3)),
    target(v, level) {
      const layout = (v[0] ?? 0) & SL.PS && (level === 2 || level === 3) ? slLeaf(level) : SL_PTE;
      return layout.getAddr(v, "ADDR");
    },
    prot(v) {
      const f = SL_PTE.decode(v);
      return {
        read: f.R === 1,
        write: f.W === 1,
        exec: f.X === 1,
        user: true,
        global: false,
        accessed: f.A === 1,
        dirty: f.D === 1,
        snoop: f.SNP === 1,
      };
    },
    adBits: (lo) => lo & (SL.A | SL.D),
  };
}
