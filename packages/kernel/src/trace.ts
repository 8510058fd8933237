import type { VmId } from "./ids.js";

/**
 * The typed trace bus. Every layer emits events with an
 * actor, a kind, the IDs involved and a payload; timelines, reports and
 * invariant checks are built from them.
 *
 * The set of event kinds is open: each package adds its own by declaration
 * merging, and gets a discriminated union with typed payloads:
 *
 * ```ts
 * declare module "@vsva/kernel" {
 *   interface TraceEventRegistry {
 *     "ioasid.alloc": { actor: "IOASID"; payload: { min: number; max: number } };
 *   }
 * }
 * ```
 */
export type Actor = "HW" | "IOMMU" | "IOASID" | "VFIO" | "KVM" | "VDCM" | "VMM" | "GUEST" | "DEVICE" | "MM" | "KERNEL";

export interface TraceIds {
  readonly vm?: VmId;
  /** Device name or BDF. */
  readonly device?: string;
  readonly hpasid?: number;
  readonly gpasid?: number;
  readonly ioasid?: number;
  readonly domain?: number;
  readonly set?: number;
}

export interface TraceEventRegistry {
  "kernel.log": { actor: Actor; payload: { readonly level: "warn" | "err" | "info"; readonly message: string; readonly suppressed: number } };
  "kernel.fault-injected": { actor: "KERNEL"; payload: { readonly point: string; readonly errno: number; readonly hit: number } };
}

export type TraceKind = keyof TraceEventRegistry;
export type TraceActor<K extends TraceKind> = TraceEventRegistry[K]["actor"];
export type TracePayload<K extends TraceKind> = TraceEventRegistry[K]["payload"];

interface TraceEventOf<K extends TraceKind> {
  /** Position in the system's total order (every context of one bus), from 1. */
  readonly seq: number;
  /** Virtual time in ns. */
  readonly time: number;
  /**
   * The kernel that emitted it ("host", "vm1", ...): a timeline puts each
   * context's actors in lanes of their own, so a guest's IOMMU driver and
   * the host's are told apart.
   */
  readonly context: string;
  readonly kind: K;
  readonly actor: TraceActor<K>;
  readonly ids: TraceIds;
  readonly payload: TracePayload<K>;
  /** For reference-counted objects (IOASIDs): the count after the event. */
  readonly refcount?: number;
}

export type TraceEvent = { [K in TraceKind]: TraceEventOf<K> }[TraceKind];
export type TraceEventOfKind<K extends TraceKind> = Extract<TraceEvent, { kind: K }>;

export type TraceSubscriber = (e: TraceEvent) => void;

/** What every context of one system's bus shares: the numbering and the subscribers. */
interface TraceBusState {
  seq: number;
  /** Subscribers in all, so a silent bus answers `active` and `emit` with one comparison. */
  total: number;
  /** Subscribers of one context (by name), or of every context (key null). */
  subs: Map<string | null, readonly TraceSubscriber[]>;
}

/** The context of a bus made without one: the host's kernel. */
export const HOST_CONTEXT = "host";

export class TraceBus {
  #s: TraceBusState = { seq: 0, total: 0, subs: new Map() };
  #context: string;

  constructor(
    private readonly clock: { now(): number },
    context: string = HOST_CONTEXT,
  ) {
    this.#context = context;
  }

  /** The context stamped on every event emitted here. */
  get context(): string {
    return this.#context;
  }

  /**
   * The same bus for another context (a guest's kernel): events from both
   * share one numbering, so a system-wide subscriber sees one total order.
   */
  forContext(context: string): TraceBus {
    const view = new TraceBus(this.clock, context);
    view.#s = this.#s;
    return view;
  }

  get lastSeq(): number {
    return this.#s.seq;
  }

  /**
   * Whether anyone is listening to this context. A hot path (a DMA per page,
   * a translation) may build its payload only when this holds, and otherwise
   * call {@link skip}, so that event numbering is the same either way.
   */
  get active(): boolean {
    return this.#s.total !== 0 && ((this.#s.subs.get(this.#context)?.length ?? 0) !== 0 || (this.#s.subs.get(null)?.length ?? 0) !== 0);
  }

  /** Accounts for an event nobody listens to: exactly what `emit` does without subscribers. */
  skip(): void {
    this.#s.seq++;
  }

  emit<K extends TraceKind>(kind: K, actor: TraceActor<K>, ids: TraceIds, payload: TracePayload<K>, refcount?: number): void {
    const mine = this.#s.total === 0 ? undefined : this.#s.subs.get(this.#context);
    const all = this.#s.total === 0 ? undefined : this.#s.subs.get(null);
    if (mine === undefined && all === undefined) {
      this.#s.seq++;
      return;
    }
    const base = { seq: ++this.#s.seq, time: this.clock.now(), context: this.#context, kind, actor, ids, payload };
    const e = (refcount === undefined ? base : { ...base, refcount }) as TraceEvent;
    if (mine !== undefined) for (const s of mine) s(e);
    if (all !== undefined) for (const s of all) s(e);
  }

  /** Subscribes to this context's events; returns the unsubscribe function. */
  subscribe(fn: TraceSubscriber): () => void {
    return this.#add(this.#context, fn);
  }

  /** Subscribes to the events of every context of the system, in their one order. */
  subscribeSystem(fn: TraceSubscriber): () => void {
    return this.#add(null, fn);
  }

  #add(key: string | null, fn: TraceSubscriber): () => void {
    const state = this.#s;
    const subs = state.subs;
    subs.set(key, [...(subs.get(key) ?? []), fn]);
    state.total++;
    let subscribed = true;
    return () => {
      if (!subscribed) return;
      subscribed = false;
      state.total--;
      const rest = (subs.get(key) ?? []).filter((s) => s !== fn);
      if (rest.length === 0) subs.delete(key);
      else subs.set(key, rest);
    };
  }
}

/** Collects events from a bus, for tests, the harness and invariant checks. */
export class TraceRecorder {
  readonly events: TraceEvent[] = [];
  readonly #unsubscribe: () => void;

  /** Records the bus's own context, or with `system` every context of the system. */
  constructor(bus: TraceBus, opts: { readonly system?: boolean } = {}) {
    const push = (e: TraceEvent) => this.events.push(e);
    this.#unsubscribe = opts.system === true ? bus.subscribeSystem(push) : bus.subscribe(push);
  }

  ofKind<K extends TraceKind>(kind: K): TraceEventOfKind<K>[] {
    return this.events.filter((e): e is TraceEventOfKind<K> => e.kind === kind);
  }

  byActor(actor: Actor): TraceEvent[] {
    return this.events.filter((e) => e.actor === actor);
  }

  clear(): void {
    this.events.length = 0;
  }

  detach(): void {
    this.#unsubscribe();
  }
}
