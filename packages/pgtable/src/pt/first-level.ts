import type { PhysMem } from "../mem/phys-mem.js";
import { ENTRY_SIZE, addrHi, addrLo, entryAddr, levelIndex, levelShift, offsetIn } from "./geometry.js";
import type { Denied, FirstLevelConfig, FirstLevelWalkOptions, NestedPhase, WalkAccess, WalkFaultKind, WalkResult } from "./types.js";
import { newWalkResult, resetWalkResult } from "./walk-result.js";
import { X86, x86ReservedHi, x86ReservedLo } from "./x86-pte.js";

const TWO63 = 2 ** 63;
const TWO64 = 2 ** 64;
const TABLE_READ: WalkAccess = Object.freeze({ write: false });

/**
 * First-level (x86-64 format) walk, 4 or 5 levels (VT-d spec §3.6 and §9.7),
 * optionally nested over a second stage (PGTT=3).
 *
 * Semantics chosen, with sources:
 * - Canonical check on the input (0x80): 48-bit or 57-bit sign extension.
 *   Addresses with bit 63 set may be given signed (see types.ts) or unsigned.
 * - PRIV=1 with SRE=0 and execute with ERE=0 are refused before any memory
 *   reference (they are PASID-entry checks, 0x5D / 0x5C).
 * - Per entry: fetch (table-abort), P, reserved bits. Permissions are the
 *   AND over all levels, judged at the leaf (SDM §4.6): a user request needs
 *   U/S everywhere (0x81); a write needs R/W everywhere, except a supervisor
 *   write with WPE=0 (CR0.WP=0 semantics); an execute request is denied by
 *   XD at any level when NXE=1. VT-d has no SMAP, and SMEP is not in the
 *   first-level checks Linux or QEMU model, so supervisor requests may use user pages.
 *   QEMU checks U/S and R/W level by level, before reserved bits; the fault
 *   reason differs only for an entry that is both reserved and denying, and
 *   tests must not rely on that order.
 * - A is set (with EA when EAFE=1) in each non-leaf entry as it is
 *   traversed, as the CPU does, even if the walk later faults; the leaf gets
 *   A (and D for a write) only once the access is known to succeed. Each
 *   update is one 64-bit write of the entry just read (the locked update).
 * - Nested: the FLPTPTR table, every next table and the final address are
 *   guest-physical and go through `opts.secondStage`: table reads as reads,
 *   and the A/D write needs second-stage write permission on the table
 *   (else a second-stage permission fault with phase `ad-update`, 0x77).
 *   A cold 4-over-4 walk reads 5 × 4 second-level entries + 4 first-level
 *   entries = 24.
 */
export function walkFirstLevel(
  mem: PhysMem,
  cfg: FirstLevelConfig,
  vaIn: number,
  access: WalkAccess,
  out: WalkResult,
  opts?: FirstLevelWalkOptions,
): WalkResult {
  resetWalkResult(out);
  out.stage = "first";
  const va = vaIn >= TWO63 ? vaIn - TWO64 : vaIn;
  out.faultAddr = va;
  const write = access.write;
  const exec = access.exec === true;
  const priv = access.priv === true;
  out.faultWrite = write;

  if (priv && !cfg.sre) return fault(out, "permission", 0, "supervisor-request");
  if (exec && !cfg.ere) return fault(out, "permission", 0, "execute-request");
  const half = 2 ** (levelShift(cfg.levels + 1) - 1);
  if (!Number.isInteger(va) || va < -half || va >= half) return fault(out, "non-canonical", 0, null);

  const lo = addrLo(va);
  const hi = addrHi(va);
  const psc = opts?.psc;
  const ss = opts?.secondStage;
  let inner: WalkResult | null = null;
  if (ss !== undefined) {
    inner = out.inner;
    if (inner === null) {
      inner = newWalkResult();
      out.inner = inner;
    }
  }

  let level: number = cfg.levels;
  let table = cfg.root; // host-physical once `tableGpa` has been translated
  let tableGpa = cfg.root;
  let tableWritable = true;
  let rw = true;
  let us = true;
  let nx = false;
  let rwDeny = 0;
  let usDeny = 0;
  let nxLevel = 0;
  let translated = false;

  if (psc !== undefined) {
    for (let l = 2; l <= cfg.levels; l++) {
      const hit = psc.cache.lookup(psc.tag, l, va);
      if (hit !== undefined) {
        out.pscHits++;
        table = hit.table;
        tableWritable = hit.tableWritable;
        translated = true;
        level = l - 1;
        rw = hit.write;
        us = hit.user;
        nx = !hit.exec;
        if (!rw) rwDeny = l;
        if (!us) usDeny = l;
        if (nx) nxLevel = l;
        break;
      }
    }
  }

  if (ss !== undefined && inner !== null && !translated) {
    if (!ss.translate(tableGpa, TABLE_READ, inner)) return nestedFault(out, inner, "root", level);
    absorb(out, inner);
    table = inner.pa;
    tableWritable = inner.write;
  }

  const e = out.scratch;
  for (;;) {
    const pteAddr = table + levelIndex(lo, hi, level) * ENTRY_SIZE;
    out.reads++;
    if (!mem.read64(pteAddr, e)) return fault(out, "table-abort", level, null);
    if ((e.lo & X86.P) === 0) return fault(out, "not-present", level, null);
    const large = (e.lo & X86.PS) !== 0 && (level === 2 || level === 3);
    if ((e.lo & x86ReservedLo(level, large, cfg)) !== 0 || (e.hi & x86ReservedHi(level, large, cfg)) !== 0) {
      return fault(out, "reserved", level, null);
    }

    if ((e.lo & X86.RW) === 0) {
      rw = false;
      rwDeny ||= level;
    }
    if ((e.lo & X86.US) === 0) {
      us = false;
      usDeny ||= level;
    }
    if (cfg.nxe && (e.hi & X86.XD_HI) !== 0) {
      nx = true;
      nxLevel ||= level;
    }

    if (level > 1 && !large) {
      const want = (e.lo | X86.A | (cfg.eafe ? X86.EA : 0)) >>> 0;
      if (want !== e.lo) {
        if (!tableWritable) return adUpdateFault(out, tableGpa + levelIndex(lo, hi, level) * ENTRY_SIZE, level);
        out.writes++;
        if (!mem.write64(pteAddr, want, e.hi)) return fault(out, "table-abort", level, null);
      }
      tableGpa = entryAddr(e.lo, e.hi);
      table = tableGpa;
      tableWritable = true;
      if (ss !== undefined && inner !== null) {
        if (!ss.translate(tableGpa, TABLE_READ, inner)) return nestedFault(out, inner, "table", level - 1);
        absorb(out, inner);
        table = inner.pa;
        tableWritable = inner.write;
      }
      // A table the second stage keeps read-only is not cached: a hit could not name its GPA for the 0x77 record.
      if (tableWritable) psc?.cache.insert(psc.tag, level, va, { table, tableWritable, read: true, write: rw, exec: !nx, user: us });
      level--;
      continue;
    }

    // Leaf: the access is judged on the accumulated permissions.
    if (!priv && !us) return fault(out, "permission", usDeny, "user");
    const canWrite = rw || (priv && !cfg.wpe);
    if (write && !canWrite) return fault(out, "permission", rwDeny, "write");
    if (exec && nx) return fault(out, "permission", nxLevel, "execute");

    const shift = levelShift(level);
    // Bit 12 of a large leaf is its PAT bit, not an address bit.
    const frameLo = large ? (e.lo & ~((1 << shift) - 1)) >>> 0 : e.lo;
    const gpa = entryAddr(frameLo, e.hi) + offsetIn(lo, shift);
    out.pa = gpa;
    out.pageSize = 2 ** shift;
    out.read = true;
    out.write = canWrite;
    out.exec = !nx;
    out.user = us;

    if (ss !== undefined && inner !== null) {
      if (!ss.translate(gpa, access, inner)) return nestedFault(out, inner, "output", 0);
      absorb(out, inner);
      out.pa = inner.pa;
      if (inner.pageSize < out.pageSize) out.pageSize = inner.pageSize;
      out.read = inner.read;
      out.write = canWrite && inner.write;
      out.exec = !nx && inner.exec;
    }

    const want = (e.lo | X86.A | (cfg.eafe ? X86.EA : 0) | (write ? X86.D : 0)) >>> 0;
    if (want !== e.lo) {
      if (!tableWritable) return adUpdateFault(out, tableGpa + levelIndex(lo, hi, level) * ENTRY_SIZE, level);
      out.writes++;
      if (!mem.write64(pteAddr, want, e.hi)) return fault(out, "table-abort", level, null);
    }
    out.ok = true;
    return out;
  }
}

function fault(out: WalkResult, kind: WalkFaultKind, level: number, denied: Denied | null): WalkResult {
  out.ok = false;
  out.kind = kind;
  out.level = level;
  out.denied = denied;
  return out;
}

function absorb(out: WalkResult, inner: WalkResult): void {
  out.reads += inner.reads;
  out.writes += inner.writes;
  out.pscHits += inner.pscHits;
}

/** Copies a second-stage fault met while reaching first-level `flLevel` (0: the output). */
function nestedFault(out: WalkResult, inner: WalkResult, phase: NestedPhase, flLevel: number): WalkResult {
  absorb(out, inner);
  out.ok = false;
  out.kind = inner.kind ?? "not-present";
  out.stage = "second";
  out.level = inner.level;
  out.denied = inner.denied;
  out.nested = phase;
  out.flLevel = flLevel;
  out.faultAddr = inner.faultAddr;
  out.faultWrite = inner.faultWrite;
  return out;
}

/** The second stage does not let hardware write the A/D flags of a first-level entry at `gpa`. */
function adUpdateFault(out: WalkResult, gpa: number, flLevel: number): WalkResult {
  out.ok = false;
  out.kind = "permission";
  out.stage = "second";
  // The second-stage level that denied is not known without a rewalk; the leaf is the conventional answer.
  out.level = 1;
  out.denied = "write";
  out.nested = "ad-update";
  out.flLevel = flLevel;
  out.faultAddr = gpa;
  out.faultWrite = true;
  return out;
}
