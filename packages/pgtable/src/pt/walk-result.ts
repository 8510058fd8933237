import type { WalkOutcome, WalkResult } from "./types.js";

/** A fresh result object for a walker to fill; keep one per caller and reuse it. */
export function newWalkResult(): WalkResult {
  return {
    ok: false,
    pa: 0,
    pageSize: 0,
    read: false,
    write: false,
    exec: false,
    user: false,
    kind: null,
    stage: "first",
    level: 0,
    denied: null,
    nested: null,
    flLevel: 0,
    faultAddr: 0,
    faultWrite: false,
    reads: 0,
    writes: 0,
    pscHits: 0,
    scratch: { lo: 0, hi: 0 },
    inner: null,
  };
}

/** Clears the outcome fields before a walk (counters included). */
export function resetWalkResult(r: WalkResult): void {
  r.ok = false;
  r.pa = 0;
  r.pageSize = 0;
  r.read = r.write = r.exec = r.user = false;
  r.kind = null;
  r.stage = "first";
  r.level = 0;
  r.denied = null;
  r.nested = null;
  r.flLevel = 0;
  r.faultAddr = 0;
  r.faultWrite = false;
  r.reads = 0;
  r.writes = 0;
  r.pscHits = 0;
}

/** An immutable copy of what the last walk into `r` found. */
export function toOutcome(r: WalkResult): WalkOutcome {
  if (r.ok) {
    return { ok: true, pa: r.pa, pageSize: r.pageSize, read: r.read, write: r.write, exec: r.exec, user: r.user };
  }
  return {
    ok: false,
    // A result that was never filled reads as a not-present fault rather than a fake success.
    kind: r.kind ?? "not-present",
    stage: r.stage,
    level: r.level,
    denied: r.denied,
    nested: r.nested,
    flLevel: r.flLevel,
    faultAddr: r.faultAddr,
    faultWrite: r.faultWrite,
  };
}
