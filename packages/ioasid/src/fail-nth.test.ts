import { asSpid, type FaultInjector, type Ioasid, isKernelError, Kernel, KernelError, NOTIFY_DONE } from "@vsva/kernel";
import { FaultCoverage, sourceFaultPoints } from "@vsva/kernel/testing";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { IOASID_FAULT_POINTS } from "./fault-points.js";
import { IoasidCore } from "./core.js";
import { type IoasidAllocatorOps, IoasidPriority, type IoasidSet } from "./types.js";

/**
 * The iommufd_fail_nth technique over the IOASID paths: run the body with the
 * n-th injection point failing, for n = 1, 2, … until a run completes without
 * reaching an injection. Every failing call must leave the state exactly as
 * it was before the call, and tearing down through the public API must leave
 * nothing behind: no ID allocated, all capacity back, no ID left in a custom
 * allocator.
 */
class Vcmd implements IoasidAllocatorOps {
  readonly live = new Set<number>();
  alloc(min: number, max: number): number {
    for (let id = Math.max(min, 300); id <= max; id++) {
      if (!this.live.has(id)) {
        this.live.add(id);
        return id;
      }
    }
    throw new KernelError(28, "VCMD: none free");
  }
  free(id: number): void {
    this.live.delete(id);
  }
}

interface Run {
  readonly completed: boolean;
  readonly injected: readonly string[];
  readonly faults: FaultInjector;
}

function runOnce(n: number, custom: boolean): Run {
  const kernel = new Kernel();
  const core = new IoasidCore({ scheduler: kernel.scheduler, trace: kernel.trace, faults: kernel.faults, capacity: 1000 });
  const vcmd = new Vcmd();
  const mm = { guest: 1 };
  const kvm = { priority: IoasidPriority.CPU, call: () => NOTIFY_DONE };
  const vdcm = { priority: IoasidPriority.DEVICE, call: () => NOTIFY_DONE };
  // Written by the steps (closures), read by the teardown.
  const st: { set: IoasidSet | null; kvm: boolean; allocator: boolean } = { set: null, kvm: false, allocator: false };
  const ids: Ioasid[] = [];
  const extraRefs: Ioasid[] = [];
  const steps: (() => void)[] = [
    () => {
      if (custom) core.registerAllocator(vcmd);
      st.allocator = custom;
    },
    () => {
      core.registerNotifierMm(mm, kvm);
      st.kvm = true;
    },
    () => (st.set = core.allocSet(mm, 8, "mm")),
    () => core.registerNotifier(st.set, vdcm),
    () => ids.push(core.alloc(st.set!, 1, 999)),
    () => core.attachSpid(st.set!, ids[0]!, asSpid(101)),
    () => extraRefs.push(core.findBySpid(st.set!, asSpid(101))),
    () => ids.push(core.alloc(st.set!, 1, 999, "private")),
    () => core.attachSpid(st.set!, ids[1]!, asSpid(102)),
    () => core.allocSet("other", 4, "none"),
  ];
  kernel.faults.resetCounters();
  if (n > 0) kernel.faults.failNth(n);
  let completed = true;
  for (const step of steps) {
    const before = core.snapshot();
    const allocatorIds = [...vcmd.live];
    try {
      step();
    } catch (e) {
      if (!isKernelError(e)) throw e;
      // Rolled back: nothing observable changed, in the core or in the allocator.
      expect(core.snapshot()).toEqual(before);
      expect([...vcmd.live]).toEqual(allocatorIds);
      completed = false;
      break;
    }
  }
  kernel.faults.disarm();
  // Teardown through the public API: drop the extra references, then the sets.
  for (const id of extraRefs) core.put(null, id);
  for (const s of core.snapshot().sets) {
    const handle = s.id === st.set?.id ? st.set : core.findSetByToken("other", "none");
    if (handle !== null) core.setPut(handle);
  }
  if (st.kvm) core.unregisterNotifierMm(mm, kvm);
  if (st.allocator) core.unregisterAllocator(vcmd);
  expect(core.allocated).toBe(0);
  expect(core.available).toBe(core.capacity);
  expect(core.snapshot().sets).toEqual([]);
  expect(vcmd.live.size).toBe(0);
  return { completed, injected: [...kernel.faults.injected], faults: kernel.faults };
}

describe("fail-nth sweep over the alloc and attach paths", () => {
  for (const custom of [false, true]) {
    it(`rolls back every failing step and leaks nothing (${custom ? "custom allocator" : "default allocator"})`, () => {
      expect(runOnce(0, custom).completed).toBe(true);
      const failedAt: string[] = [];
      let n = 1;
      for (; n < 100; n++) {
        const r = runOnce(n, custom);
        if (r.injected.length === 0) {
          expect(r.completed).toBe(true);
          break;
        }
        expect(r.completed).toBe(false);
        failedAt.push(...r.injected);
      }
      expect(n).toBeLessThan(100);
      // The sweep reached every injection point on the path.
      const points = ["ioasid.notifier_mm", "ioasid.set_alloc", "ioasid.alloc", "ioasid.attach_spid"];
      if (custom) points.push("ioasid.register_allocator", "ioasid.alloc.store");
      expect(new Set(failedAt)).toEqual(new Set(points));
    });
  }
});

describe("fail-nth coverage of the IOASID core", () => {
  it("fails every declared fault point in some run of the sweeps, and meets none undeclared", () => {
    const cov = new FaultCoverage(IOASID_FAULT_POINTS);
    for (const custom of [false, true]) {
      for (let n = 1; n < 100; n++) {
        const r = runOnce(n, custom);
        cov.record(r.faults);
        if (r.injected.length === 0) break;
      }
    }
    expect(cov.missing()).toEqual([]);
    expect(cov.undeclared()).toEqual([]);
  });

  it("declares every point its code injects by name", () => {
    const named = sourceFaultPoints(fileURLToPath(new URL(".", import.meta.url)));
    expect(named.length).toBeGreaterThan(0);
    expect(named.filter((p) => !IOASID_FAULT_POINTS.has(p))).toEqual([]);
  });
});
