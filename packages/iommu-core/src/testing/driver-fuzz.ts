import { type Kernel, isKernelError } from "@vsva/kernel";
import type { IommuDevice } from "../device.js";
import type { IommuDomain } from "../domain.js";
import type { IommuCore } from "../iommu-core.js";
import type { Iommu } from "../iommu.js";
import type { Mm } from "../mm/mm.js";
import { Prot } from "../mm/prot.js";
import { IommuProt } from "../ops.js";
import type { SvaBond } from "../sva.js";

/**
 * A driver fuzzed against a misbehaving unit: between driver calls made
 * through the core (probe, attach, map, SVA bind, DMA, interrupts, …) the
 * unit's registers and the memory the unit writes (the driver's queues) are
 * overwritten at random. Whatever the unit then does, every call must return or throw a
 * `KernelError`, and return: a crash (TypeError, KernelBug) or a driver
 * that keeps polling is what this finds.
 */
export interface DriverFuzzTarget {
  readonly kernel: Kernel;
  readonly core: IommuCore;
  readonly iommu: Iommu;
  /** How many endpoints `probe` and `dma` may name. */
  readonly endpoints: number;
  probe(endpoint: number, name: string): IommuDevice;
  /** A new process address space of the platform's format. */
  newMm(name: string): Mm;
  /** One DMA write by the endpoint (with a PASID when given); its outcome does not matter. */
  dma(endpoint: number, addr: number, pasid: number | undefined): void;
  /**
   * One random write to a register of the unit or to a word of memory the
   * unit writes (its queues). Tables only the driver writes (page tables)
   * are left alone: the driver may trust them, as Linux's io-pgtable does.
   */
  corrupt(rand: () => number): void;
  /**
   * Has the target call `onAccess` at each register read or write the
   * driver makes (not the corruptions'): the measure of a call's work.
   */
  watchAccesses(onAccess: () => void): void;
}

export interface DriverFuzzOptions {
  readonly seed: number;
  readonly steps: number;
  /** Corruptions made before each call (default 0 to 2). */
  readonly corruptionsPerStep?: number;
  /** The most register accesses one call may make; the next one throws, and the call counts as hung. */
  readonly maxAccessesPerCall: number;
}

export interface DriverFuzzResult {
  /** Calls that threw something other than a KernelError, or made more register accesses than allowed. */
  readonly failures: string[];
  /** Calls made, and how many of them the kernel refused with an errno. */
  readonly calls: number;
  readonly refused: number;
  /** The most register accesses a single call made. */
  readonly maxAccesses: number;
}

/** Thrown from inside a call that overran its register-access budget. */
class RunawayCall extends Error {
  override readonly name = "RunawayCall";
}

/** mulberry32: a small seeded generator, so a failing seed replays exactly. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

const VA = 0x10_0000_0000;
const IOVA_PAGES = 16;

/** Runs the fuzz; then tears everything down through the same checked calls. */
export function fuzzDriver(t: DriverFuzzTarget, o: DriverFuzzOptions): DriverFuzzResult {
  const rand = seededRandom(o.seed);
  const pick = (n: number): number => Math.floor(rand() * n);
  const failures: string[] = [];
  let calls = 0;
  let refused = 0;
  let maxAccesses = 0;
  let used = 0;
  // A call past its budget is stopped right there (a driver polling forever would otherwise hang the run).
  t.watchAccesses(() => {
    if (++used > o.maxAccessesPerCall) throw new RunawayCall(`more than ${o.maxAccessesPerCall} register accesses`);
  });
  const call = (what: string, fn: () => void): void => {
    calls++;
    used = 0;
    try {
      fn();
    } catch (e) {
      if (isKernelError(e)) refused++;
      else failures.push(`step ${calls} ${what}: threw ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
    }
    maxAccesses = Math.max(maxAccesses, used);
  };

  const devs: (IommuDevice | null)[] = Array.from({ length: t.endpoints }, () => null);
  const mms: Mm[] = [];
  const bonds: SvaBond[] = [];
  const attached = new Set<IommuDevice>();
  let domain: IommuDomain | null = null;
  let mmNo = 0;
  const currentDomain = (): IommuDomain | null => domain;
  const someDev = (): [number, IommuDevice] | null => {
    const i = pick(devs.length);
    const d = devs[i];
    return d === undefined || d === null ? null : [i, d];
  };

  const ops: (() => void)[] = [
    () => {
      const i = pick(devs.length);
      if (devs[i] === null) call(`probe ${i}`, () => (devs[i] = t.probe(i, `fuzz${i}`)));
    },
    () => {
      const d = someDev();
      if (d !== null && !d[1].hasFeature("sva")) call(`enable SVA on ${d[1].name}`, () => t.core.enableFeature(d[1], "sva"));
    },
    () => {
      const d = someDev();
      if (d === null || rand() < 0.7) return;
      call(`release ${d[1].name}`, () => t.core.releaseDevice(d[1]));
      attached.delete(d[1]);
      devs[d[0]] = null;
    },
    () => {
      const d = someDev();
      if (d !== null && domain === null) call("domain alloc", () => (domain = t.core.domainAlloc(d[1], { type: "unmanaged", nestingParent: false })));
    },
    () => {
      const d = someDev();
      const dom = domain;
      if (d !== null && dom !== null && !attached.has(d[1])) {
        call(`attach ${d[1].name}`, () => {
          t.core.attachDevice(dom, d[1]);
          attached.add(d[1]);
        });
      }
    },
    () => {
      const d = someDev();
      const dom = domain;
      // Detaching a domain the device is not in is a caller's bug (the core says so), not a driver's.
      if (d === null || dom === null || !attached.has(d[1])) return;
      attached.delete(d[1]);
      call(`detach ${d[1].name}`, () => t.core.detachDevice(dom, d[1]));
    },
    () => {
      const dom = domain;
      const page = pick(IOVA_PAGES);
      if (dom !== null) call(`map page ${page}`, () => t.core.map(dom, page * 0x1000, 0x30_0000 + pick(64) * 0x1000, 0x1000, IommuProt.READ | IommuProt.WRITE));
    },
    () => {
      const dom = domain;
      const page = pick(IOVA_PAGES);
      if (dom !== null) call(`unmap page ${page}`, () => t.core.unmap(dom, page * 0x1000, 0x1000));
    },
    () => {
      const dom = domain;
      if (dom === null || dom.attached) return;
      call("domain free", () => t.core.domainFree(dom));
      domain = null;
    },
    () => {
      if (mms.length >= 3) return;
      call("new mm", () => {
        const mm = t.newMm(`proc${mmNo++}`);
        mms.push(mm);
        mm.mmap(VA, 4 * 0x1000, Prot.READ | Prot.WRITE, { populate: rand() < 0.5 });
      });
    },
    () => {
      const d = someDev();
      const mm = mms[pick(mms.length)];
      if (d !== null && mm !== undefined) call(`bind ${mm.name} to ${d[1].name}`, () => bonds.push(t.core.sva.bindDevice(d[1], mm)));
    },
    () => {
      const bond = bonds.splice(pick(bonds.length), 1)[0];
      if (bond !== undefined) call(`unbind ${bond.mm.name} from ${bond.dev.name}`, () => t.core.sva.unbindDevice(bond));
    },
    () => {
      if (rand() < 0.7) return;
      const mm = mms.splice(pick(mms.length), 1)[0];
      if (mm !== undefined) call(`exit ${mm.name}`, () => mm.exit());
    },
    () => {
      const i = pick(t.endpoints);
      const bond = bonds[pick(bonds.length)];
      const pasid = bond !== undefined && rand() < 0.7 ? bond.pasid : undefined;
      call(`DMA by endpoint ${i}${pasid === undefined ? "" : ` with PASID ${pasid}`}`, () => t.dma(i, pasid === undefined ? pick(IOVA_PAGES) * 0x1000 : VA + pick(4) * 0x1000, pasid));
    },
    () => call("deferred work and interrupts", () => t.kernel.scheduler.runUntilIdle(10_000)),
  ];

  const corruptions = o.corruptionsPerStep;
  for (let s = 0; s < o.steps; s++) {
    const n = corruptions ?? pick(3);
    for (let c = 0; c < n; c++) t.corrupt(rand);
    const op = ops[pick(ops.length)];
    op?.();
  }

  // Teardown, through the same checks: owners unbind, processes exit, devices go, the domain is freed.
  for (const bond of bonds.splice(0)) call(`unbind ${bond.mm.name} from ${bond.dev.name}`, () => t.core.sva.unbindDevice(bond));
  for (const mm of mms.splice(0)) call(`exit ${mm.name}`, () => mm.exit());
  for (const d of devs) if (d !== null) call(`release ${d.name}`, () => t.core.releaseDevice(d));
  attached.clear();
  // Read through a function: the closures above assign it, which control-flow narrowing does not see.
  const dom = currentDomain();
  if (dom !== null) call("domain free", () => t.core.domainFree(dom));
  call("deferred work and interrupts", () => t.kernel.scheduler.runUntilIdle(10_000));
  return { failures, calls, refused, maxAccesses };
}
