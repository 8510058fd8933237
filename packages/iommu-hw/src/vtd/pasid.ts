import type { PhysMem, FirstLevelConfig, SecondLevelConfig } from "@vsva/pgtable";
import type { CtxInfo, PasidInfo } from "./caches.js";
import { FaultReason } from "./fault-reason.js";
import { slLevelsForAw, type VtdConfig } from "./options.js";
import {
  PASID_DIR_ENTRY_BYTES,
  PASID_ENTRY_BYTES,
  PasidDirEntry,
  PasidEntry,
  Pgtt,
  pasidDirIndex,
  pasidTableIndex,
} from "./structures.js";

export function pasidFault(fault: number, fpd: boolean): PasidInfo {
  return { fault, fpd, did: 0, pgtt: 0, sre: false, ere: false, fl: null, sl: null };
}

export class PasidScratch {
  readonly dir = PasidDirEntry.alloc();
  readonly entry = PasidEntry.alloc();
}

/**
 * PASID directory -> PASID-table entry (VT-d spec §9.5, §9.6) with the checks of the
 * scalable-mode PASID fault reasons of VT-d spec appendix A. The walker configurations are built here, once per
 * PASID-cache fill, so a translation allocates nothing for them.
 *
 * "Invalid programming" (0x5B) covers a PGTT the unit does not support, an AW
 * not in SAGAW and an FLPM it cannot walk (QEMU's checks, VT-d spec §9.6); a DID beyond
 * CAP.ND is treated the same. Feature bits for features the unit lacks
 * (SLADE without SLADS, EAFE without EAFS) are reserved (0x5A).
 */
export function fetchPasid(mem: PhysMem, ctx: CtxInfo, pasid: number, cfg: VtdConfig, s: PasidScratch): PasidInfo {
  const dirIndex = pasidDirIndex(pasid);
  if (dirIndex >= ctx.dirEntries) return pasidFault(FaultReason.PASID_TOO_LARGE, ctx.fpd);
  if (!PasidDirEntry.read(mem, ctx.dirPtr + dirIndex * PASID_DIR_ENTRY_BYTES, s.dir)) return pasidFault(FaultReason.PASID_DIR_FETCH, ctx.fpd);
  let fpd = ctx.fpd || PasidDirEntry.get(s.dir, "FPD") === 1;
  if (PasidDirEntry.get(s.dir, "P") === 0) return pasidFault(FaultReason.PASID_DIR_NOT_PRESENT, fpd);
  const table = PasidDirEntry.getAddr(s.dir, "SMPTBLPTR");
  if (PasidDirEntry.hasReservedBits(s.dir) || table >= 2 ** cfg.hostAddrBits) return pasidFault(FaultReason.PASID_DIR_RSVD, fpd);

  const e = s.entry;
  if (!PasidEntry.read(mem, table + pasidTableIndex(pasid) * PASID_ENTRY_BYTES, e)) return pasidFault(FaultReason.PASID_ENTRY_FETCH, fpd);
  fpd ||= PasidEntry.get(e, "FPD") === 1;
  if (PasidEntry.get(e, "P") === 0) return pasidFault(FaultReason.PASID_ENTRY_NOT_PRESENT, fpd);

  const pgtt = PasidEntry.get(e, "PGTT");
  const usesFl = pgtt === Pgtt.FIRST_LEVEL || pgtt === Pgtt.NESTED;
  const usesSl = pgtt === Pgtt.SECOND_LEVEL || pgtt === Pgtt.NESTED;
  const flRoot = PasidEntry.getAddr(e, "FLPTPTR");
  const slRoot = PasidEntry.getAddr(e, "SLPTPTR");
  const slade = PasidEntry.get(e, "SLADE") === 1;
  const eafe = PasidEntry.get(e, "EAFE") === 1;
  const haw = 2 ** cfg.hostAddrBits;
  if (
    PasidEntry.hasReservedBits(e) ||
    // FLPTPTR is guest-physical when nested: bounded by the second level, not the HAW.
    (pgtt === Pgtt.FIRST_LEVEL && flRoot >= haw) ||
    (usesSl && slRoot >= haw) ||
    (slade && !cfg.secondLevelAd) ||
    (eafe && !cfg.extendedAccessed)
  ) {
    return pasidFault(FaultReason.PASID_ENTRY_RSVD, fpd);
  }

  const supported =
    (pgtt === Pgtt.FIRST_LEVEL && cfg.firstLevel) ||
    (pgtt === Pgtt.SECOND_LEVEL && cfg.secondLevel) ||
    (pgtt === Pgtt.NESTED && cfg.nesting) ||
    (pgtt === Pgtt.PASS_THROUGH && cfg.passThrough);
  const did = PasidEntry.get(e, "DID");
  if (!supported || did >= 2 ** (4 + 2 * cfg.nd)) return pasidFault(FaultReason.PASID_ENTRY_INVALID, fpd);

  let fl: FirstLevelConfig | null = null;
  let sl: SecondLevelConfig | null = null;
  const sre = PasidEntry.get(e, "SRE") === 1;
  const ere = PasidEntry.get(e, "ERE") === 1;
  if (usesFl) {
    const flpm = PasidEntry.get(e, "FLPM");
    if (flpm > 1 || (flpm === 1 && !cfg.firstLevel5)) return pasidFault(FaultReason.PASID_ENTRY_INVALID, fpd);
    fl = {
      root: flRoot,
      levels: flpm === 1 ? 5 : 4,
      addrBits: cfg.hostAddrBits,
      sre,
      wpe: PasidEntry.get(e, "WPE") === 1,
      nxe: PasidEntry.get(e, "NXE") === 1,
      ere,
      eafe,
      pages1g: cfg.firstLevel1g,
    };
  }
  if (usesSl) {
    const levels = slLevelsForAw(cfg, PasidEntry.get(e, "AW"));
    if (levels === undefined) return pasidFault(FaultReason.PASID_ENTRY_INVALID, fpd);
    sl = {
      root: slRoot,
      levels,
      addrBits: cfg.hostAddrBits,
      pages2m: cfg.secondLevel2m,
      pages1g: cfg.secondLevel1g,
      slee: PasidEntry.get(e, "SLEE") === 1,
      slade,
      snoopControl: cfg.snoopControl,
      deviceTlb: cfg.deviceTlb,
    };
  }
  return { fault: 0, fpd, did, pgtt, sre, ere, fl, sl };
}
