import type { PhysMem } from "../mem/phys-mem.js";
import type { WalkAccess } from "../pt/types.js";
import { ARM, descAddr, s2IsDevice } from "./descriptors.js";
import { armIndex, armLevelShift, armStartIndex, s1StartLevel } from "./geometry.js";
import {
  type ArmFaultKind,
  type ArmS1Config,
  type ArmS1WalkOptions,
  type ArmS2Config,
  type ArmS2Phase,
  type ArmS2WalkOptions,
  type ArmWalkResult,
  Perm,
  neededPerms,
} from "./types.js";
import { newArmWalkResult, resetArmWalkResult } from "./walk-result.js";

const TWO63 = 2 ** 63;
const TWO64 = 2 ** 64;
const TABLE_READ: WalkAccess = Object.freeze({ write: false });

/**
 * Stage-1 walk (VMSAv8-64, 4 KiB granule; Arm ARM DDI 0487, VMSAv8-64 translation), optionally
 * nested over a stage 2.
 *
 * Order of checks, per descriptor: fetch (F_WALK_EABT), valid and type
 * (F_TRANSLATION: bit 0 clear, a block at L0 or 0b01 at L3), output or
 * next-table address within the output size (F_ADDR_SIZE); then at the
 * leaf AF before permissions (the Arm ARM prioritises Access flag over
 * Permission faults, our reading of the spec), and hardware updates only once the access is
 * known to succeed.
 *
 * Permissions (AP[2:1], the Arm ARM's VMSAv8-64 descriptors): privileged accesses may read everything and
 * write unless AP[2]; EL0 accesses need AP[1]. APTable[0]/[1] remove EL0
 * access and write below a table, PXNTable/UXNTable execute, unless HAD.
 * A page writable at EL0 is implicitly PXN (Arm ARM, "writable at EL0
 * implies PXN at EL1", our reading of the spec). With HD, a DBM page with AP[2] = 1 is
 * writable-clean: the first write clears AP[2] in memory.
 *
 * Nested: the TTB, every next table and the output address are IPAs that go
 * through `opts.stage2`; a stage-2 fault is reported as such (stage 2, with
 * its IPA and `s2Phase`). A cold 4-level over 4-level walk reads
 * 5 × 4 stage-2 descriptors + 4 stage-1 descriptors = 24.
 */
export function walkStage1(mem: PhysMem, cfg: ArmS1Config, vaIn: number, access: WalkAccess, out: ArmWalkResult, opts?: ArmS1WalkOptions): ArmWalkResult {
  resetArmWalkResult(out);
  out.stage = 1;
  const va = vaIn >= TWO63 ? vaIn - TWO64 : vaIn;
  out.faultAddr = va;
  const write = access.write;
  const exec = access.exec === true;
  const priv = access.priv === true;
  out.faultWrite = write;
  const start = s1StartLevel(cfg.inputBits);
  const range = 2 ** cfg.inputBits;
  const inRange = cfg.upper ? va >= -range && va < 0 : va >= 0 && va < range;
  if (!Number.isInteger(va) || !inRange) return fault(out, "translation", start);

  const lo = va >>> 0;
  const hi = Math.floor(va / 0x1_0000_0000) | 0;
  const wc = opts?.walkCache;
  const s2 = opts?.stage2;
  let inner: ArmWalkResult | null = null;
  if (s2 !== undefined) {
    inner = out.inner;
    if (inner === null) {
      inner = newArmWalkResult();
      out.inner = inner;
    }
  }
  const oaLimit = 2 ** cfg.outputBits;

  let level = start;
  let table = cfg.ttb;
  let tableIpa = cfg.ttb;
  let tableWritable = true;
  let noWrite = false;
  let noEl0 = false;
  let pxn = false;
  let uxn = false;
  let cached = false;

  if (wc !== undefined) {
    for (let l = 2; l >= start; l--) {
      const hit = wc.cache.lookup(wc.tag, l, va);
      if (hit !== undefined) {
        out.walkCacheHits++;
        table = hit.table;
        tableWritable = hit.tableWritable;
        noWrite = hit.noWrite;
        noEl0 = hit.noEl0;
        pxn = hit.pxn;
        uxn = hit.uxn;
        level = l + 1;
        cached = true;
        break;
      }
    }
  }
  if (s2 !== undefined && inner !== null && !cached) {
    if (!s2.translate(tableIpa, TABLE_READ, true, inner)) return nestedFault(out, inner, "table");
    absorb(out, inner);
    table = inner.pa;
    tableWritable = (inner.perms & Perm.PRIV_WRITE) !== 0;
  }

  const e = out.scratch;
  for (;;) {
    const index = level === start ? armStartIndex(va, level, cfg.inputBits) : armIndex(lo, hi, level);
    const slot = table + index * 8;
    out.reads++;
    if (!mem.read64(slot, e)) return abort(out, level, slot);
    const dlo = e.lo;
    const dhi = e.hi;
    if ((dlo & ARM.VALID) === 0) return fault(out, "translation", level);
    const isTable = (dlo & ARM.TYPE) !== 0 && level < 3;
    if (!isTable && (level === 0 || (level === 3 && (dlo & ARM.TYPE) === 0))) return fault(out, "translation", level);
    const shift = armLevelShift(level);
    // A leaf's address bits below its block size are RES0 and ignored (QEMU masks them the same way).
    const addr = isTable ? descAddr(dlo, dhi) : Math.floor(descAddr(dlo, dhi) / 2 ** shift) * 2 ** shift;
    if ((dhi & ARM.OA_HI_HI) !== 0 || addr >= oaLimit) return fault(out, "address-size", level);

    if (isTable) {
      if (!cfg.had) {
        if ((dhi & ARM.APTABLE1_HI) !== 0) noWrite = true;
        if ((dhi & ARM.APTABLE0_HI) !== 0) noEl0 = true;
        if ((dhi & ARM.PXNTABLE_HI) !== 0) pxn = true;
        if ((dhi & ARM.UXNTABLE_HI) !== 0) uxn = true;
      }
      tableIpa = addr;
      table = addr;
      tableWritable = true;
      if (s2 !== undefined && inner !== null) {
        if (!s2.translate(tableIpa, TABLE_READ, true, inner)) return nestedFault(out, inner, "table");
        absorb(out, inner);
        table = inner.pa;
        tableWritable = (inner.perms & Perm.PRIV_WRITE) !== 0;
      }
      wc?.cache.insert(wc.tag, level, va, { table, tableWritable, noWrite, noEl0, pxn, uxn });
      level++;
      continue;
    }

    // Leaf.
    const af = (dlo & ARM.AF) !== 0;
    if (!af && !cfg.affd && !cfg.ha) return fault(out, "access", level);
    const el0 = (dlo & ARM.AP1) !== 0 && !noEl0;
    const dbmClean = cfg.hd && (dhi & ARM.DBM_HI) !== 0 && (dlo & ARM.AP2) !== 0;
    const rw = ((dlo & ARM.AP2) === 0 || dbmClean) && !noWrite;
    const uxnLeaf = uxn || (dhi & ARM.UXN_HI) !== 0;
    // Writable at EL0 implies privileged execute-never.
    const pxnLeaf = pxn || (dhi & ARM.PXN_HI) !== 0 || (el0 && rw);
    let perms = Perm.PRIV_READ | (rw ? Perm.PRIV_WRITE : 0) | (pxnLeaf ? 0 : Perm.PRIV_EXEC);
    if (el0) perms |= Perm.USER_READ | (rw ? Perm.USER_WRITE : 0) | (uxnLeaf ? 0 : Perm.USER_EXEC);
    const need = neededPerms(write, exec, priv);
    if ((perms & need) !== need) return fault(out, "permission", level);

    out.pa = addr + offsetIn(va, shift);
    out.pageSize = 2 ** shift;
    out.global = (dlo & ARM.NG) === 0;
    out.perms = perms;
    if (s2 !== undefined && inner !== null) {
      const ipa = out.pa;
      if (!s2.translate(ipa, access, false, inner)) return nestedFault(out, inner, "output");
      absorb(out, inner);
      out.pa = inner.pa;
      if (inner.pageSize < out.pageSize) out.pageSize = inner.pageSize;
      out.perms = perms & inner.perms;
    }

    // Hardware updates: AF with HA, AP[2] cleared on a write to a writable-clean page with HD.
    let want = dlo;
    if (!af && cfg.ha) want |= ARM.AF;
    if (write && dbmClean) want &= ~ARM.AP2;
    want >>>= 0;
    if (want !== dlo) {
      if (!tableWritable) {
        // Stage 2 does not let hardware write the stage-1 descriptor (CLASS = TT).
        out.ok = false;
        out.kind = "permission";
        out.stage = 2;
        out.level = 3;
        out.s2Phase = "table";
        out.ipa = tableIpa + index * 8;
        out.faultWrite = true;
        return out;
      }
      out.writes++;
      if (!mem.write64(slot, want, dhi)) return abort(out, level, slot);
    }
    // Still clean after a read: the TLB may only cache it read-only, so the first write comes back to the walker.
    if (!write && dbmClean) out.perms &= ~(Perm.PRIV_WRITE | Perm.USER_WRITE);
    out.ok = true;
    return out;
  }
}

/**
 * Stage-2 walk (Arm ARM VMSAv8-64 stage 2; Linux io-pgtable-arm.c: arm_lpae_alloc_pgtable_s2()): start level from SL0 with up to 16
 * concatenated tables, S2AP read/write, XN (XN[0] only with XNX), AF with
 * S2AFFD/S2HA, DBM with S2HD. `table` marks a fetch of a stage-1
 * descriptor (a table walk), which S2PTW forbids from Device memory.
 */
export function walkStage2(mem: PhysMem, cfg: ArmS2Config, ipa: number, access: WalkAccess, table: boolean, out: ArmWalkResult, opts?: ArmS2WalkOptions): ArmWalkResult {
  resetArmWalkResult(out);
  out.stage = 2;
  out.faultAddr = ipa;
  out.ipa = ipa;
  const write = access.write;
  out.faultWrite = write;
  const start = cfg.startLevel;
  if (!Number.isInteger(ipa) || ipa < 0 || ipa >= 2 ** cfg.inputBits) return fault(out, "translation", start);
  const lo = ipa >>> 0;
  const hi = Math.floor(ipa / 0x1_0000_0000) | 0;
  const wc = opts?.walkCache;
  const oaLimit = 2 ** cfg.outputBits;
  let level = start;
  let base = cfg.ttb;
  if (wc !== undefined) {
    for (let l = 2; l >= start; l--) {
      const hit = wc.cache.lookup(wc.tag, l, ipa);
      if (hit !== undefined) {
        out.walkCacheHits++;
        base = hit.table;
        level = l + 1;
        break;
      }
    }
  }
  const e = out.scratch;
  for (;;) {
    const index = level === start ? armStartIndex(ipa, level, cfg.inputBits) : armIndex(lo, hi, level);
    const slot = base + index * 8;
    out.reads++;
    if (!mem.read64(slot, e)) return abort(out, level, slot);
    const dlo = e.lo;
    const dhi = e.hi;
    if ((dlo & ARM.VALID) === 0) return fault(out, "translation", level);
    const isTable = (dlo & ARM.TYPE) !== 0 && level < 3;
    if (!isTable && (level === 0 || (level === 3 && (dlo & ARM.TYPE) === 0))) return fault(out, "translation", level);
    const shift = armLevelShift(level);
    const addr = isTable ? descAddr(dlo, dhi) : Math.floor(descAddr(dlo, dhi) / 2 ** shift) * 2 ** shift;
    if ((dhi & ARM.OA_HI_HI) !== 0 || addr >= oaLimit) return fault(out, "address-size", level);
    if (isTable) {
      base = addr;
      wc?.cache.insert(wc.tag, level, ipa, { table: addr, tableWritable: true, noWrite: false, noEl0: false, pxn: false, uxn: false });
      level++;
      continue;
    }
    const af = (dlo & ARM.AF) !== 0;
    if (!af && !cfg.affd && !cfg.ha) return fault(out, "access", level);
    const r = (dlo & ARM.S2AP_R) !== 0;
    const dbmClean = cfg.hd && (dhi & ARM.DBM_HI) !== 0 && (dlo & ARM.S2AP_W) === 0;
    const w = (dlo & ARM.S2AP_W) !== 0 || dbmClean;
    const xn1 = (dhi & ARM.UXN_HI) !== 0;
    const xn0 = cfg.xnx && (dhi & ARM.XN0_HI) !== 0;
    // XN[1:0] with XNX: 00 both, 01 EL0 only, 10 none, 11 EL1 only; without XNX, XN[1] alone.
    const x1 = cfg.xnx ? xn1 === xn0 : !xn1;
    const x0 = !xn1;
    let perms = 0;
    if (r) perms |= Perm.PRIV_READ | Perm.USER_READ;
    if (w) perms |= Perm.PRIV_WRITE | Perm.USER_WRITE;
    if (x1) perms |= Perm.PRIV_EXEC;
    if (x0) perms |= Perm.USER_EXEC;
    if (table && cfg.ptw && s2IsDevice(dlo)) return fault(out, "permission", level);
    const need = neededPerms(write, access.exec === true, access.priv === true);
    if ((perms & need) !== need) return fault(out, "permission", level);
    let want = dlo;
    if (!af && cfg.ha) want |= ARM.AF;
    if (write && dbmClean) want |= ARM.S2AP_W;
    want >>>= 0;
    if (want !== dlo) {
      out.writes++;
      if (!mem.write64(slot, want, dhi)) return abort(out, level, slot);
    }
    // Still clean after a read: cache it read-only, so the first write comes back to the walker.
    if (!write && dbmClean) perms &= ~(Perm.PRIV_WRITE | Perm.USER_WRITE);
    out.pa = addr + offsetIn(ipa, shift);
    out.pageSize = 2 ** shift;
    out.perms = perms;
    out.ok = true;
    return out;
  }
}

/** `addr` modulo 2^shift (correct for negative addresses). */
function offsetIn(addr: number, shift: number): number {
  if (shift <= 30) return (addr >>> 0) & ((1 << shift) - 1);
  const m = 2 ** shift;
  return addr - Math.floor(addr / m) * m;
}

function fault(out: ArmWalkResult, kind: ArmFaultKind, level: number): ArmWalkResult {
  out.ok = false;
  out.kind = kind;
  out.level = level;
  return out;
}

function abort(out: ArmWalkResult, level: number, slot: number): ArmWalkResult {
  out.fetchAddr = slot;
  return fault(out, "external-abort", level);
}

function absorb(out: ArmWalkResult, inner: ArmWalkResult): void {
  out.reads += inner.reads;
  out.writes += inner.writes;
  out.walkCacheHits += inner.walkCacheHits;
}

function nestedFault(out: ArmWalkResult, inner: ArmWalkResult, phase: ArmS2Phase): ArmWalkResult {
  absorb(out, inner);
  out.ok = false;
  out.kind = inner.kind ?? "translation";
  out.stage = 2;
  out.level = inner.level;
  out.s2Phase = phase;
  out.ipa = inner.ipa;
  out.fetchAddr = inner.fetchAddr;
  out.faultWrite = inner.faultWrite;
  return out;
}

/** A plain stage 2 for nested walks (no TLB in front). */
export function stage2Of(mem: PhysMem, cfg: ArmS2Config, opts?: ArmS2WalkOptions): { translate(ipa: number, access: WalkAccess, table: boolean, out: ArmWalkResult): boolean } {
  return { translate: (ipa, access, table, out) => walkStage2(mem, cfg, ipa, access, table, out, opts).ok };
}
