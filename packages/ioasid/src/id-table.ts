/**
 * Per-IOASID metadata as a struct of arrays indexed by ID — what upstream keeps
 * in `struct ioasid_data` behind an xarray. Typed arrays make a live ID cost a
 * fixed, computable 29 bytes (state 1, refs 4, set 4, spid 4, list links 8,
 * private pointer 8) instead of a heap object per ID, and lookups are one
 * index. The arrays grow by doubling up to the namespace size, so a host that
 * uses a few PASIDs does not pay for 2^20.
 *
 * Each set threads its IDs on an intrusive doubly linked list (`next`/`prev`)
 * so "every ID of this set" (freeing a VM's set) never scans the namespace.
 */
export const IdState = { IDLE: 0, ACTIVE: 1, FREE_PENDING: 2 } as const;
export type IdStateValue = (typeof IdState)[keyof typeof IdState];

/** `state` low bits hold the IdState; these flags share the byte. */
export const STATE_MASK = 0x3;
/** An SPID is attached (the `spid` slot is meaningful). */
export const FLAG_SPID = 0x4;
/**
 * The owner's allocation reference is still held: it is dropped only by
 * `free`. A `put` that would take the count through it is a put without a
 * reference, refused rather than letting a buggy user reclaim a live ID.
 */
export const FLAG_OWNER_REF = 0x8;

const NIL = -1;
const INITIAL = 1024;

export class IdTable {
  state: Uint8Array;
  refs: Uint32Array;
  /** Owning set's id (0 = none). */
  set: Uint32Array;
  spid: Uint32Array;
  next: Int32Array;
  prev: Int32Array;
  priv: unknown[];

  constructor(readonly limit: number) {
    const n = Math.min(INITIAL, limit);
    this.state = new Uint8Array(n);
    this.refs = new Uint32Array(n);
    this.set = new Uint32Array(n);
    this.spid = new Uint32Array(n);
    this.next = new Int32Array(n).fill(NIL);
    this.prev = new Int32Array(n).fill(NIL);
    this.priv = new Array<unknown>(n).fill(undefined);
  }

  get length(): number {
    return this.state.length;
  }

  /** Makes index `id` addressable (id < limit). */
  ensure(id: number): void {
    if (id < this.state.length) return;
    let n = this.state.length;
    while (n <= id) n *= 2;
    n = Math.min(n, this.limit);
    const grow = <T extends Uint8Array | Uint32Array | Int32Array>(old: T, make: (len: number) => T): T => {
      const a = make(n);
      a.set(old);
      return a;
    };
    const old = this.state.length;
    this.state = grow(this.state, (len) => new Uint8Array(len));
    this.refs = grow(this.refs, (len) => new Uint32Array(len));
    this.set = grow(this.set, (len) => new Uint32Array(len));
    this.spid = grow(this.spid, (len) => new Uint32Array(len));
    this.next = grow(this.next, (len) => new Int32Array(len).fill(NIL));
    this.prev = grow(this.prev, (len) => new Int32Array(len).fill(NIL));
    for (let i = old; i < n; i++) this.priv.push(undefined);
  }

  stateOf(id: number): IdStateValue {
    return ((this.state[id] ?? 0) & STATE_MASK) as IdStateValue;
  }

  /** Bytes of typed storage per addressable ID (the private-data slot counted as one pointer). */
  static readonly bytesPerId = 1 + 4 + 4 + 4 + 4 + 4 + 8;
}

/** Head and tail of one set's ID list, kept in the set. */
export interface IdList {
  head: number;
  tail: number;
}

export const emptyList = (): IdList => ({ head: NIL, tail: NIL });

export function listAppend(t: IdTable, list: IdList, id: number): void {
  t.prev[id] = list.tail;
  t.next[id] = NIL;
  if (list.tail === NIL) list.head = id;
  else t.next[list.tail] = id;
  list.tail = id;
}

export function listRemove(t: IdTable, list: IdList, id: number): void {
  const p = t.prev[id] ?? NIL;
  const n = t.next[id] ?? NIL;
  if (p === NIL) list.head = n;
  else t.next[p] = n;
  if (n === NIL) list.tail = p;
  else t.prev[n] = p;
  t.prev[id] = NIL;
  t.next[id] = NIL;
}

/** A snapshot of the list's IDs, so callers may free while iterating. */
export function listIds(t: IdTable, list: IdList): number[] {
  const out: number[] = [];
  for (let id = list.head; id !== NIL; id = t.next[id] ?? NIL) out.push(id);
  return out;
}
