// The guest figures of `pnpm bench`: nested DMA against native DMA, VM exits per guest bind and unbind, and growth in VMs.
import { Prot, type Mm, type SvaBond } from "@vsva/iommu-core";
import { type VtdPlatform, vtdPlatform } from "@vsva/intel-svm";
import { Board, type DeviceSlot, MiB } from "@vsva/machine";
import { Vfio, vfioPciOps } from "@vsva/vfio-type1";
import { Guest, Vm } from "@vsva/vmm";
import { bestNs } from "./copy-baseline.js";
import { collect, cpuMs, median } from "./growth.js";
import { FLAGSHIP_DMAS, FLAGSHIP_PASIDS, buildFlagshipVms, runFlagshipDma } from "./flagship-vms.js";

const PAGE = 4096;
/** Guest RAM per VM: the guest kernel's pool (its upper half) holds 16 processes' tables and pages with room to spare. */
const GUEST_RAM = 1 * MiB;
/** Host RAM and page pool: room for 64 VMs' RAM (RAM is sparse: only pages written cost memory). */
const HOST_RAM = { base: 0, size: 512 * MiB };
const HOST_POOL = { base: 16 * MiB, size: 480 * MiB };

/** A VT-d host with VFIO loaded: what the guest figures run on. */
interface Machine {
  readonly board: Board<VtdPlatform>;
  readonly vfio: Vfio;
}

function machine(): Machine {
  const board = new Board({ platform: vtdPlatform(), ram: HOST_RAM, pool: HOST_POOL });
  return { board, vfio: new Vfio({ kernel: board.kernel, core: board.core, ioasid: board.ioasid }) };
}

/** Plugs in DSA-like function number `n` (bus n / 32, device n % 32) and gives it to vfio-pci, as an administrator prepares it for a VM. */
function assignable(m: Machine, n: number): { slot: DeviceSlot; device: { group: number; name: string; endpoint: DeviceSlot["ep"] } } {
  const name = `dsa${n}`;
  const slot = m.board.addDevice(name, { bus: n >> 5, dev: n & 31, fn: 0 });
  const space = slot.ep.config.space;
  m.vfio.bindPciDevice(slot.dev, vfioPciOps({ size: 4096, read: (o, s) => space.read(o, s), write: (o, s, v) => space.write(o, s, v) }));
  const group = slot.dev.group;
  if (group === null) throw new Error(`bench: ${name} has no IOMMU group`);
  return { slot, device: { group: group.id, name, endpoint: slot.ep } };
}

/** A VM on its own assigned function, its guest kernel booted. */
function bootVm(m: Machine, id: number, ramBytes = GUEST_RAM): Guest {
  const { device } = assignable(m, id);
  const vm = new Vm({ host: m.board, vfio: m.vfio, id, ramBytes, device });
  return new Guest(vm);
}

const GUEST_VA = 0x7000_0000_0000;

/** A guest process with `pages` populated pages at GUEST_VA, bound to the guest's device with SVA. */
function guestBond(g: Guest, name: string, pages: number): { mm: Mm; bond: SvaBond } {
  const mm = g.newProcess(name);
  mm.mmap(GUEST_VA, pages * PAGE, Prot.READ | Prot.WRITE, { populate: true });
  return { mm, bond: g.core.sva.bindDevice(g.device, mm) };
}

// ------------------------------------------------------------------ nested ÷ native

interface DmaCase {
  readonly label: string;
  /** Bytes per DMA. */
  readonly size: number;
  /** DMAs per timed pass, one page apart. */
  readonly count: number;
  /**
   * Whether every DMA misses the device TLB (more pages in turn than its 64
   * entries): each then costs an ATS translation request, which the host
   * IOTLB answers (it holds the nested translation's result). An `info`
   * line: the issue's target is of caches warm.
   */
  readonly atsMisses: boolean;
}

const DEVICE_TLB_ENTRIES = 64;
const DMA_CASES: readonly DmaCase[] = [
  { label: "64 B", size: 64, count: 16, atsMisses: false },
  { label: "4 KiB", size: PAGE, count: 16, atsMisses: false },
  { label: "64 B, device-TLB misses", size: 64, count: 2 * DEVICE_TLB_ENTRIES, atsMisses: true },
];
/** Guest RAM of the nested figure's VM: its pool holds the 128 pages of the device-TLB-miss case and their tables. */
const NESTED_GUEST_RAM = 4 * MiB;
const NESTED_TARGET = 1.3;
const NESTED_ROUNDS = 8;

/**
 * Guest DMA through nested translation ÷ the same DMA natively on the host,
 * caches warm (IOTLB, the device's ATS cache): ≤ 1.3×. Both run on one
 * board, on two functions of the same kind: dsa1, bound natively by a host
 * process (first level = the process's table), and dsa2, assigned to a VM
 * whose guest process is bound through the vIOMMU (first level = the guest's
 * table in guest RAM, second level = the VM's MAP_DMA). The guest's DMA is
 * what its driver does (`Guest.dma`: program the BAR, trigger); the native
 * one the same two register writes. A translated page is a translated page
 * once the device TLB holds it, so the ratio measures what the nesting adds
 * per DMA with caches warm. A ratio below 1 is marked `BAD`, never `ok`:
 * the nested DMA does all the native one does and more (the guest driver's
 * call, the second level behind the first), so such a run's timing is
 * broken.
 */
function nestedFigure(): void {
  const m = machine();
  const native = m.board.addDevice("dsa1", { bus: 0, dev: 1, fn: 0 });
  m.board.enableSva(native);
  const hostMm = m.board.newMm("native");
  const g = bootVm(m, 2, NESTED_GUEST_RAM);
  console.log(`\nharness: guest DMA through nested translation ÷ the same DMA natively on the host (caches warm; wall time, best of ${NESTED_ROUNDS} alternating rounds of best-of-N samples)`);
  for (const c of DMA_CASES) {
    const pattern = new Uint8Array(c.size).fill(0x5a);
    const hostBuf = hostMm.mmap(null, c.count * PAGE, Prot.READ | Prot.WRITE, { populate: true });
    const hostBond = m.board.core.sva.bindDevice(native.dev, hostMm);
    const guest = guestBond(g, `guest ${c.label}`, c.count);
    const nativeProgs = Array.from({ length: c.count }, (_, i) => ({ pasid: hostBond.pasid, addr: hostBuf + i * PAGE, length: c.size, direction: "write" as const, pattern }));
    const guestProgs = Array.from({ length: c.count }, (_, i) => ({ pasid: guest.bond.pasid, addr: GUEST_VA + i * PAGE, length: c.size, direction: "write" as const, pattern }));
    const dma = native.ep.dma;
    const nativePass = (): void => {
      for (const p of nativeProgs) {
        dma.setProgram(p);
        if (dma.trigger() !== "ok") throw new Error(`bench: native DMA failed: ${dma.result}`);
      }
    };
    const guestPass = (): void => {
      for (const p of guestProgs) if (g.dma(p) !== "ok") throw new Error(`bench: guest DMA through PASID ${p.pasid} failed`);
    };
    nativePass();
    guestPass();
    // Caches warm: a second pass of each misses no device-TLB entry.
    const [ns, gs] = [native.ep.deviceTlb.stats, g.vm.device.endpoint.deviceTlb.stats];
    if (native.ep.deviceTlb.capacity !== DEVICE_TLB_ENTRIES || g.vm.device.endpoint.deviceTlb.capacity !== DEVICE_TLB_ENTRIES) throw new Error(`bench: expected ${DEVICE_TLB_ENTRIES}-entry device TLBs`);
    const [nm, gm] = [ns.misses, gs.misses];
    nativePass();
    guestPass();
    const want = c.atsMisses ? c.count : 0;
    if (ns.misses - nm !== want || gs.misses - gm !== want) throw new Error(`bench ${c.label}: expected ${want} device-TLB misses a pass, got native ${ns.misses - nm}, guest ${gs.misses - gm}`);
    if (guest.mm.read(GUEST_VA + (c.count - 1) * PAGE + c.size - 1, 1)[0] !== 0x5a) throw new Error(`bench ${c.label}: the guest process does not see its DMA's bytes`);

    let [nativeNs, guestNs] = [Number.POSITIVE_INFINITY, Number.POSITIVE_INFINITY];
    // Alternating rounds, each side first in turn: a burst of load elsewhere on the machine (or the JIT settling) during one
    // side's measurement does not decide the ratio.
    for (let r = 0; r < NESTED_ROUNDS; r++) {
      if (r % 2 === 0) nativeNs = Math.min(nativeNs, bestNs(nativePass));
      guestNs = Math.min(guestNs, bestNs(guestPass));
      if (r % 2 === 1) nativeNs = Math.min(nativeNs, bestNs(nativePass));
    }
    const ratio = guestNs / nativeNs;
    const per = (ns: number): string => `${(ns / c.count).toFixed(0)} ns/DMA`;
    const mark = ratio < 1 ? "BAD " : c.atsMisses ? "info" : ratio <= NESTED_TARGET ? "ok  " : "MISS";
    const target = c.atsMisses ? "no target: caches warm but the device TLB's, ≥ 1" : `target ≤ ${NESTED_TARGET}, and ≥ 1`;
    console.log(`  ${mark} guest nested DMA time ÷ native DMA time (${c.label} writes × ${c.count}, one page apart): ${ratio.toFixed(2)} (${target}); guest ${per(guestNs)}, native ${per(nativeNs)}`);
    if (ratio < 1) console.log(`  WARNING (${c.label}): the nested DMA measured faster than the native one; the measurement is not trustworthy in this run`);
    g.core.sva.unbindDevice(guest.bond);
    m.board.core.sva.unbindDevice(hostBond);
  }
  g.vm.kill();
  m.board.settle();
}

// ------------------------------------------------------------------ exits per bind / unbind

/** Exit counts of one fresh VM: its first bind, steady binds, and unbinds. */
interface ExitCounts {
  readonly firstBind: number;
  readonly bind: readonly number[];
  readonly unbind: readonly number[];
  readonly submissionsPerBind: number;
}

const BINDS = 4;
/**
 * Targets, from the guest driver's flow (see exitsFigure): a steady bind is
 * the PASID allocation (one virtual command) and one queue submission (the
 * PASID cache and IOTLB flush of the new entry, batched); the first bind on
 * a device adds one submission (the context-cache flush that turns on PASID
 * in its context entry); an unbind is the teardown submission and the
 * page-request drain submission.
 */
const TARGET = { firstBind: 3, bind: 2, unbind: 2 } as const;

function countExits(): ExitCounts {
  const m = machine();
  const g = bootVm(m, 1);
  const v = g.viommu;
  const exits = (fn: () => void): number => {
    const e = v.stats.exits;
    fn();
    return v.stats.exits - e;
  };
  const bonds: SvaBond[] = [];
  const hostBound = (): number => v.bound.size;
  const take = (i: number): void => {
    bonds.push(guestBond(g, `P${i}`, 1).bond);
  };
  const firstBind = exits(() => take(0));
  const subs0 = g.driver.hw.qi.stats.submissions;
  const bind = Array.from({ length: BINDS - 1 }, (_, i) => exits(() => take(i + 1)));
  const submissionsPerBind = (g.driver.hw.qi.stats.submissions - subs0) / (BINDS - 1);
  // Every bind reached the host: the counts are of binds that happened, not of refusals.
  if (v.stats.binds !== BINDS || hostBound() !== BINDS || v.stats.refused !== 0) throw new Error(`bench: ${v.stats.binds} host binds (${v.stats.refused} refused) for ${BINDS} guest binds`);
  const unbind = bonds.map((b) => exits(() => g.core.sva.unbindDevice(b)));
  if (v.stats.unbinds !== BINDS || hostBound() !== 0) throw new Error(`bench: ${v.stats.unbinds} host unbinds for ${BINDS} guest unbinds`);
  g.vm.kill();
  m.board.settle();
  return { firstBind, bind, unbind, submissionsPerBind };
}

/**
 * VM exits (the vIOMMU's trapped register writes: IQT tail writes and
 * virtual commands) per guest bind and per guest unbind, counted on two
 * fresh VMs, which must agree exactly (the counts are deterministic).
 *
 * The target follows the flow of the guest's VT-d driver in caching mode:
 * one exit per queue submission (a batched submission is one IQT write),
 * one per virtual command. Linux v5.10 submits each flush descriptor on its
 * own (drivers/iommu/intel/pasid.c: pasid_flush_caches() calls
 * pasid_cache_invalidation_with_pasid() and iotlb_invalidation_with_pasid(),
 * each a qi_submit_sync()), so a v5.10 guest's bind costs the vCMD plus two
 * submissions; both descriptors fit one submission (qi_submit_sync() takes
 * several, VT-d §6.5.2: the wait covers every earlier descriptor), which
 * this driver does: a steady bind is 2 exits. An unbind is the teardown
 * (intel_pasid_tear_down_entry(): PASID cache + PASID-based IOTLB, batched
 * here where v5.10 submits each on its own; no device-TLB descriptor in
 * caching mode) and the page-request drain (drivers/iommu/intel/svm.c:
 * intel_svm_drain_prq(), its own submission with the drain wait, which must
 * follow the teardown and the driver's check of its page request queue, so
 * it cannot join the teardown's submission): 2 exits, where a v5.10 guest
 * takes 3. The PASID stays with the mm until it exits (no vCMD on unbind).
 * The first bind on a device also turns on PASID in its context entry and
 * flushes the context cache (drivers/iommu/intel/iommu.c:
 * intel_iommu_enable_pasid()): one more submission, once.
 */
function exitsFigure(): void {
  const a = countExits();
  const b = countExits();
  const same = JSON.stringify(a) === JSON.stringify(b);
  const all = (xs: readonly number[], t: number): boolean => xs.every((x) => x <= t);
  const ok = (pass: boolean): string => (!same ? "BAD " : pass ? "ok  " : "MISS");
  console.log(`\nharness: VM exits per guest bind and unbind (trapped IQT writes and virtual commands; two fresh VMs, ${BINDS} binds each)`);
  console.log(`  ${ok(a.firstBind <= TARGET.firstBind)} exits, first guest bind on the device: ${a.firstBind} (target ≤ ${TARGET.firstBind}: vCMD + context-cache flush + PASID-entry flush)`);
  console.log(`  ${ok(all(a.bind, TARGET.bind))} exits per further guest bind: ${a.bind.join(", ")} (target ≤ ${TARGET.bind}: vCMD + one batched flush submission; a v5.10 guest would take 3); ${a.submissionsPerBind} queue submission(s) each`);
  console.log(`  ${ok(all(a.unbind, TARGET.unbind))} exits per guest unbind: ${a.unbind.join(", ")} (target ≤ ${TARGET.unbind}: teardown flush + page-request drain; a v5.10 guest would take 3)`);
  console.log(`  ${same ? "ok  " : "BAD "} the two fresh runs count the same exits${same ? "" : `: ${JSON.stringify(a)} vs ${JSON.stringify(b)}`}`);
}

// ------------------------------------------------------------------ growth in VMs (the flagship's shape)

const VM_SIZES = [1, 2, 4, 8, 16, 32, 64] as const;
const GROWTH_TARGET = 2.2;
const GROWTH_SAMPLES = 3;

/**
 * Growth in VMs, on the flagship's per-VM shape (bench/flagship-vms.ts: an
 * assigned function and two mdevs of an accelerator per VM, the guest's own
 * idxd, 16 guest processes bound one device each) × 100 DMAs per PASID, N
 * = 1 … `maxN`: build(2N) ÷ build(N) and DMA(2N) ÷ DMA(N) per doubling,
 * each the median of the rounds' own ratios (CPU time, as the host growth
 * figure), target ≤ 2.2. Every sample builds the same number of VMs in all
 * (`reps × n` = maxN), so the GC's share is alike at every size, and each
 * host is torn down (every VM killed, every mdev and accelerator removed)
 * before the next size. At 64 VMs a sample holds 64 VMs (1 MiB of guest
 * RAM each, all pinned in three containers) on 8 accelerators.
 */
export function guestGrowthFigure(maxN: number): void {
  const sizes = VM_SIZES.filter((n) => n <= maxN);
  buildFlagshipVms(2).teardown(); // warm the JIT
  const rounds: Map<number, { build: number; dma: number }>[] = [];
  for (let s = 0; s < GROWTH_SAMPLES; s++) {
    const round = new Map<number, { build: number; dma: number }>();
    for (const n of sizes) {
      const reps = Math.max(1, maxN / n);
      let build = 0;
      let dma = 0;
      for (let r = 0; r < reps; r++) {
        // Each timed build starts from a collected heap, as the host growth figure's samples do: the
        // garbage the last teardown left is not charged to this build.
        collect();
        const t0 = cpuMs();
        const built = buildFlagshipVms(n);
        const t1 = cpuMs();
        runFlagshipDma(built);
        const t2 = cpuMs();
        built.teardown();
        build += t1 - t0;
        dma += t2 - t1;
      }
      round.set(n, { build: build / reps, dma: dma / reps });
    }
    rounds.push(round);
  }
  const of = (n: number, k: "build" | "dma"): number[] => rounds.map((r) => r.get(n)?.[k] ?? Number.NaN);
  console.log(`\nharness: growth in VMs, the flagship's shape: N VMs × ${FLAGSHIP_PASIDS} bound guest PASIDs (dedicated WQ, shared WQ by ENQCMD, assigned function) × ${FLAGSHIP_DMAS} DMAs each (CPU time; times best of ${GROWTH_SAMPLES} rounds, ratios the median of the rounds' own)`);
  for (const n of sizes) console.log(`  N=${String(n).padStart(2)}: build ${Math.min(...of(n, "build")).toFixed(1).padStart(8)} ms, DMA ${Math.min(...of(n, "dma")).toFixed(2).padStart(8)} ms`);
  for (let i = 1; i < sizes.length; i++) {
    const [n, m] = [sizes[i - 1] ?? 1, sizes[i] ?? 1];
    const ratio = (k: "build" | "dma"): number => {
      const [xs, ys] = [of(m, k), of(n, k)];
      return median(xs.map((x, j) => x / (ys[j] ?? Number.NaN)));
    };
    const [rb, rd] = [ratio("build"), ratio("dma")];
    const ok = (r: number): string => (r <= GROWTH_TARGET ? "ok  " : "MISS");
    console.log(`  ${ok(rb)} build(${m} VMs) ÷ build(${n}): ${rb.toFixed(2)} (target ≤ ${GROWTH_TARGET})   ${ok(rd)} DMA(${m} VMs) ÷ DMA(${n}): ${rd.toFixed(2)} (target ≤ ${GROWTH_TARGET})`);
  }
}

/** Every guest figure; the growth stops at `maxVms` VMs. */
export function guestFigures(maxVms = 64): void {
  nestedFigure();
  exitsFigure();
  guestGrowthFigure(maxVms);
}
