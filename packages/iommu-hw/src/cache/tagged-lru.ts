/**
 * A bounded LRU cache for hardware translation caches (IOTLB, context and
 * PASID caches, paging-structure caches, device TLBs).
 *
 * Entries are addressed by a numeric `tag` (e.g. DID and PASID folded into one
 * number) and a numeric `key` within the tag (e.g. a virtual page number).
 * Every tag belongs to a `group` (e.g. the DID alone), derived by the
 * `groupOf` function given at construction. Invalidation by key, by tag or by
 * group touches only the entries concerned: nothing scans the whole cache, so
 * a PASID-selective flush costs the same with 1K or 64K unrelated entries.
 *
 * Replacement is one of two policies, chosen at construction:
 * - `"lru"` (the default): recency is an intrusive doubly-linked list, so a
 *   hit moves its node to the front in O(1) without Map churn, and the least
 *   recently used entry is evicted;
 * - `"clock"`: a hit only sets the node's `referenced` bit; the same list is
 *   then the clock's ring in insertion order, and eviction sweeps it from the
 *   oldest end, clearing set bits and giving those entries a second chance
 *   (moving them to the young end) until it finds one whose bit is clear.
 *   That is CLOCK (second chance), the approximation of LRU hardware TLBs
 *   use: a hit is one bit written in the entry it already read, instead of a
 *   list move touching two neighbours. Which entry a full cache evicts is
 *   still fully determined by the sequence of inserts and hits.
 *
 * Every cached value is wrapped in a {@link CacheNode} whose `valid`
 * flag drops to false when it is invalidated or evicted; a caller may keep the
 * node as a one-entry fast path and trust it only while `valid` holds.
 */
import { NodeIndex, type ReadonlyNodeIndex } from "./node-index.js";

export interface CacheStats {
  hits: number;
  misses: number;
  inserts: number;
  evictions: number;
  /** Entries removed by invalidation (not eviction). */
  invalidated: number;
}

/** How a full {@link TaggedLru} picks its victim (see the module comment). */
export type ReplacementPolicy = "lru" | "clock";

/**
 * One cached entry. `M` is the type of an answer its holder may memoise on
 * the entry ({@link memo}, keyed by {@link memoKey} and {@link memoAux}): an
 * immutable object derived from `value` and the key alone, which dies with
 * the node (a replaced entry is a new node), so it can never outlive the
 * entry it was derived from.
 */
export class CacheNode<V, M = never> {
  prev: CacheNode<V, M> | null = null;
  next: CacheNode<V, M> | null = null;
  valid = true;
  /** CLOCK's reference bit: set by a hit, cleared by an eviction sweep that spares the entry. */
  referenced = false;
  /** The holder's memoised answer for ({@link memoKey}, {@link memoAux}), or null. */
  memo: M | null = null;
  /** The key of {@link memo}: NaN (equal to nothing) while there is none. */
  memoKey = Number.NaN;
  memoAux = 0;
  constructor(
    readonly tag: number,
    readonly key: number,
    public value: V,
  ) {}
}

export class TaggedLru<V, M = never> {
  readonly stats: CacheStats = { hits: 0, misses: 0, inserts: 0, evictions: 0, invalidated: 0 };
  readonly #byTag = new Map<number, NodeIndex<CacheNode<V, M>>>();
  readonly #byGroup = new Map<number, Set<number>>();
  #head: CacheNode<V, M> | null = null; // most recent (LRU) / youngest (CLOCK)
  #tail: CacheNode<V, M> | null = null; // least recent (LRU) / oldest, where the hand sweeps (CLOCK)
  #size = 0;
  #capacity: number;
  readonly #clock: boolean;

  constructor(
    readonly name: string,
    capacity: number,
    private readonly groupOf: (tag: number) => number = (t) => t,
    readonly policy: ReplacementPolicy = "lru",
  ) {
    this.#capacity = TaggedLru.#checkCapacity(name, capacity);
    this.#clock = policy === "clock";
  }

  static #checkCapacity(name: string, c: number): number {
    if (!Number.isInteger(c) || c < 1) throw new RangeError(`${name}: capacity must be a positive integer, got ${c}`);
    return c;
  }

  get size(): number {
    return this.#size;
  }

  get capacity(): number {
    return this.#capacity;
  }

  /** Shrinking evicts entries at once, as the policy picks them. */
  set capacity(c: number) {
    this.#capacity = TaggedLru.#checkCapacity(this.name, c);
    while (this.#size > this.#capacity) this.#evictOne();
  }

  /** Looks up and marks the entry used (LRU: moves it to the front; CLOCK: sets its bit); counts a hit or a miss. */
  lookup(tag: number, key: number): CacheNode<V, M> | undefined {
    const node = this.#byTag.get(tag)?.get(key);
    if (node === undefined) {
      this.stats.misses++;
      return undefined;
    }
    this.stats.hits++;
    if (this.#clock) node.referenced = true;
    else this.#bump(node);
    return node;
  }

  /** Looks up without touching recency or counters (for checkers and tests). */
  peek(tag: number, key: number): V | undefined {
    return this.#byTag.get(tag)?.get(key)?.value;
  }

  /**
   * The node of (tag, key) without touching recency or counters: a caller's
   * fast path probes with this and, when it uses the entry, reports the hit
   * with {@link noteHit}, so the counters and the LRU order are those of
   * {@link lookup}. A caller that gives up on the entry must then do the
   * counting {@link lookup} itself.
   */
  nodeOf(tag: number, key: number): CacheNode<V, M> | undefined {
    return this.#byTag.get(tag)?.get(key);
  }

  /**
   * A stable handle on `tag`'s entries (key -> node), or undefined while the
   * tag holds none. The map is live while the tag has entries; once the tag
   * empties (invalidation, eviction, {@link invalidateAll}) that map is
   * dropped and stays empty for good, and a later insert starts a new one.
   * So a holder probing its handle sees exactly the cache's entries, or
   * nothing: a miss on a handle is not a miss of the cache, and the holder
   * must then look up (and may re-take the handle) the ordinary way.
   * Read-only to the holder; hits found through it are reported with
   * {@link noteHit}.
   */
  keysOf(tag: number): ReadonlyNodeIndex<CacheNode<V, M>> | undefined {
    return this.#byTag.get(tag);
  }

  /** Records a hit served from a caller's fast path on `node`. */
  noteHit(node: CacheNode<V, M>): void {
    this.stats.hits++;
    // CLOCK: a node that has left the cache may be marked too; nothing reads its bit again.
    if (this.#clock) node.referenced = true;
    else if (node !== this.#head) this.#bump(node);
  }

  insert(tag: number, key: number, value: V): CacheNode<V, M> {
    let keys = this.#byTag.get(tag);
    const old = keys?.get(key);
    if (old !== undefined) {
      // Replace in place: a new node, so holders of the old one see it invalid.
      this.#unlink(old);
      old.valid = false;
      keys?.delete(key);
      this.#size--;
    }
    if (keys === undefined) {
      keys = new NodeIndex();
      this.#byTag.set(tag, keys);
      const g = this.groupOf(tag);
      let tags = this.#byGroup.get(g);
      if (tags === undefined) {
        tags = new Set();
        this.#byGroup.set(g, tags);
      }
      tags.add(tag);
    }
    while (this.#size >= this.#capacity) this.#evictOne();
    // Eviction may have emptied and dropped this very tag's map.
    if (!this.#byTag.has(tag)) return this.insert(tag, key, value);
    const node = new CacheNode(tag, key, value);
    keys.set(key, node);
    this.#pushFront(node);
    this.#size++;
    this.stats.inserts++;
    return node;
  }

  /** Removes one entry; returns whether it was present. */
  invalidate(tag: number, key: number): boolean {
    const node = this.#byTag.get(tag)?.get(key);
    if (node === undefined) return false;
    this.#remove(node);
    this.stats.invalidated++;
    return true;
  }

  /** Removes the entries of `tag` for which `pred` holds (all when omitted). Touches only that tag. */
  invalidateTag(tag: number, pred?: (key: number, value: V) => boolean): number {
    const keys = this.#byTag.get(tag);
    if (keys === undefined) return 0;
    let n = 0;
    for (const node of keys.values()) {
      if (pred === undefined || pred(node.key, node.value)) {
        this.#remove(node);
        n++;
      }
    }
    this.stats.invalidated += n;
    return n;
  }

  /** Removes the entries of every tag in `group` for which `pred` holds. */
  invalidateGroup(group: number, pred?: (tag: number, key: number, value: V) => boolean): number {
    const tags = this.#byGroup.get(group);
    if (tags === undefined) return 0;
    let n = 0;
    for (const tag of [...tags]) {
      n += this.invalidateTag(tag, pred === undefined ? undefined : (k, v) => pred(tag, k, v));
    }
    return n;
  }

  /** Removes everything (a global invalidation). */
  invalidateAll(): number {
    const n = this.#size;
    for (let node = this.#head; node !== null; node = node.next) node.valid = false;
    // Empty the per-tag maps too: a holder of a {@link keysOf} handle must find nothing in it.
    for (const keys of this.#byTag.values()) keys.clear();
    this.#byTag.clear();
    this.#byGroup.clear();
    this.#head = this.#tail = null;
    this.#size = 0;
    this.stats.invalidated += n;
    return n;
  }

  /** Every live entry, most recent first (CLOCK: youngest first, the hand's end last), for invariant checks comparing with fresh walks. */
  *entries(): IterableIterator<CacheNode<V, M>> {
    for (let node = this.#head; node !== null; node = node.next) yield node;
  }

  /** Tags currently holding entries in `group`. */
  tagsOf(group: number): readonly number[] {
    return [...(this.#byGroup.get(group) ?? [])];
  }

  #evictOne(): void {
    let victim = this.#tail;
    if (victim === null) return;
    // CLOCK: spare every referenced entry once (clear its bit, move it to the young end). Each
    // bit cleared was set by a hit, so the sweep costs O(1) amortised; with every bit set it
    // comes round to the oldest entry, its bit now clear.
    while (this.#clock && victim.referenced) {
      victim.referenced = false;
      this.#unlink(victim);
      this.#pushFront(victim);
      victim = this.#tail;
      if (victim === null) return;
    }
    this.#remove(victim);
    this.stats.evictions++;
  }

  #remove(node: CacheNode<V, M>): void {
    this.#unlink(node);
    node.valid = false;
    this.#size--;
    const keys = this.#byTag.get(node.tag);
    if (keys === undefined) return;
    keys.delete(node.key);
    if (keys.size === 0) {
      this.#byTag.delete(node.tag);
      const g = this.groupOf(node.tag);
      const tags = this.#byGroup.get(g);
      tags?.delete(node.tag);
      if (tags?.size === 0) this.#byGroup.delete(g);
    }
  }

  /**
   * Moves `node` to the front. This is every hit's cost, so it is written out
   * (no #unlink/#pushFront calls): a node that is not the head has a
   * predecessor, and the list then has a head to put it before.
   */
  #bump(node: CacheNode<V, M>): void {
    const head = this.#head;
    if (head === node || head === null) return;
    const prev = node.prev;
    // Not linked (a holder kept an invalidated node): nothing to move.
    if (prev === null) return;
    const next = node.next;
    prev.next = next;
    if (next !== null) next.prev = prev;
    else this.#tail = prev;
    node.prev = null;
    node.next = head;
    head.prev = node;
    this.#head = node;
  }

  #pushFront(node: CacheNode<V, M>): void {
    node.prev = null;
    node.next = this.#head;
    if (this.#head !== null) this.#head.prev = node;
    this.#head = node;
    this.#tail ??= node;
  }

  #unlink(node: CacheNode<V, M>): void {
    if (node.prev !== null) node.prev.next = node.next;
    else if (this.#head === node) this.#head = node.next;
    if (node.next !== null) node.next.prev = node.prev;
    else if (this.#tail === node) this.#tail = node.prev;
    node.prev = node.next = null;
  }
}
