import { Errno, KernelError, TraceRecorder, errnoName } from "@vsva/kernel";
import type { KvmPasid } from "@vsva/kvm-pasid";
import type { Vdcm } from "@vsva/vdcm";
import type { Vm } from "@vsva/vmm";
import type { Scenario, ScenarioOptions, ScenarioResult } from "../scenario.js";
import type { TimelineRow } from "../timeline.js";
import { ACTOR_COLUMNS, rowsFromEvents } from "./events.js";
import { Host, PLATFORM_NAMES } from "./host.js";
import type { PlatformName } from "./platform.js";
import { type AddressResolver, InvariantChecker, checkQuiescent } from "./invariants.js";
import { SeededChoices } from "../seeded.js";

/**
 * A scenario on a whole host, written as user space and a device driver
 * would act: a sequence of named steps. After every step the invariants are
 * checked. Whatever the body set up is undone by its deferred cleanups (LIFO,
 * like a process exiting and a driver unloading), also when a step fails, and
 * then the host is torn down and checked for leaks.
 */
export interface StepContext {
  readonly host: Host;
  /** The run's free choices, drawn from its seed and recorded in the result. */
  readonly choose: SeededChoices;
  /** The `--at` step of the run (see HostScenarioDef.at), or null. */
  readonly at: number | null;
  /** Runs one step and returns what it made; the invariants are checked after it. */
  step<T>(label: string, fn: () => T): T;
  /** Registers cleanup for what the body just set up; runs on every exit path. */
  defer(label: string, fn: () => void): void;
  /** Declares the address space DMA with `pasid` must reach (see InvariantChecker). */
  bindSpace(pasid: number, resolve: AddressResolver): void;
  unbindSpace(pasid: number): void;
  /** Checks a VM's KVM translation table against the binds of its IOASID set (by mm token) after every step, until unwatched. */
  watchKvm(kvm: KvmPasid, mm: object): void;
  unwatchKvm(kvm: KvmPasid): void;
  /**
   * Holds a running VM to the per-VM invariants after every step: its PASIDs'
   * DMA stays in its RAM, none after its death, its guest gets only its own
   * faults, and its death releases everything it held on the host.
   */
  watchVm(vm: Vm): void;
  /** Checks, after every step, that no hardware WQ the VDCM lent holds a host PASID it no longer holds a reference on. */
  watchVdcm(vdcm: Vdcm): void;
  /**
   * A functional expectation (the DMA completed, the bytes arrived). False is
   * a violation, except once a fault has been injected in the run: then the
   * work may legitimately fail, and only safety (`require`, the invariants,
   * rollback) is judged.
   */
  expect(ok: boolean, what: string): void;
  /** A safety expectation (no DMA through a torn-down PASID): must hold in every run. */
  require(ok: boolean, what: string): void;
}

export interface HostScenarioDef {
  readonly name: string;
  readonly summary: string;
  readonly title: string;
  /** Platforms it runs on; all of them when absent. */
  readonly platforms?: readonly PlatformName[];
  /** What `--at STEP` does (the body reads ctx.at); absent: the scenario takes no --at. */
  readonly at?: string;
  body(ctx: StepContext): void;
}

export interface HostRunOptions extends ScenarioOptions {
  /** Fail the n-th fault-injection hit of the run (iommufd_fail_nth). */
  readonly failNth?: number;
}

export interface HostRunResult extends ScenarioResult {
  /** The injection point that failed, when one did. */
  readonly injected: string | null;
  /** The error a step ended with, when one did. */
  readonly error: KernelError | null;
}

export function runHostScenario(def: HostScenarioDef, opts: HostRunOptions): HostRunResult {
  const platform = resolvePlatform(def, opts.platform);
  // The platform boots inside the run, after the sweep is armed: its bring-up is swept like any step.
  const host = new Host({ platform, deferBringUp: true });
  // The whole system's events: the host's and every guest kernel's (each stamped with its context), in one order.
  const rec = new TraceRecorder(host.kernel.trace, { system: true });
  const checker = new InvariantChecker(host);
  const violations: string[] = [];
  const rows: TimelineRow[] = [];
  const cleanups: { label: string; fn: () => void }[] = [];
  let eventsSeen = 0;
  let error: KernelError | null = null;

  const flushRows = (): void => {
    const fresh = rec.events.slice(eventsSeen);
    eventsSeen = rec.events.length;
    rows.push(...rowsFromEvents(fresh, rows.length + 1));
  };
  const userRow = (text: string): void => {
    flushRows();
    rows.push({ step: rows.length + 1, actor: "USER", text });
  };
  const checkAfter = (label: string): void => {
    flushRows();
    for (const v of checker.check()) violations.push(`after "${label}": ${v}`);
  };

  const choose = new SeededChoices(opts.seed);
  const ctx: StepContext = {
    host,
    choose,
    at: opts.at ?? null,
    step<T>(label: string, fn: () => T): T {
      userRow(label);
      const made = fn();
      checkAfter(label);
      return made;
    },
    defer(label, fn) {
      cleanups.push({ label, fn });
    },
    bindSpace: (pasid, resolve) => checker.bind(pasid, resolve),
    unbindSpace: (pasid) => checker.unbind(pasid),
    watchKvm: (kvm, mm) => checker.watchKvm(kvm, mm),
    unwatchKvm: (kvm) => checker.unwatchKvm(kvm),
    watchVdcm: (vdcm) => checker.watchVdcm(vdcm),
    watchVm: (vm) => checker.watchVm(vm),
    expect(ok, what) {
      if (!ok && host.kernel.faults.injected.length === 0) violations.push(what);
    },
    require(ok, what) {
      if (!ok) violations.push(what);
    },
  };

  if (opts.failNth !== undefined) host.kernel.faults.failNth(opts.failNth);
  try {
    host.bringUp();
    def.body(ctx);
  } catch (e) {
    if (e instanceof KernelError) {
      error = e;
      userRow(`step failed: ${e.message}`);
      if (host.kernel.faults.injected.length === 0) violations.push(`a step failed without an injected fault: ${e.message}`);
    } else {
      violations.push(`unhandled exception (oops): ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    }
  }
  // Whatever happened, nothing more is injected while tearing down: teardown cannot fail.
  host.kernel.faults.disarm();
  for (const c of cleanups.reverse()) {
    try {
      userRow(c.label);
      c.fn();
      checkAfter(c.label);
    } catch (e) {
      violations.push(`cleanup "${c.label}" failed (teardown must not): ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  try {
    userRow("teardown: release devices, drop address spaces, shut the IOMMU down");
    teardownHost(host);
    flushRows();
    violations.push(...checkQuiescent(host));
  } catch (e) {
    violations.push(`host teardown failed: ${e instanceof Error ? e.message : String(e)}`);
  }
  // A teardown step that threw was finished anyway and reported as a WARN: the run still shows it as the bug it is.
  for (const w of rec.ofKind("sva.warn")) violations.push(`WARN: ${w.payload.mm}'s ${w.payload.step} threw (${w.payload.error}); the teardown went on without it`);
  const injected = host.kernel.faults.injected[0] ?? null;
  if (error !== null && injected !== null) {
    rows.push({ step: rows.length + 1, actor: "USER", text: `injected at ${injected}: the run ended in -${errnoName(error.errno)}, rolled back` });
  }
  return { title: `${def.title} [${platform}]`, columns: laneColumns(rows), rows, events: [...rec.events], choices: choose.made, violations, injected, error };
}

/** The platform a run uses; EINVAL for one the scenario (or vsva) does not have. */
export function resolvePlatform(def: HostScenarioDef, asked: string | undefined): PlatformName {
  const allowed = def.platforms ?? PLATFORM_NAMES;
  const name = asked ?? allowed[0] ?? "vtd";
  const found = allowed.find((p) => p === name);
  if (found === undefined) {
    throw new KernelError(Errno.EINVAL, `${def.name} runs on ${allowed.join(", ")}, not on '${name}'`);
  }
  return found;
}

function teardownHost(host: Host): void {
  host.settle();
  if (!host.up) return; // the bring-up failed and undid itself: no device, process or unit to take down
  for (const mm of host.mms) {
    if (mm.state === "live") {
      mm.exit();
    }
  }
  host.settle();
  for (const { dev } of [...host.devices].reverse()) {
    if (host.core.sva.hasBonds(dev)) host.core.sva.releaseDevice(dev);
    host.core.releaseDevice(dev);
  }
  host.settle();
  host.platform.shutdown();
  host.settle();
}

export interface HostScenario extends Scenario {
  readonly def: HostScenarioDef;
}

/** Adapts a host scenario to the harness's Scenario interface. */
export function hostScenario(def: HostScenarioDef): HostScenario {
  return { name: def.name, summary: def.summary, platforms: def.platforms ?? PLATFORM_NAMES, ...(def.at === undefined ? {} : { at: def.at }), def, run: (opts) => runHostScenario(def, opts) };
}

export function isHostScenario(s: Scenario): s is HostScenario {
  return "def" in s;
}

/**
 * The lanes a run shows: the host's actors that have rows, in their usual
 * order (USER always, for the steps), then each guest context's actors as
 * they first appear, so host and guest lanes sit side by side.
 */
export function laneColumns(rows: readonly { readonly actor: string }[]): string[] {
  const seen = new Set(rows.map((r) => r.actor));
  const host: string[] = ACTOR_COLUMNS.filter((c) => c === "USER" || seen.has(c));
  const guests = [...new Set(rows.map((r) => r.actor))].filter((a) => !(ACTOR_COLUMNS as readonly string[]).includes(a));
  return [...host, ...guests];
}
