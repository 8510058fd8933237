// The flagship's per-VM shape built N times, for the growth-in-VMs figure of `pnpm bench`.
import { MiB } from "@vsva/machine";
import { Vfio } from "@vsva/vfio-type1";
import { type AccelProcess, type AccelUse, accelProcess, bootAccelVm, dedicatedMove, functionDma, plugAccelWqs, sharedFill } from "../src/scenarios/accel-vm.js";
import { SeededChoices } from "../src/seeded.js";
import { Host } from "../src/world/host.js";
import type { StepContext } from "../src/world/host-scenario.js";

/** Guest PASIDs per VM: P on the dedicated-WQ mdev, 14 processes on the shared-WQ mdev (ENQCMD), R on the assigned function. */
export const FLAGSHIP_PASIDS = 16;
/** DMAs per guest PASID in one pass. */
export const FLAGSHIP_DMAS = 100;
/**
 * VMs per accelerator: a dedicated and a shared WQ each, 16 WQs sharing the
 * device's 64 entries, 4 each: what the guest's idxd configures its mdev's WQ
 * with (the mdev shows the host WQ's size).
 */
const VMS_PER_ACCEL = 8;
/** Guest RAM per VM: its pool holds three 32-page PASID directories and 16 processes' tables and buffers. */
const GUEST_RAM = 1 * MiB;
const GVA = 0x7000_0000_0000;
/** Host RAM and page pool: room for 128 VMs at once (RAM is sparse: only pages written cost memory). */
const MEMORY = { ram: 512 * MiB, pool: { base: 16 * MiB, size: 480 * MiB } };

/** The flagship's VMs on one host, their processes, and how to tear it all down. */
export interface FlagshipVms {
  readonly host: Host;
  readonly ctx: StepContext;
  readonly work: readonly { readonly p: AccelProcess; readonly use: AccelUse }[];
  /** Runs the deferred teardown (each VM's guest idxd, VMM, mdevs, vfio-pci, each accelerator's idxd), last first. */
  teardown(): void;
}

/**
 * What the scenario's builder needs of a step context, without the
 * harness's per-step invariant checks (a bench times the work, not the
 * checker): steps run as they are, a failed expectation throws, cleanups
 * are kept for {@link FlagshipVms.teardown}.
 */
function benchContext(host: Host): { ctx: StepContext; cleanups: (() => void)[] } {
  const cleanups: (() => void)[] = [];
  const must = (ok: boolean, what: string): void => {
    if (!ok) throw new Error(`flagship growth bench: ${what}`);
  };
  const ctx: StepContext = {
    host,
    choose: new SeededChoices(1),
    at: null,
    step: (_label, fn) => fn(),
    defer: (_label, fn) => cleanups.push(fn),
    bindSpace: () => undefined,
    unbindSpace: () => undefined,
    watchKvm: () => undefined,
    unwatchKvm: () => undefined,
    watchVm: () => undefined,
    watchVdcm: () => undefined,
    expect: must,
    require: must,
  };
  return { ctx, cleanups };
}

/**
 * `n` VMs of the flagship's shape on one host: each with an assigned
 * function and two mdevs (a dedicated and a shared WQ of an accelerator,
 * 16 VMs per accelerator), its guest booted with its own idxd on the
 * dedicated-WQ mdev, and {@link FLAGSHIP_PASIDS} guest processes bound,
 * one device each (P opens the dedicated WQ, 14 bind the shared-WQ mdev for
 * ENQCMD, R binds the function).
 */
export function buildFlagshipVms(n: number): FlagshipVms {
  const host = new Host({ memory: MEMORY });
  const { ctx, cleanups } = benchContext(host);
  const vfio = new Vfio({ kernel: host.kernel, core: host.core, ioasid: host.ioasid, pasidQuota: FLAGSHIP_PASIDS * 4 });
  const accels = Array.from({ length: Math.ceil(n / VMS_PER_ACCEL) }, (_, i) =>
    plugAccelWqs(ctx, vfio, 1 + i, Array.from({ length: 2 * Math.min(VMS_PER_ACCEL, n - i * VMS_PER_ACCEL) }, (_, w) => ({ mode: w % 2 === 0 ? "dedicated" : "shared", type: "mdev" }) as const), `accelerator ${i}`, `acc${i}`),
  );
  const uses: AccelUse[] = ["dedicated", ...Array.from({ length: FLAGSHIP_PASIDS - 2 }, () => "shared" as const), "function"];
  const work: { p: AccelProcess; use: AccelUse }[] = [];
  for (let v = 1; v <= n; v++) {
    const a = accels[Math.floor((v - 1) / VMS_PER_ACCEL)];
    if (a === undefined) throw new Error(`no accelerator for VM ${v}`);
    const slot = (v - 1) % VMS_PER_ACCEL;
    const av = bootAccelVm(ctx, vfio, a, { id: v, dev: { bus: 1 + (v >> 5), dev: v & 31, fn: 0 }, device: `fn${v}`, dedicatedWq: 2 * slot, sharedWq: 2 * slot + 1, ramBytes: GUEST_RAM });
    if (av === null) throw new Error(`VM ${v} did not boot`);
    uses.forEach((use, i) => work.push({ p: accelProcess(ctx, av, `p${i}`, GVA, use), use }));
  }
  return {
    host,
    ctx,
    work,
    teardown: () => {
      for (const c of cleanups.reverse()) c();
      host.settle();
    },
  };
}

/** {@link FLAGSHIP_DMAS} DMAs through every bound guest PASID: MEMMOVE by MOVDIR64B, MEMFILL by ENQCMD through KVM, or SVA DMA through the function; each checked by a CPU read. */
export function runFlagshipDma(b: FlagshipVms): void {
  for (const { p, use } of b.work) {
    const dma = use === "dedicated" ? dedicatedMove : use === "shared" ? sharedFill : functionDma;
    for (let i = 0; i < FLAGSHIP_DMAS; i++) dma(b.ctx, p, i);
  }
}
