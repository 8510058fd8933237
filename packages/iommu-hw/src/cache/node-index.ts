/**
 * One tag's entries in a {@link TaggedLru}: numeric key -> value, as an
 * open-addressing hash table with linear probing over flat arrays.
 *
 * It answers exactly what a `Map<number, V>` answers (keys compare by
 * SameValueZero: -0 is 0, NaN finds NaN); it exists because the IOTLB-hit
 * path beyond a micro-TLB is one probe of this table, and a `Map` of a few
 * thousand entries cost about as much as the rest of that path. Keys here are
 * page numbers of one tag, so the slot is taken from the key's low bits:
 * neighbouring pages land in neighbouring slots, and a sweep over a range
 * walks the table in order. Deletion shifts the following run back (no
 * tombstones), so a probe never walks over dead slots. A slot is in use when
 * it holds a value (values are never `undefined`), so a probe reads the key
 * and value arrays and no third array of flags.
 */
export interface ReadonlyNodeIndex<V extends object | number> {
  readonly size: number;
  get(key: number): V | undefined;
}

const MIN_SLOTS = 8;

/** The slot a key hashes to: its bits 2..31 (the 4 KiB page number under a 2-bit size code), mixed with the code. */
const slotOf = (key: number, mask: number): number => ((key >>> 2) ^ ((key & 3) << 7)) & mask;

/** SameValueZero, as Map compares keys (NaN is the only value unequal to itself). */
const sameKey = (a: number, b: number): boolean => a === b || (a !== a && b !== b);

export class NodeIndex<V extends object | number> implements ReadonlyNodeIndex<V> {
  #keys = new Float64Array(MIN_SLOTS);
  #vals: (V | undefined)[] = new Array<V | undefined>(MIN_SLOTS).fill(undefined);
  #mask = MIN_SLOTS - 1;
  #size = 0;

  get size(): number {
    return this.#size;
  }

  get(key: number): V | undefined {
    const mask = this.#mask;
    const keys = this.#keys;
    const vals = this.#vals;
    let j = slotOf(key, mask);
    for (let v = vals[j]; v !== undefined; v = vals[j]) {
      if (sameKey(keys[j] ?? 0, key)) return v;
      j = (j + 1) & mask;
    }
    return undefined;
  }

  set(key: number, value: V): void {
    // One probe: it ends at the key's slot, or at the empty slot a new key takes (the end of its
    // run), unless the table must grow first.
    const mask = this.#mask;
    const keys = this.#keys;
    const vals = this.#vals;
    let j = slotOf(key, mask);
    for (let v = vals[j]; v !== undefined; v = vals[j]) {
      if (sameKey(keys[j] ?? 0, key)) {
        vals[j] = value;
        return;
      }
      j = (j + 1) & mask;
    }
    // Keep the load at most 1/2: probe runs stay short.
    if (2 * (this.#size + 1) > mask + 1) {
      this.#resize(2 * (mask + 1));
      this.#place(key, value);
    } else {
      keys[j] = key;
      vals[j] = value;
    }
    this.#size++;
  }

  delete(key: number): boolean {
    let j = this.#find(key);
    if (j < 0) return false;
    const mask = this.#mask;
    const keys = this.#keys;
    const vals = this.#vals;
    // Backward-shift deletion: move every later entry of the run whose home slot
    // does not lie cyclically in (j, k] into the hole, so every entry stays
    // reachable from its home slot without crossing an empty slot.
    let k = j;
    for (;;) {
      k = (k + 1) & mask;
      if (vals[k] === undefined) break;
      const home = slotOf(keys[k] ?? 0, mask);
      const inRange = j <= k ? j < home && home <= k : j < home || home <= k;
      if (inRange) continue;
      keys[j] = keys[k] ?? 0;
      vals[j] = vals[k];
      j = k;
    }
    vals[j] = undefined;
    this.#size--;
    return true;
  }

  clear(): void {
    this.#keys = new Float64Array(MIN_SLOTS);
    this.#vals = new Array<V | undefined>(MIN_SLOTS).fill(undefined);
    this.#mask = MIN_SLOTS - 1;
    this.#size = 0;
  }

  /** The values, in slot order (a snapshot: safe to delete while iterating it). */
  values(): V[] {
    const out: V[] = [];
    for (const v of this.#vals) if (v !== undefined) out.push(v);
    return out;
  }

  #find(key: number): number {
    const mask = this.#mask;
    let j = slotOf(key, mask);
    while (this.#vals[j] !== undefined) {
      if (sameKey(this.#keys[j] ?? 0, key)) return j;
      j = (j + 1) & mask;
    }
    return -1;
  }

  #place(key: number, value: V): void {
    const mask = this.#mask;
    let j = slotOf(key, mask);
    while (this.#vals[j] !== undefined) j = (j + 1) & mask;
    this.#keys[j] = key;
    this.#vals[j] = value;
  }

  #resize(slots: number): void {
    const keys = this.#keys;
    const vals = this.#vals;
    this.#keys = new Float64Array(slots);
    this.#vals = new Array<V | undefined>(slots).fill(undefined);
    this.#mask = slots - 1;
    for (let j = 0; j < vals.length; j++) {
      const v = vals[j];
      if (v !== undefined) this.#place(keys[j] ?? 0, v);
    }
  }
}
