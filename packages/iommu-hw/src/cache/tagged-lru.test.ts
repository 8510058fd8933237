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
