import { type CacheNode, TaggedLru } from "../cache/tagged-lru.js";
import type { ReadonlyNodeIndex } from "../cache/node-index.js";
import type { TranslateOk } from "../iommu-port.js";

/**
 * The device TLB (PCIe Address Translation Cache) of an endpoint.
 *
 * It is filled only from ATS translation completions and emptied only by
 * ATS invalidation requests (`EndpointPort.invalidateDeviceTlb`) or by a
 * Function Level Reset. Nothing else removes an entry: a translation the IOMMU
 * has since torn down keeps being served until the invalidation arrives, which
 * is exactly the bug a missing device-TLB flush causes on real hardware.
 *
 * Entries are tagged by (PASID or "no PASID", privileged) because a
 * translation obtained with Privileged Mode Requested is not usable for a
 * user-mode request and vice versa; an invalidation with a PASID removes both
 * privilege levels of that PASID (it names the PASID, not the privilege).
 * Each entry covers a naturally aligned power-of-two range, as large as the
 * completion said (4 KiB, 2 MiB, 1 GiB…).
 *
 * A full device TLB gives up an entry by CLOCK (second chance), as the IOTLB
 * does: which entry an ATC replaces is the device's own business (the PCIe
 * ATS chapter defines what it may cache and how invalidation removes it, not
 * a replacement policy), and a hit then costs a reference bit instead of a
 * list move. The victim is still fully determined by the fills and hits.
 */
export interface AtcEntry {
  /** Untranslated base of the range, aligned to `size`. */
  readonly base: number;
  readonly size: number;
  /** Translated (host-physical) base. */
  readonly paBase: number;
  readonly read: boolean;
  readonly write: boolean;
  readonly exec: boolean;
  readonly privOnly: boolean;
}

/**
 * A device TLB's handle on one of its entries ({@link DeviceTlb.lookupHandle}):
 * the cache's node, whose `value` is the entry (still readable after the entry
 * has gone). A holder reads `value` only; the rest is the cache's.
 */
export type AtcHandle = CacheNode<AtcEntry>;

export interface DeviceTlbStats {
  hits: number;
  misses: number;
  fills: number;
  evictions: number;
  /** Invalidation requests received. */
  invalidations: number;
  /** Entries removed by them. */
  invalidated: number;
}

export interface DeviceTlbInvalidation {
  /** Absent: entries of requests without PASID (unless `global`). */
  readonly pasid?: number;
  /** Every PASID's entries (entries of requests without PASID are not touched). */
  readonly global?: boolean;
  readonly addr: number;
  readonly size: number;
}

/** Group of entries of requests without a PASID: one past the largest 20-bit PASID. */
const NO_PASID_GROUP = 1 << 20;
const MIN_SHIFT = 12;

const groupOf = (tag: number): number => Math.floor(tag / 2);
const tagOf = (pasid: number | undefined, priv: boolean): number => (pasid ?? NO_PASID_GROUP) * 2 + (priv ? 1 : 0);
/**
 * Key of the `span`-byte range holding `addr`, where `span` = 2^shift: range index and size both in
 * the key. The span is passed in, not computed: `2 ** shift` with a variable shift is a `Math.pow`
 * call, and this runs on every lookup and fill.
 */
const keyIn = (addr: number, shift: number, span: number): number => Math.floor(addr / span) * 64 + shift;

/**
 * Slots of the lookup memo (see {@link DeviceTlb}): direct-mapped by the low
 * bits of the 4 KiB page number. A power of two, larger than a typical device
 * TLB so that a streaming DMA over its working set rarely collides.
 */
const MEMO_SLOTS = 256;
const MEMO_MASK = MEMO_SLOTS - 1;
const PAGE_SIZE = 4096;

/** Largest power of two {@link log2Exact} answers with 32-bit integer operations. */
const INT_POW2_MAX = 2 ** 30;

/** log2(n) when `n` is a power of two (an integer), else -1. */
function log2Exact(n: number): number {
  // Every fill asks this of a completion's size, nearly always 4 KiB or 2 MiB: for an integer up to
  // 2^30, `n | 0` is `n` and a power of two has one bit set, so no Math.log2/round/pow is needed.
  if (n >= 1 && n <= INT_POW2_MAX && (n | 0) === n) return (n & (n - 1)) === 0 ? 31 - Math.clz32(n) : -1;
  if (!Number.isInteger(n) || n < 1) return -1;
  const s = Math.round(Math.log2(n));
  return 2 ** s === n ? s : -1;
}

export class DeviceTlb {
  readonly stats: DeviceTlbStats = { hits: 0, misses: 0, fills: 0, evictions: 0, invalidations: 0, invalidated: 0 };
  readonly #lru: TaggedLru<AtcEntry>;
  /** Range sizes (as shifts) ever cached since the last full flush, ascending: the sizes a lookup probes. */
  #shifts: number[] = [];
  /** 2^shift for each of `#shifts`. */
  #spans: number[] = [];
  /** The tag last looked up, and the LRU's handle on its entries. */
  #keysTag = -1;
  #keys: ReadonlyNodeIndex<CacheNode<AtcEntry>> | undefined = undefined;
  /**
   * A lookup memo, not a cache level: slot `pfn & MEMO_MASK` remembers the
   * node the full probe returned for (tag, 4 KiB page `pfn`) while the
   * generation was `#gen`. Every address of a 4 KiB page probes to the same
   * node (entries are aligned ranges of at least 4 KiB), and that answer can
   * change only when the node goes (its `valid` drops, on invalidation,
   * eviction, replacement or flush) or when a fill adds an entry that a probe
   * would find first (every fill bumps `#gen`, as do invalidations and flushes,
   * for {@link DeviceTlb.generation}). So a memo hit is exactly the
   * probe's answer, found by a few array loads instead of a Map probe with a
   * floating-point key per cached size. It holds node references only:
   * entries, recency and counters stay the LRU's.
   */
  readonly #memoNode: (CacheNode<AtcEntry> | undefined)[] = new Array<CacheNode<AtcEntry> | undefined>(MEMO_SLOTS).fill(undefined);
  readonly #memoPfn = new Float64Array(MEMO_SLOTS).fill(-1);
  readonly #memoGen = new Float64Array(MEMO_SLOTS);
  #gen = 0;

  constructor(name: string, capacity: number) {
    this.#lru = new TaggedLru<AtcEntry>(name, capacity, groupOf, "clock");
  }

  get size(): number {
    return this.#lru.size;
  }

  get capacity(): number {
    return this.#lru.capacity;
  }

  /**
   * Changes whenever an answer of {@link lookup} or {@link peek} could have: on every fill
   * (which may also evict), every invalidation request and every flush. While it holds,
   * every (requester, address) probes to the entry it probed to before, so a user may keep
   * what it derived from earlier answers (not the hit counts and recency, which only
   * {@link lookup} keeps).
   */
  get generation(): number {
    return this.#gen;
  }

  /** The cached translation of `addr` for this requester, counting a hit or a miss. */
  lookup(pasid: number | undefined, priv: boolean, addr: number): AtcEntry | undefined {
    const e = this.#find(pasid, priv, addr, true);
    if (e === undefined) this.stats.misses++;
    else this.stats.hits++;
    return e;
  }

  /**
   * As {@link lookup}, but answers the cache's handle on the entry hit (its
   * `value` is the entry), so the caller may account later hits on the same
   * entry with {@link hitAgain} instead of probing again.
   */
  lookupHandle(pasid: number | undefined, priv: boolean, addr: number): AtcHandle | undefined {
    const node = this.#findNode(pasid, priv, addr, true);
    if (node === undefined) this.stats.misses++;
    else this.stats.hits++;
    return node;
  }

  /**
   * Accounts a hit on `h` exactly as {@link lookup} would: the same counters
   * (this TLB's and its LRU's) and the same recency update, without the probe.
   * It is the caller's promise that a lookup would have found `h`: `h` came from
   * {@link lookupHandle} for the same requester (PASID, privilege) and the same
   * 4 KiB page while {@link generation} had the value it still has (an entry
   * covers whole aligned 4 KiB pages, and while the generation holds every
   * probe answers as before). A handle whose entry has gone is refused (false,
   * nothing counted); with the generation unchanged that cannot happen.
   */
  hitAgain(h: AtcHandle): boolean {
    if (!h.valid) return false;
    this.#lru.noteHit(h);
    this.stats.hits++;
    return true;
  }

  /** As {@link lookup} without touching recency or counters (for checkers and tests). */
  peek(pasid: number | undefined, priv: boolean, addr: number): AtcEntry | undefined {
    return this.#find(pasid, priv, addr, false);
  }

  /**
   * Caches a translation completion for `addr`. A completion whose size is not
   * a power of two of at least 4 KiB is malformed and is not cached (the
   * access it answered may still use it once).
   */
  fill(pasid: number | undefined, priv: boolean, addr: number, t: TranslateOk): AtcEntry | undefined {
    const shift = log2Exact(t.size);
    if (shift < MIN_SHIFT) return undefined;
    const size = t.size;
    // `addr % size` on an address above 2^31 is a floating-point remainder (a runtime call); for
    // addr > 0 and a power-of-two size, floor division and the product are exact, so this is the
    // same number.
    const offset = addr > 0 ? addr - Math.floor(addr / size) * size : addr % size;
    const entry: AtcEntry = {
      base: addr - offset,
      size,
      paBase: t.pa - offset,
      read: t.read,
      write: t.write,
      exec: t.exec,
      privOnly: t.privOnly,
    };
    const before = this.#lru.stats.evictions;
    this.#gen++;
    this.#lru.insert(tagOf(pasid, priv), keyIn(addr, shift, size), entry);
    this.stats.evictions += this.#lru.stats.evictions - before;
    this.stats.fills++;
    if (!this.#shifts.includes(shift)) {
      this.#shifts = [...this.#shifts, shift].sort((a, b) => a - b);
      this.#spans = this.#shifts.map((sh) => 2 ** sh);
    }
    return entry;
  }

  /**
   * An ATS invalidation request: removes every entry of the named PASID (both
   * privilege levels), of requests without PASID, or of every PASID, that
   * overlaps `[addr, addr + size)`. Returns the number removed.
   */
  invalidate(inv: DeviceTlbInvalidation): number {
    this.stats.invalidations++;
    this.#gen++;
    const lo = inv.addr;
    const hi = inv.addr + inv.size;
    const overlaps = (e: AtcEntry): boolean => e.base < hi && lo < e.base + e.size;
    let n = 0;
    if (inv.global === true) {
      // Rare, and a device TLB is small: collect across PASIDs from the recency list.
      const victims: { tag: number; key: number }[] = [];
      for (const node of this.#lru.entries()) {
        if (groupOf(node.tag) !== NO_PASID_GROUP && overlaps(node.value)) victims.push({ tag: node.tag, key: node.key });
      }
      for (const v of victims) if (this.#lru.invalidate(v.tag, v.key)) n++;
    } else {
      n = this.#lru.invalidateGroup(inv.pasid ?? NO_PASID_GROUP, (_tag, _key, e) => overlaps(e));
    }
    this.stats.invalidated += n;
    return n;
  }

  /** Drops everything: a Function Level Reset, not an ATS invalidation. */
  flushAll(): number {
    const n = this.#lru.invalidateAll();
    this.#gen++;
    this.#shifts = [];
    this.#spans = [];
    return n;
  }

  /** Every cached entry with its tag, most recent first. */
  *entries(): IterableIterator<{ readonly pasid: number | undefined; readonly priv: boolean; readonly entry: AtcEntry }> {
    for (const node of this.#lru.entries()) {
      const g = groupOf(node.tag);
      yield { pasid: g === NO_PASID_GROUP ? undefined : g, priv: node.tag % 2 === 1, entry: node.value };
    }
  }

  #find(pasid: number | undefined, priv: boolean, addr: number, touch: boolean): AtcEntry | undefined {
    return this.#findNode(pasid, priv, addr, touch)?.value;
  }

  #findNode(pasid: number | undefined, priv: boolean, addr: number, touch: boolean): CacheNode<AtcEntry> | undefined {
    const tag = tagOf(pasid, priv);
    const lru = this.#lru;
    const pfn = Math.floor(addr / PAGE_SIZE);
    // ToInt32 keeps the low 32 bits of any integer below 2^53, so this is pfn mod MEMO_SLOTS.
    const slot = pfn & MEMO_MASK;
    const memo = this.#memoNode[slot];
    if (memo?.valid === true && memo.tag === tag && this.#memoPfn[slot] === pfn && this.#memoGen[slot] === this.#gen) {
      if (touch) lru.noteHit(memo);
      return memo;
    }
    // The last tag's entries through the LRU's handle (TaggedLru.keysOf): one probe per size.
    // A dead handle (its tag emptied since) is empty, and is then taken afresh.
    let keys = this.#keysTag === tag ? this.#keys : undefined;
    if (keys === undefined || keys.size === 0) {
      keys = lru.keysOf(tag);
      this.#keysTag = tag;
      this.#keys = keys;
      if (keys === undefined) return undefined;
    }
    // One uncounted probe per cached size; the hit is then counted and bumped once (noteHit),
    // which is what lookup() would have done, without probing the same key twice.
    const shifts = this.#shifts;
    const spans = this.#spans;
    for (let i = 0; i < shifts.length; i++) {
      const shift = shifts[i] ?? 0;
      const node = keys.get(keyIn(addr, shift, spans[i] ?? 1));
      if (node === undefined) continue;
      if (touch) lru.noteHit(node);
      this.#memoNode[slot] = node;
      this.#memoPfn[slot] = pfn;
      this.#memoGen[slot] = this.#gen;
      return node;
    }
    return undefined;
  }
}
