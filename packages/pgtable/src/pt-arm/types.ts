import type { U64 } from "../mem/phys-mem.js";
import type { WalkAccess } from "../pt/types.js";

/**
 * The contract of the AArch64 (VMSAv8-64, 4 KiB granule) walkers used by the
 * emulated SMMUv3: stage-1 and stage-2 configurations as the SMMU decodes
 * them from a CD and an STE, a result filled in place (walks allocate
 * nothing), the stage-2 hook a nested stage-1 walk goes through, and the
 * walk-cache hook.
 *
 * Levels are Arm levels: 0 is the top (512 GiB per entry), 3 the page table.
 * Addresses are JS numbers; a TTB1 (upper-range) input address is passed
 * sign-extended (negative), as in `pt/types.ts`.
 */

/**
 * Why a walk failed, one kind per SMMUv3 event (SMMUv3 spec §7.3, event records):
 * - `translation`: invalid descriptor, or input outside the TxSZ range (F_TRANSLATION);
 * - `address-size`: a table or output address at or above the output size (F_ADDR_SIZE);
 * - `access`: AF = 0 with neither AFFD nor HA (F_ACCESS);
 * - `permission`: AP/XN/S2AP deny the access (F_PERMISSION);
 * - `external-abort`: a descriptor fetch or update hit no memory (F_WALK_EABT).
 */
export type ArmFaultKind = "translation" | "address-size" | "access" | "permission" | "external-abort";

/**
 * Where a stage-2 fault of a nested walk happened (the event CLASS):
 * `table` while fetching or updating a stage-1 descriptor (CLASS = TT),
 * `output` on the final IPA (CLASS = IN).
 */
export type ArmS2Phase = "table" | "output";

/** Permission bits of a translation, for both privileges (what a TLB entry keeps). */
export const Perm = {
  PRIV_READ: 1,
  PRIV_WRITE: 2,
  PRIV_EXEC: 4,
  USER_READ: 8,
  USER_WRITE: 16,
  USER_EXEC: 32,
  ALL: 63,
} as const;

/** The permission bits a request needs. An instruction fetch needs execute only (Arm has execute-only pages). */
export function neededPerms(write: boolean, exec: boolean, priv: boolean): number {
  if (priv) return write ? Perm.PRIV_WRITE : exec ? Perm.PRIV_EXEC : Perm.PRIV_READ;
  return write ? Perm.USER_WRITE : exec ? Perm.USER_EXEC : Perm.USER_READ;
}

/** A stage-1 walk's parameters, decoded from a CD (SMMUv3 spec §5.4). */
export interface ArmS1Config {
  /** TTB0 or TTB1: the top table (an IPA when nested). */
  readonly ttb: number;
  /** Input size IS = 64 − TxSZ, 25..48. */
  readonly inputBits: number;
  /** True for the TTB1 range: inputs in [−2^IS, 0). */
  readonly upper: boolean;
  /** Effective output size: min(IPS, OAS), capped at 48 with the 4 KiB granule. */
  readonly outputBits: number;
  /** AFFD: AF = 0 does not fault. */
  readonly affd: boolean;
  /** HA: hardware sets AF. */
  readonly ha: boolean;
  /** HD: hardware clears AP[2] on the first write to a DBM page. */
  readonly hd: boolean;
  /** HADx: APTable/XNTable/PXNTable are ignored. */
  readonly had: boolean;
}

/** A stage-2 walk's parameters, decoded from an STE (SMMUv3 spec §5.2; Arm ARM VMSAv8-64 stage 2). */
export interface ArmS2Config {
  /** S2TTB: the (possibly concatenated) start-level table. */
  readonly ttb: number;
  /** IS = 64 − S2T0SZ. */
  readonly inputBits: number;
  /** Start level from S2SL0 (4 KiB: 2 − SL0). */
  readonly startLevel: number;
  /** min(S2PS, OAS), capped at 48. */
  readonly outputBits: number;
  readonly affd: boolean;
  readonly ha: boolean;
  readonly hd: boolean;
  /** S2PTW: a stage-1 walk that reaches Device memory at stage 2 is a permission fault. */
  readonly ptw: boolean;
  /** IDR3.XNX: XN[0] distinguishes EL1 and EL0 execute. */
  readonly xnx: boolean;
}

/** Result of a walk, filled in place; reuse one per caller. */
export interface ArmWalkResult {
  ok: boolean;
  /** Output address of the input address itself. */
  pa: number;
  pageSize: number;
  /** {@link Perm} bits granted (both stages ANDed when nested). */
  perms: number;
  /** nG = 0: the translation is global (not tagged by ASID). Stage 2 leaves it true. */
  global: boolean;
  kind: ArmFaultKind | null;
  /** Stage whose check failed (1 or 2). */
  stage: 1 | 2;
  /** Arm level of the descriptor whose check failed (the start level for range checks). */
  level: number;
  /** For a stage-2 fault inside a nested walk: what was being translated. */
  s2Phase: ArmS2Phase | null;
  /** The input address of the walk (stage 1: VA; stage-2-only: IPA). */
  faultAddr: number;
  /** For a stage-2 fault: the IPA. */
  ipa: number;
  /** For an external abort: the physical address of the descriptor. */
  fetchAddr: number;
  faultWrite: boolean;
  /** Descriptor reads and writes by this walk, both stages. */
  reads: number;
  writes: number;
  walkCacheHits: number;
  readonly scratch: U64;
  inner: ArmWalkResult | null;
}

/** Stage 2 as a nested stage-1 walk sees it: fills `out` (stage 2 semantics), returns `out.ok`. */
export interface ArmStage2 {
  translate(ipa: number, access: WalkAccess, table: boolean, out: ArmWalkResult): boolean;
}

/**
 * A cached table descriptor: the physical address of the next-level table
 * (already through stage 2 when nested) and the hierarchical attributes
 * accumulated from the start level down to and including this descriptor.
 */
export interface ArmTableEntry {
  readonly table: number;
  /** Hardware may write into the next table (AF/DBM updates): stage-2 write permission on it when nested. */
  readonly tableWritable: boolean;
  readonly noWrite: boolean;
  readonly noEl0: boolean;
  readonly pxn: boolean;
  readonly uxn: boolean;
}

/** Walk cache (table descriptors only), keyed by the caller's tag, the Arm level of the descriptor and the input address. */
export interface ArmWalkCacheLike {
  lookup(tag: number, level: number, addr: number): ArmTableEntry | undefined;
  insert(tag: number, level: number, addr: number, e: ArmTableEntry): void;
}

export interface ArmWalkCacheHook {
  readonly cache: ArmWalkCacheLike;
  readonly tag: number;
}

export interface ArmS1WalkOptions {
  /** Nested: the TTB, every next table and the output are IPAs translated by this stage 2. */
  readonly stage2?: ArmStage2;
  readonly walkCache?: ArmWalkCacheHook;
}

export interface ArmS2WalkOptions {
  readonly walkCache?: ArmWalkCacheHook;
}
