import { PasidEntry, Pgtt } from "@vsva/iommu-hw";

/**
 * PASID-table entry values (A2.4) for each translation type, built from the
 * shared layout. Address fields in qword 2 (FLPTPTR) hold address >> 12.
 */

export interface SecondLevelSetup {
  readonly did: number;
  readonly slptr: number;
  /** PASID-entry AW: 1/2/3 for 39/48/57 bits. */
  readonly aw: number;
  readonly pageWalkSnoop: boolean;
}

/**
 * PGTT=2, second level only (`intel_pasid_setup_second_level`). SRE is
 * always set, RID_PASID included, as v5.10 does (addresses are GPAs, so a
 * supervisor request is allowed); the conditions on ECAP.SRS and on
 * RID_PASID came later (the ECAP.SRS one in v6.1).
 */
export function secondLevelEntry(s: SecondLevelSetup): Uint32Array {
  const v = PasidEntry.alloc();
  PasidEntry.set(v, "DID", s.did);
  PasidEntry.setAddr(v, "SLPTPTR", s.slptr);
  PasidEntry.set(v, "AW", s.aw);
  PasidEntry.set(v, "PGTT", Pgtt.SECOND_LEVEL);
  PasidEntry.set(v, "PWSNP", s.pageWalkSnoop ? 1 : 0);
  PasidEntry.set(v, "SRE", 1);
  PasidEntry.set(v, "P", 1);
  return v;
}

export interface FirstLevelSetup {
  readonly did: number;
  /** Physical address of the first-level root (an mm's pgd). */
  readonly flptr: number;
  readonly levels: 4 | 5;
  readonly aw: number;
  readonly supervisor: boolean;
  readonly pageWalkSnoop: boolean;
}

/**
 * PGTT=1, first level only (`intel_pasid_setup_first_level`): native SVA.
 * A supervisor entry sets SRE only: setting WPE with it came with a later
 * kernel, not v5.10.
 */
export function firstLevelEntry(s: FirstLevelSetup): Uint32Array {
  const v = PasidEntry.alloc();
  PasidEntry.set(v, "DID", s.did);
  PasidEntry.set(v, "FLPTPTR", s.flptr / 4096);
  PasidEntry.set(v, "FLPM", s.levels === 5 ? 1 : 0);
  if (s.supervisor) PasidEntry.set(v, "SRE", 1);
  PasidEntry.set(v, "AW", s.aw);
  PasidEntry.set(v, "PWSNP", s.pageWalkSnoop ? 1 : 0);
  PasidEntry.set(v, "PGTT", Pgtt.FIRST_LEVEL);
  PasidEntry.set(v, "P", 1);
  return v;
}

export interface NestedSetup {
  readonly did: number;
  /** Guest first-level root, a guest-physical address. */
  readonly gpgd: number;
  readonly levels: 4 | 5;
  readonly slptr: number;
  readonly aw: number;
  readonly sre: boolean;
  readonly wpe: boolean;
  readonly eafe: boolean;
  readonly pageWalkSnoop: boolean;
}

/** PGTT=3, first level over second level (`intel_pasid_setup_nested`, v5.x). */
export function nestedEntry(s: NestedSetup): Uint32Array {
  const v = PasidEntry.alloc();
  PasidEntry.set(v, "FLPM", s.levels === 5 ? 1 : 0);
  PasidEntry.set(v, "FLPTPTR", s.gpgd / 4096);
  PasidEntry.set(v, "SRE", s.sre ? 1 : 0);
  PasidEntry.set(v, "WPE", s.wpe ? 1 : 0);
  PasidEntry.set(v, "EAFE", s.eafe ? 1 : 0);
  PasidEntry.setAddr(v, "SLPTPTR", s.slptr);
  PasidEntry.set(v, "DID", s.did);
  PasidEntry.set(v, "AW", s.aw);
  PasidEntry.set(v, "PWSNP", s.pageWalkSnoop ? 1 : 0);
  PasidEntry.set(v, "PGTT", Pgtt.NESTED);
  PasidEntry.set(v, "P", 1);
  return v;
}

/** PGTT=4, pass-through (`intel_pasid_setup_pass_through`): DID 1, requests go untranslated. */
export function passThroughEntry(did: number, aw: number, pageWalkSnoop: boolean): Uint32Array {
  const v = PasidEntry.alloc();
  PasidEntry.set(v, "DID", did);
  PasidEntry.set(v, "AW", aw);
  PasidEntry.set(v, "PWSNP", pageWalkSnoop ? 1 : 0);
  PasidEntry.set(v, "PGTT", Pgtt.PASS_THROUGH);
  PasidEntry.set(v, "SRE", 1);
  PasidEntry.set(v, "P", 1);
  return v;
}
