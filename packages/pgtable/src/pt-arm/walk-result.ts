import type { ArmWalkResult } from "./types.js";

export function newArmWalkResult(): ArmWalkResult {
  return {
    ok: false, pa: 0, pageSize: 0, perms: 0, global: true, kind: null, stage: 1, level: 0, s2Phase: null,
    faultAddr: 0, ipa: 0, fetchAddr: 0, faultWrite: false, reads: 0, writes: 0, walkCacheHits: 0,
    scratch: { lo: 0, hi: 0 }, inner: null,
  };
}

export function resetArmWalkResult(r: ArmWalkResult): void {
  r.ok = false;
  r.pa = 0;
  r.pageSize = 0;
  r.perms = 0;
  r.global = true;
  r.kind = null;
  r.stage = 1;
  r.level = 0;
  r.s2Phase = null;
  r.faultAddr = 0;
  r.ipa = 0;
  r.fetchAddr = 0;
  r.faultWrite = false;
  r.reads = 0;
  r.writes = 0;
  r.walkCacheHits = 0;
}
