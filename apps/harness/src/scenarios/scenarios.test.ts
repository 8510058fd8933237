import { describe, expect, it } from "vitest";
import { IOASID_FAULT_POINTS } from "@vsva/ioasid";
import { IOMMU_CORE_FAULT_POINTS } from "@vsva/iommu-core";
import { VTD_FAULT_POINTS } from "@vsva/intel-svm";
import { SMMU_FAULT_POINTS } from "@vsva/arm-smmu-v3";
import { VFIO_FAULT_POINTS } from "@vsva/vfio-type1";
import { TABLE_PAGE_FAULT_POINT } from "@vsva/kvm-pasid";
import { VDCM_FAULT_POINTS } from "@vsva/vdcm";
import { IDXD_FAULT_POINTS } from "@vsva/idxd";
import { VMM_FAULT_POINTS } from "@vsva/vmm";
import { isHostScenario } from "../world/host-scenario.js";
import { crashSweep, sweep } from "../sweep.js";
import { guestCrash } from "./guest-crash.js";
import { flagship } from "./flagship.js";
import { guestSva } from "./guest-sva.js";
import { guestPageFault } from "./guest-page-fault.js";
import { maliciousGuest } from "./malicious-guest.js";
import { sharedGpasid } from "./shared-gpasid.js";
import { guestMdevPageFault } from "./guest-mdev-page-fault.js";
import { runScenario } from "../run.js";
import { FLAGSHIP, findScenario, scenarios } from "./index.js";

describe("every scenario", () => {
  for (const s of scenarios) {
    for (const platform of s.platforms ?? [undefined]) {
      it(`${s.name}${platform === undefined ? "" : ` on ${platform}`} holds every invariant`, () => {
        const r = s.run({ seed: 1, ...(platform === undefined ? {} : { platform }) });
        expect(r.violations).toEqual([]);
        expect(r.rows.length).toBeGreaterThan(0);
      });
    }
  }

  it("is deterministic: the same seed gives the same trace", () => {
    const s = findScenario("page-request");
    if (s === undefined) throw new Error("page-request is listed");
    const kinds = (): string[] => s.run({ seed: 7 }).events.map((e) => `${e.seq}:${e.kind}:${e.time}`);
    expect(kinds()).toEqual(kinds());
  });

  for (const s of scenarios.filter(isHostScenario)) {
    it(`${s.name}: the seed chooses real things (same seed, same bytes; seeds 1, 7, 42 all differ) and the output says what`, () => {
      const text = (seed: number): string => runScenario(s, { seed }).text;
      expect(text(7)).toBe(text(7));
      const runs = [1, 7, 42].map((seed) => runScenario(s, { seed }));
      for (const r of runs) expect(r.ok, r.text).toBe(true);
      expect(new Set(runs.map((r) => r.text)).size).toBe(3);
      expect(new Set(runs.map((r) => (r.result?.choices ?? []).join("; "))).size).toBe(3);
      const choices = runs[0]?.result?.choices ?? [];
      expect(choices.length).toBeGreaterThan(0);
      expect(runs[0]?.text.split("\n")[1]).toBe(`seed 1: ${choices.join(", ")}`);
      // Five runs each: a two-VM guest scenario boots two guest kernels per run, seconds on a loaded machine.
    }, 30_000);
  }

  it("has the two-VM flagship as what vsva runs with no arguments", () => {
    expect(FLAGSHIP).toBe("flagship");
  });
});

/**
 * Sweeps longer than the rest: a VM with two mdevs beside its assigned
 * function has three containers, each mapping all guest RAM page by page,
 * and each page's map is an injection point (about 1000 runs in all).
 */
const LONG_SWEEPS: ReadonlySet<string> = new Set(["shared-gpasid", "flagship"]);

describe("the fail-nth sweep", () => {
  for (const s of scenarios.filter(isHostScenario)) {
    for (const platform of s.platforms ?? []) {
      it(`${s.name} on ${platform}: every injection point ends in a clean error, rolled back, nothing leaked`, () => {
        const r = sweep(s.def, platform);
        const bad = r.runs.filter((run) => run.violations.length > 0);
        expect(bad).toEqual([]);
        expect(r.ok).toBe(true);
        // A sweep that injects nothing proves nothing.
        expect(r.runs.filter((run) => run.injected !== null).length).toBeGreaterThan(5);
        // The sweep starts before the host boots: its first failure is the driver's init.
        expect(r.runs[0]?.injected).toBe(platform === "vtd" ? "vtd.init" : "smmu.init");
        // Every point it failed is one a package declares (and so one that package's own sweep must cover).
        const declared = [VTD_FAULT_POINTS, SMMU_FAULT_POINTS, IOMMU_CORE_FAULT_POINTS, IOASID_FAULT_POINTS, VFIO_FAULT_POINTS, new Set([TABLE_PAGE_FAULT_POINT]), VDCM_FAULT_POINTS, IDXD_FAULT_POINTS, VMM_FAULT_POINTS];
        expect(r.runs.flatMap((run) => (run.injected === null || declared.some((d) => d.has(run.injected ?? "")) ? [] : [run.injected]))).toEqual([]);
        // A guest scenario's sweep boots a guest kernel in each of its ~170 runs (1–2 s alone, more under a full check).
      }, LONG_SWEEPS.has(s.name) ? 240_000 : 30_000);
    }
  }
});

describe("the crash sweep", () => {
  it("guest-crash: VM 1 killed after every step in turn (a PASID bound, a page request in flight anywhere on its way), each run clean, VM 2 unaffected", () => {
    const r = crashSweep(guestCrash.def, "vtd");
    expect(r.runs.filter((run) => run.violations.length > 0)).toEqual([]);
    expect(r.ok).toBe(true);
    const killed = r.runs.filter((run) => run.what.startsWith("VM 1's VMM process is killed"));
    // From "VM 1 started" to "VM 1 shuts down": every step in between is a kill point.
    expect(killed.length).toBeGreaterThanOrEqual(10);
    expect(r.runs.length).toBeGreaterThan(killed.length);
  }, 60_000);

  it("flagship: VM 1 killed after every step in turn, each run clean; VM 2's and the host users' later work still lands", () => {
    const r = crashSweep(flagship.def, "vtd");
    expect(r.runs.filter((run) => run.violations.length > 0)).toEqual([]);
    expect(r.ok).toBe(true);
    // From "VM 1 started" to "VM 1 shuts down": its guest's boot, its idxd, each process, its work, each close.
    expect(r.runs.filter((run) => run.what.startsWith("VM 1's VMM process is killed")).length).toBeGreaterThanOrEqual(10);
  }, 120_000);

  // Kill points: from the VM's start to its last step (the dead VM's work left out, a bystander VM's still checked).
  it.each([
    [guestSva.name, guestSva, 6],
    [guestPageFault.name, guestPageFault, 8],
    [maliciousGuest.name, maliciousGuest, 15],
    [sharedGpasid.name, sharedGpasid, 20],
    [guestMdevPageFault.name, guestMdevPageFault, 8],
  ] as const)("%s: takes --at, and the VM killed after every step in turn leaves each run clean", (_name, s, kills) => {
    expect(s.at).toMatch(/^kill /);
    const r = crashSweep(s.def, "vtd");
    expect(r.runs.filter((run) => run.violations.length > 0)).toEqual([]);
    expect(r.ok).toBe(true);
    expect(r.runs.filter((run) => run.what.startsWith("VM 1's VMM process is killed")).length).toBeGreaterThanOrEqual(kills);
  }, 90_000);
});
