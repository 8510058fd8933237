import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { TaggedLru } from "./tagged-lru.js";

// Tag = did * 2^21 + pasid, group = did: the IOTLB's shape.
const tag = (did: number, pasid: number) => did * 2 ** 21 + pasid;
const groupOf = (t: number) => Math.floor(t / 2 ** 21);

describe("TaggedLru", () => {
  it("evicts the least recently used entry when full, and counts it", () => {
    const c = new TaggedLru<string>("t", 2, groupOf);
    c.insert(tag(1, 1), 10, "a");
    c.insert(tag(1, 1), 11, "b");
    c.lookup(tag(1, 1), 10); // a is now most recent
    c.insert(tag(1, 2), 12, "c");
    expect(c.peek(tag(1, 1), 11)).toBeUndefined();
    expect(c.peek(tag(1, 1), 10)).toBe("a");
    expect(c.stats).toMatchObject({ hits: 1, evictions: 1, inserts: 3 });
  });

  it("invalidates by tag and by group without touching other tags", () => {
    const c = new TaggedLru<number>("t", 100, groupOf);
    for (let p = 1; p <= 3; p++) for (let k = 0; k < 5; k++) c.insert(tag(7, p), k, p);
    c.insert(tag(8, 1), 0, 99);
    expect(c.invalidateTag(tag(7, 2), (k) => k < 2)).toBe(2);
    expect(c.invalidateGroup(7)).toBe(13);
    expect(c.size).toBe(1);
    expect(c.peek(tag(8, 1), 0)).toBe(99);
  });

  it("marks nodes invalid when they leave the cache, so fast paths can trust `valid`", () => {
    const c = new TaggedLru<number>("t", 1);
    const n = c.insert(1, 1, 1);
    expect(n.valid).toBe(true);
    c.insert(1, 2, 2); // evicts n
    expect(n.valid).toBe(false);
    const m = c.insert(1, 2, 3); // replaces
    expect(m.valid).toBe(true);
    c.invalidateAll();
    expect(m.valid).toBe(false);
  });

  it("never exceeds capacity and agrees with a model map (property)", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.constantFrom("ins", "inv", "invTag", "get"), fc.nat({ max: 3 }), fc.nat({ max: 7 })), { maxLength: 200 }),
        (ops) => {
          const c = new TaggedLru<number>("t", 8);
          const model = new Map<string, number>();
          ops.forEach(([op, t, k], i) => {
            if (op === "ins") {
              c.insert(t, k, i);
              model.set(`${t}/${k}`, i);
            } else if (op === "inv") {
              c.invalidate(t, k);
              model.delete(`${t}/${k}`);
            } else if (op === "invTag") {
              c.invalidateTag(t);
              for (const key of [...model.keys()]) if (key.startsWith(`${t}/`)) model.delete(key);
            } else {
              const v = c.lookup(t, k)?.value;
              // A cached value is always the latest written one; absence may be eviction.
              if (v !== undefined) expect(v).toBe(model.get(`${t}/${k}`));
            }
            expect(c.size).toBeLessThanOrEqual(8);
            expect([...c.entries()].length).toBe(c.size);
          });
        },
      ),
    );
  });
});

describe("TaggedLru per-tag handles (keysOf) and uncounted probes (nodeOf)", () => {
  it("a handle sees the tag's entries while it has any, and nothing once the tag has emptied", () => {
    const c = new TaggedLru<string>("t", 4);
    c.insert(1, 10, "a");
    const h = c.keysOf(1);
    expect(h?.get(10)?.value).toBe("a");
    c.insert(1, 11, "b");
    expect(h?.get(11)?.value).toBe("b"); // the same map while the tag lives
    c.invalidateTag(1);
    expect(h?.size).toBe(0);
    c.insert(1, 10, "c"); // a new map: the old handle stays empty
    expect(h?.get(10)).toBeUndefined();
    expect(c.keysOf(1)?.get(10)?.value).toBe("c");
  });

  it("a handle held across a global invalidation or an eviction that empties its tag finds nothing", () => {
    const c = new TaggedLru<string>("t", 1);
    c.insert(1, 10, "a");
    const h1 = c.keysOf(1);
    c.insert(2, 20, "b"); // evicts tag 1's only entry
    expect(h1?.size).toBe(0);
    const h2 = c.keysOf(2);
    c.invalidateAll();
    expect(h2?.size).toBe(0);
    expect(c.keysOf(2)).toBeUndefined();
  });

  it("nodeOf counts nothing and moves nothing; noteHit then counts and bumps as lookup would", () => {
    const c = new TaggedLru<string>("t", 2);
    c.insert(1, 1, "a");
    c.insert(1, 2, "b");
    const n = c.nodeOf(1, 1);
    expect(c.stats).toMatchObject({ hits: 0, misses: 0 });
    expect([...c.entries()].map((e) => e.value)).toEqual(["b", "a"]);
    if (n !== undefined) c.noteHit(n);
    expect(c.stats.hits).toBe(1);
    expect([...c.entries()].map((e) => e.value)).toEqual(["a", "b"]);
    c.insert(1, 3, "c"); // evicts b, the least recent
    expect(c.peek(1, 2)).toBeUndefined();
  });

  it("noteHit on a node that has left the cache neither relinks it nor disturbs the order", () => {
    const c = new TaggedLru<string>("t", 3);
    const a = c.insert(1, 1, "a");
    c.insert(1, 2, "b");
    c.invalidate(1, 1);
    c.noteHit(a);
    expect([...c.entries()].map((e) => e.value)).toEqual(["b"]);
    expect(c.size).toBe(1);
  });
});

/**
 * CLOCK (second chance) written as plainly as it reads: a ring oldest first,
 * a reference bit per entry, and a hand at the oldest end that spares a set
 * entry once (clearing its bit, sending it to the young end) and evicts the
 * first clear one.
 */
class ClockModel {
  ring: { tag: number; key: number; ref: boolean }[] = [];
  evictions = 0;
  constructor(readonly capacity: number) {}
  #at(tag: number, key: number): number {
    return this.ring.findIndex((e) => e.tag === tag && e.key === key);
  }
  insert(tag: number, key: number): void {
    const i = this.#at(tag, key);
    if (i >= 0) this.ring.splice(i, 1);
    while (this.ring.length >= this.capacity) {
      const oldest = this.ring.shift();
      if (oldest === undefined) break;
      if (oldest.ref) {
        oldest.ref = false;
        this.ring.push(oldest);
      } else {
        this.evictions++;
      }
    }
    this.ring.push({ tag, key, ref: false });
  }
  hit(tag: number, key: number): boolean {
    const e = this.ring[this.#at(tag, key)];
    if (e !== undefined) e.ref = true;
    return e !== undefined;
  }
  invalidate(tag: number, key: number): void {
    const i = this.#at(tag, key);
    if (i >= 0) this.ring.splice(i, 1);
  }
}

describe("TaggedLru with the CLOCK policy", () => {
  it("evicts as CLOCK does, hit for hit, against a plain model (property)", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 6 }),
        fc.array(fc.tuple(fc.constantFrom("ins", "get", "note", "inv", "invTag"), fc.nat({ max: 2 }), fc.nat({ max: 5 })), { maxLength: 200 }),
        (capacity, ops) => {
          const c = new TaggedLru<number>("t", capacity, (t) => t, "clock");
          const model = new ClockModel(capacity);
          ops.forEach(([op, t, k], i) => {
            if (op === "ins") {
              c.insert(t, k, i);
              model.insert(t, k);
            } else if (op === "get") {
              expect(c.lookup(t, k) !== undefined).toBe(model.hit(t, k));
            } else if (op === "note") {
              const n = c.nodeOf(t, k);
              if (n !== undefined) c.noteHit(n);
              expect(n !== undefined).toBe(model.hit(t, k));
            } else if (op === "inv") {
              c.invalidate(t, k);
              model.invalidate(t, k);
            } else {
              c.invalidateTag(t);
              for (const e of model.ring.filter((x) => x.tag === t)) model.invalidate(e.tag, e.key);
            }
            // Youngest first, bit for bit.
            expect([...c.entries()].map((n) => [n.tag, n.key, n.referenced])).toEqual([...model.ring].reverse().map((e) => [e.tag, e.key, e.ref]));
            expect(c.stats.evictions).toBe(model.evictions);
          });
        },
      ),
      { numRuns: 300 },
    );
  });

  it("a hit moves nothing; a full cache spares the entry that was hit and evicts the oldest clear one", () => {
    const c = new TaggedLru<string>("t", 3, (t) => t, "clock");
    c.insert(1, 1, "a");
    c.insert(1, 2, "b");
    c.insert(1, 3, "c");
    c.lookup(1, 1);
    expect([...c.entries()].map((e) => e.value)).toEqual(["c", "b", "a"]);
    c.insert(1, 4, "d"); // a is spared (bit cleared, sent to the young end), b goes
    expect([...c.entries()].map((e) => [e.value, e.referenced])).toEqual([["d", false], ["a", false], ["c", false]]);
    expect(c.peek(1, 2)).toBeUndefined();
    expect(c.stats).toMatchObject({ hits: 1, evictions: 1 });
  });

  it("with every bit set, comes round to the oldest entry (FIFO), and noteHit on a node gone from the cache changes nothing", () => {
    const c = new TaggedLru<string>("t", 2, (t) => t, "clock");
    const a = c.insert(1, 1, "a");
    c.insert(1, 2, "b");
    c.lookup(1, 1);
    c.lookup(1, 2);
    c.insert(1, 3, "c"); // both spared once, then a (the oldest again) goes
    expect(a.valid).toBe(false);
    c.noteHit(a);
    expect([...c.entries()].map((e) => [e.value, e.referenced])).toEqual([["c", false], ["b", false]]);
    expect(c.size).toBe(2);
  });
});
