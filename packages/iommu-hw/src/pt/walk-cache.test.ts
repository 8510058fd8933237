import { describe, expect, it } from "vitest";
import type { PscEntry } from "@vsva/pgtable";
import { WalkCache } from "./walk-cache.js";

const M2 = 2 ** 21;
const G1 = 2 ** 30;
const entry = (table: number): PscEntry => ({ table, tableWritable: true, read: true, write: true, exec: true, user: true });

describe("paging-structure cache", () => {
  it("finds an entry for every address its level covers, and only under its own tag", () => {
    const c = new WalkCache("psc", 16);
    c.insert(1, 2, 0x20_1000, entry(0xa000)); // PDE: covers [2 MiB, 4 MiB)
    expect(c.lookup(1, 2, 0x20_0000)?.table).toBe(0xa000);
    expect(c.lookup(1, 2, 0x3f_ffff)?.table).toBe(0xa000);
    expect(c.lookup(1, 2, 0x40_0000)).toBeUndefined();
    expect(c.lookup(1, 3, 0x20_0000)).toBeUndefined();
    expect(c.lookup(2, 2, 0x20_0000)).toBeUndefined();
  });

  it("keeps upper-half (negative) prefixes apart from lower-half ones", () => {
    const c = new WalkCache("psc", 16);
    c.insert(1, 2, -M2, entry(1));
    c.insert(1, 2, 0, entry(2));
    expect(c.lookup(1, 2, -1)?.table).toBe(1);
    expect(c.lookup(1, 2, 5)?.table).toBe(2);
  });

  it("invalidates by range only the entries whose coverage meets the range, at every level", () => {
    const c = new WalkCache("psc", 64);
    c.insert(1, 2, 0, entry(1)); // [0, 2M)
    c.insert(1, 2, M2, entry(2)); // [2M, 4M)
    c.insert(1, 3, 0, entry(3)); // [0, 1G)
    c.insert(1, 4, 0, entry(4)); // [0, 512G)
    c.insert(2, 2, M2, entry(5));
    expect(c.invalidateRange(1, M2 + 4096, 4096)).toBe(3);
    expect(c.lookup(1, 2, 0)?.table).toBe(1);
    expect(c.lookup(1, 2, M2)).toBeUndefined();
    expect(c.lookup(1, 3, 0)).toBeUndefined();
    expect(c.lookup(2, 2, M2)?.table).toBe(5);
  });

  it("handles a range too wide to probe key by key the same way", () => {
    const c = new WalkCache("psc", 64);
    c.insert(1, 2, 0, entry(1));
    c.insert(1, 2, 300 * M2, entry(2));
    c.insert(1, 2, 2 * G1, entry(3)); // outside
    c.insert(1, 3, G1, entry(4)); // outside
    expect(c.invalidateRange(1, 0, G1)).toBe(2);
    expect(c.size).toBe(2);
    expect(c.lookup(1, 2, 2 * G1)?.table).toBe(3);
    expect(c.lookup(1, 3, G1)?.table).toBe(4);
  });

  it("invalidates a whole tag, a group of tags, or everything", () => {
    const c = new WalkCache("psc", 64, (tag) => tag >> 8);
    c.insert(0x101, 2, 0, entry(1));
    c.insert(0x102, 2, 0, entry(2));
    c.insert(0x201, 2, 0, entry(3));
    expect(c.invalidateTag(0x101)).toBe(1);
    expect(c.invalidateGroup(1)).toBe(1);
    expect(c.lookup(0x201, 2, 0)?.table).toBe(3);
    expect(c.invalidateAll()).toBe(1);
    expect(c.size).toBe(0);
  });
});
