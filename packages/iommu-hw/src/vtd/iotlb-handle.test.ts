import { Errno } from "@vsva/kernel";
import { errnoOf } from "@vsva/kernel/testing";
import { describe, expect, it } from "vitest";
import type { DmaRequest } from "../iommu-port.js";
import { CacheClass, cacheTag, iotlbKey } from "./caches.js";
import { VtdRig, desc } from "./testing/rig.js";
import { MICRO_TLB_SLOTS } from "./translate.js";

/**
 * An IOTLB hit behind a resolved path goes through the path's handle on its
 * IOTLB tag. The handle is a shortcut only: it must count, order and go
 * stale exactly as the IOTLB lookup it replaces.
 */
const BASE = 0x40_0000;
const PASID = 5;
const DID = 1;
/** Pages that share one micro-TLB slot, so every access after the first of each is an IOTLB lookup proper. */
const PAGES = 3;

function rig(iotlb = 16): { rig: VtdRig; at: (p: number, off?: number) => DmaRequest; root: number } {
  const r = new VtdRig({ caches: { iotlb } }).bringUp();
  r.device();
  const root = r.alloc();
  r.setPasid(PASID, { pgtt: 1, did: DID, flptr: root });
  for (let p = 0; p < PAGES; p++) r.flMap(root, BASE + p * MICRO_TLB_SLOTS * 4096, (0x300 + p) * 4096);
  const at = (p: number, off = 0): DmaRequest => ({ sid: r.dev, pasid: PASID, addr: BASE + p * MICRO_TLB_SLOTS * 4096 + off, write: false });
  return { rig: r, at, root };
}

describe("IOTLB hits through a resolved path's tag handle", () => {
  it("counts one hit per lookup and marks the entry referenced for the IOTLB's CLOCK, as the counted lookup would", () => {
    const { rig: r, at } = rig(PAGES);
    for (let p = 0; p < PAGES; p++) r.unit.translate(at(p)); // misses: fill pages 0, 1, 2
    const stats = r.unit.debug.caches.iotlb.stats;
    expect(stats).toMatchObject({ hits: 0, misses: PAGES });
    r.unit.translate(at(0)); // same slot as page 2: an IOTLB lookup proper, page 0 gets its reference bit
    r.unit.translate(at(1));
    expect(stats).toMatchObject({ hits: 2, misses: PAGES });
    const pfn = (p: number): number => (BASE + p * MICRO_TLB_SLOTS * 4096) / 4096;
    const tag = cacheTag(CacheClass.FIRST, DID, PASID);
    // CLOCK: a hit moves nothing (youngest first, as filled) and sets the entry's bit.
    expect([...r.unit.debug.caches.iotlb.entries()].map((n) => [n.tag, n.key, n.referenced])).toEqual([
      [tag, iotlbKey(pfn(2), 0), false], [tag, iotlbKey(pfn(1), 0), true], [tag, iotlbKey(pfn(0), 0), true],
    ]);
  });

  it("serves nothing from a handle whose tag has been flushed, and picks up the refilled tag", () => {
    const { rig: r, at, root } = rig();
    expect(r.unit.translate(at(0)).ok).toBe(true);
    expect(r.unit.translate(at(1)).ok).toBe(true); // the path now holds the tag's handle
    // Remap page 0 elsewhere and flush the PASID's mappings: the handle's map is gone.
    r.flMap(root, BASE, 0x500 * 4096);
    r.submit(desc.pasidIotlb(2, DID, PASID));
    const t = r.unit.translate(at(0));
    expect(t.ok && t.pa).toBe(0x500 * 4096);
    const misses = r.unit.debug.caches.iotlb.stats.misses;
    const again = r.unit.translate(at(2)); // refilled tag, through the new handle
    expect(again.ok).toBe(true);
    expect(r.unit.debug.caches.iotlb.stats.misses).toBe(misses + 1);
    const hits = r.unit.debug.caches.iotlb.stats.hits;
    expect(r.unit.translate(at(0)).ok).toBe(true);
    expect(r.unit.debug.caches.iotlb.stats.hits).toBe(hits + 1);
  });

  it("refuses an address with a fraction even when its page is cached (micro-TLB and IOTLB alike)", () => {
    const { rig: r, at } = rig();
    expect(r.unit.translate(at(0)).ok).toBe(true);
    expect(r.unit.translate(at(0)).ok).toBe(true); // now in the micro-TLB too
    expect(errnoOf(() => r.unit.translate(at(0, 0.5)))).toBe(Errno.EINVAL);
    expect(r.unit.translate(at(1)).ok).toBe(true); // takes page 0's micro-TLB slot
    expect(errnoOf(() => r.unit.translate(at(0, 8.25)))).toBe(Errno.EINVAL);
    expect(r.unit.translate(at(0, 8)).ok).toBe(true);
  });
});
