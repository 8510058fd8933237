import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { VA, action, apply, bootVictimAndTarget } from "./fuzz-target.js";

/** Sweeps and fuzz boot a guest per run: well under 2 s alone, far more on a loaded machine. */
const SWEEP_TIMEOUT = 30_000;

describe.each([
  { mode: "identity" as const, numRuns: 40, seed: 0x7654 },
  { mode: "spid" as const, numRuns: 40, seed: 0x7654 },
])("fuzz: a guest ($mode guest PASIDs) that writes anything to its vIOMMU", ({ mode, numRuns, seed }) => {
  it("random register writes, queue descriptors, virtual commands and PASID-entry contents before PASID-cache flushes never throw into the guest, never touch the other VM, and the kill leaves the host as it was", () => {
    const seen = { refused: 0, unbinds: 0, binds: 0, invalidations: 0 };
    fc.assert(
      fc.property(fc.array(action, { minLength: 1, maxLength: 25 }), (actions) => {
        const t = bootVictimAndTarget(mode);
        const victimBytes = (): number[] => [...t.p2.read(VA, 4)];
        const s0 = { ...t.g1.viommu.stats };
        for (const a of actions) apply(t, a);
        const s1 = t.g1.viommu.stats;
        seen.refused += s1.refused - s0.refused;
        seen.unbinds += s1.unbinds - s0.unbinds;
        seen.binds += s1.binds - s0.binds;
        seen.invalidations += s1.invalidations - s0.invalidations;
        // Only the guest's own PASIDs are bound for it on the host (the host PASID behind each guest PASID it has bound is never
        // the bystander's); the bystander is bound as before and its data intact.
        for (const pasid of t.g1.viommu.bound.keys()) expect(t.g1.viommu.hostPasid(pasid)).not.toBe(t.bond2.pasid);
        expect(t.g2.viommu.bound.get(t.bond2.pasid)?.gpgd).toBe(t.p2.pgd);
        expect(victimBytes()).toEqual([1, 2, 3, 4]);
        expect(t.g2.dma({ pasid: t.bond2.pasid, addr: VA, length: 4, direction: "write", pattern: Uint8Array.of(5, 6, 7, 8) })).toBe("ok");
        expect(victimBytes()).toEqual([5, 6, 7, 8]);
        expect(t.h.platform.cacheViolations()).toEqual([]);
        t.vm1.kill();
        t.h.settle();
        expect(t.h.pages.stats.livePages).toBe(t.pagesBefore);
        expect(t.h.ioasid.allocated).toBe(t.allocatedBefore);
        expect(t.h.platform.cacheViolations()).toEqual([]);
      }),
      { numRuns, seed },
    );
    // The runs reached the host: entries unbound and rebound, requests refused.
    expect(seen.refused).toBeGreaterThan(0);
    expect(seen.unbinds).toBeGreaterThan(0);
    expect(seen.binds).toBeGreaterThan(0);
  }, SWEEP_TIMEOUT);
});
