import type { PhysMem, U64 } from "../mem/phys-mem.js";

/**
 * The contract of the page-table walkers: configurations taken from a PASID
 * entry (VT-d spec §9.6), the access being checked, the result (a reusable,
 * caller-owned object so a walk allocates nothing), the second-stage hook that
 * nested translation plugs into, and the paging-structure-cache hook.
 *
 * Faults are values. A walker never throws for anything found in memory.
 *
 * Virtual addresses are JS numbers. An address whose bit 63 is set is passed
 * as its sign-extended (negative) value: 0xffff_8000_0000_0000 is -2**47. That
 * keeps every canonical x86-64 address exact (a double cannot hold
 * 0xffff_8000_0000_1234 unsigned) and makes the canonical check a range test.
 * A double is exact to the byte below 2**53 in magnitude; beyond (only 5-level
 * upper-half addresses under -2**53) it is exact to 2, 4 or 8 bytes, which
 * keeps every page and entry boundary exact.
 */

/** Which stage of translation an entry or fault belongs to. */
export type Stage = "first" | "second";

/**
 * Why a walk failed. The VT-d unit maps (kind, stage, level, nested phase,
 * denied) to an FRCD fault reason (VT-d spec appendix A):
 * - `table-abort`: fetching an entry hit memory that does not exist
 *   (first level: 0x73 at the top level, whose table is FLPTPTR, else 0x70;
 *   second level: 0x7B at the top level, whose table is SLPTPTR, else 0x78).
 * - `not-present`: first level P=0 (0x71); second level R=W=0.
 * - `reserved`: a reserved bit set in an entry (0x72 / 0x7A, legacy 0x0C).
 * - `permission`: see {@link Denied}.
 * - `non-canonical`: first-level input address not canonical (0x80).
 * - `address-width`: second-level input beyond the AGAW (0x04 legacy; 0x74
 *   when the input was a first-level table address in a nested walk).
 */
export type WalkFaultKind = "not-present" | "reserved" | "permission" | "non-canonical" | "table-abort" | "address-width";

/**
 * The permission a `permission` fault denied:
 * - `read`: second-level R=0 (0x86 / legacy 0x06);
 * - `write`: R/W=0 (first level) or W=0 (second level) for a write (0x85 / 0x05);
 * - `execute`: XD=1 with NXE, or second-level X=0 with SLEE (0x82);
 * - `user`: U/S=0 at some level for a user (PRIV=0) request (0x81);
 * - `supervisor-request`: PRIV=1 while the PASID entry has SRE=0 (0x5D);
 * - `execute-request`: an execute request while ERE=0 (0x5C).
 */
export type Denied = "read" | "write" | "execute" | "user" | "supervisor-request" | "execute-request";

/**
 * In a nested walk (PGTT=3), a fault of the second stage says which
 * first-level access it was translating:
 * - `root`: the guest-physical FLPTPTR table (0x75 when read is denied);
 * - `table`: a lower first-level table (0x76 when read is denied);
 * - `ad-update`: the write of an accessed/dirty flag into a first-level entry (0x77);
 * - `output`: the final guest-physical address of the access.
 */
export type NestedPhase = "root" | "table" | "ad-update" | "output";

/**
 * The access being checked. `DmaRequest` from `iommu-port.ts` is assignable to
 * it. A request that does not write is a read; `exec` asks for execute on top
 * of read; `priv` is the PASID prefix "privileged mode requested".
 */
export interface WalkAccess {
  readonly write: boolean;
  readonly exec?: boolean;
  readonly priv?: boolean;
}

/** The parameters of a first-level (x86-64 format) walk, from a PASID entry with PGTT=1 or 3. */
export interface FirstLevelConfig {
  /** FLPTPTR: address of the top table (guest-physical when nested). 4 KiB aligned. */
  readonly root: number;
  /** FLPM: 0 gives 4 levels (48-bit VA), 1 gives 5 levels (57-bit VA). */
  readonly levels: 4 | 5;
  /** Host address width (HAW / MAXPHYADDR), 32..52: address bits at or above it in an entry are reserved. */
  readonly addrBits: number;
  /** Supervisor-request enable: a PRIV=1 request is refused when clear. */
  readonly sre: boolean;
  /** Write-protect enable: supervisor writes honour R/W (CR0.WP semantics). */
  readonly wpe: boolean;
  /** No-execute enable: XD is honoured (and ignored when clear, see x86-pte.ts). */
  readonly nxe: boolean;
  /** Execute-request enable: an execute request is refused when clear. */
  readonly ere: boolean;
  /** Extended-accessed-flag enable: hardware sets EA (bit 10) with A. */
  readonly eafe: boolean;
  /** CAP.FL1GP: PS=1 in a PDPT entry (a 1 GiB page) is legal; otherwise it is reserved. */
  readonly pages1g: boolean;
}

/** The parameters of a second-level walk, from a PASID entry with PGTT=2 or 3. */
export interface SecondLevelConfig {
  /** SLPTPTR: host-physical address of the top table. 4 KiB aligned. */
  readonly root: number;
  /** Levels from AW: 3 (AGAW 39), 4 (AGAW 48), 5 (AGAW 57). */
  readonly levels: 3 | 4 | 5;
  /** Host address width, 32..52: address bits at or above it in an entry are reserved. */
  readonly addrBits: number;
  /** CAP.SLLPS bit 0: PS=1 in a level-2 entry (2 MiB) is legal. */
  readonly pages2m: boolean;
  /** CAP.SLLPS bit 1: PS=1 in a level-3 entry (1 GiB) is legal. */
  readonly pages1g: boolean;
  /** SLEE: the X bit is honoured (otherwise ignored, and execute is granted). */
  readonly slee: boolean;
  /** SLADE: hardware sets A (every level) and D (leaf, on write). */
  readonly slade: boolean;
  /** ECAP.SC: bit 11 is SNP in a leaf (ignored in a non-leaf); when clear it is reserved everywhere. */
  readonly snoopControl: boolean;
  /** ECAP.DT: bit 62 is TM in a leaf (ignored in a non-leaf); when clear it is reserved everywhere. */
  readonly deviceTlb: boolean;
}

/**
 * Result of a walk, filled in place. Reuse one per caller: the walkers
 * allocate nothing. Read it right after the walk (the next walk overwrites
 * it), or take an immutable copy with `toOutcome` from `walk-result.ts`.
 *
 * On success (`ok`): `pa` is the output address of the input address itself,
 * `pageSize` the size of the page that maps it, and `read`/`write`/`exec`/
 * `user` the effective permissions for this request's privilege (ANDed over
 * every level, and over both stages when nested).
 *
 * On a fault: `kind`, `stage`, `level` (of the entry whose check failed, 1 =
 * leaf table; 0 for checks made before any entry is read), `denied` for
 * permission faults, `nested`/`flLevel` for a second-stage fault inside a
 * nested walk, `faultAddr` (the address the failing stage was translating)
 * and `faultWrite` (whether the failing access was a write).
 */
export interface WalkResult {
  ok: boolean;
  pa: number;
  pageSize: number;
  read: boolean;
  write: boolean;
  exec: boolean;
  user: boolean;
  kind: WalkFaultKind | null;
  stage: Stage;
  level: number;
  denied: Denied | null;
  nested: NestedPhase | null;
  /** In a nested walk: level of the first-level table being reached (0 for the output address). */
  flLevel: number;
  faultAddr: number;
  faultWrite: boolean;
  /** Entries read and written by this walk, both stages (the same accesses PhysMem.stats counts). */
  reads: number;
  writes: number;
  /** Paging-structure-cache hits in this walk, both stages. */
  pscHits: number;
  /** Scratch for the walker; not part of the result. */
  readonly scratch: U64;
  /** Scratch result for the second stage of a nested walk; created on first use. */
  inner: WalkResult | null;
}

/**
 * The second stage of a nested walk. The first-level walker calls it for the
 * FLPTPTR table, every lower table, and the final address, all guest-physical.
 * It fills `out` with second-level semantics (stage "second") and returns
 * `out.ok`. The VT-d unit passes its own (with its IOTLB in front of a
 * `walkSecondLevel`); `secondLevelStage()` gives a plain one.
 */
export interface SecondStage {
  translate(gpa: number, access: WalkAccess, out: WalkResult): boolean;
}

/**
 * A cached non-leaf entry: where the next table is (host-physical: in a nested
 * walk the first-level entry is cached already translated through the second
 * stage, the "combined" paging-structure cache of VT-d) and the permissions
 * accumulated from the top level down to and including this entry.
 */
export interface PscEntry {
  readonly table: number;
  /**
   * Whether hardware may write into that next table (for A/D updates): the
   * second stage's write permission on it in a nested walk, always true otherwise.
   */
  readonly tableWritable: boolean;
  readonly read: boolean;
  readonly write: boolean;
  readonly exec: boolean;
  readonly user: boolean;
}

/**
 * Paging-structure cache (non-leaf entries only). Keyed by the caller's tag,
 * the level of the cached entry (2 = a PD entry pointing at a page table, up to
 * 5) and the input address (only the bits that select entries down to that
 * level matter). `walk-cache.ts` implements it on `TaggedLru`.
 */
export interface PagingStructureCache {
  lookup(tag: number, level: number, addr: number): PscEntry | undefined;
  insert(tag: number, level: number, addr: number, entry: PscEntry): void;
}

/** A paging-structure cache together with the tag this walk uses (e.g. DID and PASID folded by the VT-d unit). */
export interface PscHook {
  readonly cache: PagingStructureCache;
  readonly tag: number;
}

export interface FirstLevelWalkOptions {
  /** Nested translation (PGTT=3): every table address and the output go through this second stage. */
  readonly secondStage?: SecondStage;
  /** First-level paging-structure cache. */
  readonly psc?: PscHook;
}

export interface SecondLevelWalkOptions {
  /** Second-level paging-structure cache. */
  readonly psc?: PscHook;
}

/** `walkFirstLevel` in `first-level.ts`. */
export type WalkFirstLevel = (
  mem: PhysMem,
  cfg: FirstLevelConfig,
  va: number,
  access: WalkAccess,
  out: WalkResult,
  opts?: FirstLevelWalkOptions,
) => WalkResult;

/** `walkSecondLevel` in `second-level.ts`. */
export type WalkSecondLevel = (
  mem: PhysMem,
  cfg: SecondLevelConfig,
  addr: number,
  access: WalkAccess,
  out: WalkResult,
  opts?: SecondLevelWalkOptions,
) => WalkResult;

/** An immutable copy of a result, for tests, traces and fault records. */
export type WalkOutcome =
  | {
      readonly ok: true;
      readonly pa: number;
      readonly pageSize: number;
      readonly read: boolean;
      readonly write: boolean;
      readonly exec: boolean;
      readonly user: boolean;
    }
  | {
      readonly ok: false;
      readonly kind: WalkFaultKind;
      readonly stage: Stage;
      readonly level: number;
      readonly denied: Denied | null;
      readonly nested: NestedPhase | null;
      readonly flLevel: number;
      readonly faultAddr: number;
      readonly faultWrite: boolean;
    };
