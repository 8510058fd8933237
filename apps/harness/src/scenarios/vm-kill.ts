import type { DmaEngine } from "@vsva/iommu-hw";
import type { Vm } from "@vsva/vmm";
import type { StepContext } from "../world/host-scenario.js";

/** The text of the crash row: `vsva crash-sweep` finds it to know the kill point was reached. */
export const CRASH_ROW = "crash after step";

/**
 * Steps of a scenario whose VM 1 can be killed after its `at`-th step
 * (`--at STEP`: its VMM dies as kill -9 of QEMU would): `ctx` is the
 * scenario's context whose every step counts, and after the counted step
 * `at` it kills the VM (if it runs) in a crash row of its own. The body
 * reads `alive()` to leave out what the dead VM would have done, or runs
 * such steps with `step`, which does nothing once the VM was killed; the
 * deferred teardown and the invariants then judge what the VM left behind.
 */
export interface VmKillPoint {
  readonly ctx: StepContext;
  /** A step of the VM's: run (and counted) until the VM was killed; null after. */
  step<T>(label: string, fn: () => T): T | null;
  /** The VM has not been killed. */
  alive(): boolean;
  /** The VM to kill, once started (in the step that starts it). */
  setVm(vm: Vm): void;
}

export function vmKillPoint(outer: StepContext): VmKillPoint {
  let steps = 0;
  let crashed = false;
  // Set inside a step's closure: a holder, so the checks after it see the assignment.
  const victim: { vm: Vm | null } = { vm: null };
  const ctx: StepContext = {
    ...outer,
    step<T>(label: string, fn: () => T): T {
      const made = outer.step(label, fn);
      steps++;
      if (steps === outer.at) {
        const vm = victim.vm;
        if (vm?.state === "running") {
          outer.step(`${CRASH_ROW} ${steps}: VM 1's VMM process is killed (kill -9): VFIO release, KVM teardown, guest RAM back to the host`, () => {
            // A destroyed KVM has no table to check against the binds any more.
            outer.unwatchKvm(vm.kvm);
            vm.kill();
          });
          crashed = true;
        } else {
          outer.step(`${CRASH_ROW} ${steps}: VM 1 is not running (not started yet, or already shut down): nothing to kill`, () => undefined);
        }
      }
      return made;
    },
  };
  return {
    ctx,
    step: (label, fn) => (crashed ? null : ctx.step(label, fn)),
    alive: () => !crashed,
    setVm: (vm) => {
      victim.vm = vm;
    },
  };
}

/**
 * After the kill: the dead VM's device replays the guest's last DMA with its
 * PASID. A page request the device had in flight must have been answered
 * when the VM died (the host's unbind of each guest PASID drains its page
 * requests, drivers/iommu/intel/svm.c: intel_svm_drain_prq(), and a group
 * no handler will answer any more is answered by the host), so the device
 * is not left busy; and the replay must not translate: nothing of the dead
 * VM is bound on the host.
 */
export function replayDeadDma(ctx: StepContext, engine: DmaEngine, pasid: number, addr: number): void {
  ctx.step("the dead VM's device replays its guest's last DMA with the same PASID: nothing of the VM translates any more", () => {
    ctx.host.settle();
    ctx.require(!engine.busy, `the device is not left waiting on the dead VM (its result register reads ${engine.result})`);
    engine.setProgram({ pasid, addr, length: 4, direction: "write", pattern: new Uint8Array([0xde, 0xad, 0xbe, 0xef]) });
    if (engine.trigger() === "pageRequestPending") ctx.host.settle();
    ctx.require(engine.result !== "ok", `no DMA of the dead VM completes (got ${engine.result})`);
  });
}
