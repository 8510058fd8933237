import type { PhysMem } from "../mem/phys-mem.js";
import { ENTRY_SIZE, addrHi, addrLo, entryAddr, levelIndex, levelShift, offsetIn } from "./geometry.js";
import { SL, slReservedHi, slReservedLo } from "./sl-pte.js";
import type { SecondLevelConfig, SecondLevelWalkOptions, SecondStage, WalkAccess, WalkResult } from "./types.js";
import { resetWalkResult } from "./walk-result.js";

/**
 * VT-d second-level walk (VT-d spec §3.7 and §9.8): 3, 4 or 5 levels from the AGAW,
 * 2 MiB and 1 GiB leaves where SLLPS allows, per-level reserved bits, R/W/X
 * ANDed over every level, and A/D updates when SLADE is set.
 *
 * Order of checks per entry: fetch (table-abort), present (R|W), reserved
 * bits; permissions are judged at the leaf on the accumulated bits, and the
 * reported level is the highest entry that denied. QEMU checks permissions
 * level by level; the resulting fault reason is the same.
 *
 * Allocation-free: everything goes into `out`, with `out.scratch` for the
 * entry being read. A cache hit creates nothing; a miss inserts one
 * {@link PscEntry} per non-leaf level (the cache owns those).
 */
export function walkSecondLevel(
  mem: PhysMem,
  cfg: SecondLevelConfig,
  addr: number,
  access: WalkAccess,
  out: WalkResult,
  opts?: SecondLevelWalkOptions,
): WalkResult {
  resetWalkResult(out);
  out.stage = "second";
  out.faultAddr = addr;
  const write = access.write;
  const exec = access.exec === true;
  out.faultWrite = write;

  const topShift = levelShift(cfg.levels + 1);
  if (!Number.isInteger(addr) || addr < 0 || addr >= 2 ** topShift) return fault(out, "address-width", 0, null);

  const lo = addrLo(addr);
  const hi = addrHi(addr);
  const psc = opts?.psc;
  let level: number = cfg.levels;
  let table = cfg.root;
  let r = true;
  let w = true;
  let x = true;
  // Highest level that denied each permission (0: none did).
  let rDeny = 0;
  let wDeny = 0;
  let xDeny = 0;

  if (psc !== undefined) {
    for (let l = 2; l <= cfg.levels; l++) {
      const hit = psc.cache.lookup(psc.tag, l, addr);
      if (hit !== undefined) {
        out.pscHits++;
        table = hit.table;
        level = l - 1;
        r = hit.read;
        w = hit.write;
        x = hit.exec;
        if (!r) rDeny = l;
        if (!w) wDeny = l;
        if (!x) xDeny = l;
        break;
      }
    }
  }

  const e = out.scratch;
  for (;;) {
    const pteAddr = table + levelIndex(lo, hi, level) * ENTRY_SIZE;
    out.reads++;
    if (!mem.read64(pteAddr, e)) return fault(out, "table-abort", level, null);
    if ((e.lo & (SL.R | SL.W)) === 0) return fault(out, "not-present", level, null);
    const large = (e.lo & SL.PS) !== 0 && (level === 2 || level === 3);
    if ((e.lo & slReservedLo(level, large, cfg)) !== 0 || (e.hi & slReservedHi(level, large, cfg)) !== 0) return fault(out, "reserved", level, null);

    if ((e.lo & SL.R) === 0) {
      r = false;
      rDeny ||= level;
    }
    if ((e.lo & SL.W) === 0) {
      w = false;
      wDeny ||= level;
    }
    if (cfg.slee && (e.lo & SL.X) === 0) {
      x = false;
      xDeny ||= level;
    }

    if (level > 1 && !large) {
      if (cfg.slade && (e.lo & SL.A) === 0) {
        out.writes++;
        if (!mem.write64(pteAddr, (e.lo | SL.A) >>> 0, e.hi)) return fault(out, "table-abort", level, null);
      }
      table = entryAddr(e.lo, e.hi);
      psc?.cache.insert(psc.tag, level, addr, { table, tableWritable: true, read: r, write: w, exec: x, user: true });
      level--;
      continue;
    }

    // Leaf. An execute request is a read that also needs X.
    if (write && !w) return fault(out, "permission", wDeny, "write");
    if (!write && !r) return fault(out, "permission", rDeny, "read");
    if (exec && !x) return fault(out, "permission", xDeny, "execute");
    if (cfg.slade) {
      const want = (e.lo | SL.A | (write ? SL.D : 0)) >>> 0;
      if (want !== e.lo) {
        out.writes++;
        if (!mem.write64(pteAddr, want, e.hi)) return fault(out, "table-abort", level, null);
      }
    }
    const shift = levelShift(level);
    // A large leaf's frame has its low bits reserved (checked above), so the offset just adds.
    out.pa = entryAddr(e.lo, e.hi) + offsetIn(lo, shift);
    out.pageSize = 2 ** shift;
    out.read = r;
    out.write = w;
    out.exec = x;
    out.user = true;
    out.ok = true;
    return out;
  }
}

function fault(out: WalkResult, kind: NonNullable<WalkResult["kind"]>, level: number, denied: WalkResult["denied"]): WalkResult {
  out.ok = false;
  out.kind = kind;
  out.level = level;
  out.denied = denied;
  return out;
}

/** A plain second stage for nested walks: a second-level walk with an optional paging-structure cache and no IOTLB. */
export function secondLevelStage(mem: PhysMem, cfg: SecondLevelConfig, opts?: SecondLevelWalkOptions): SecondStage {
  return {
    translate(gpa, access, out) {
      return walkSecondLevel(mem, cfg, gpa, access, out, opts).ok;
    },
  };
}
