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
  /** Position in the bus's total order, from 1. */
  readonly seq: number;
  /** Virtual time in ns. */
  readonly time: number;
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

export class TraceBus {
  #seq = 0;
  #subs: TraceSubscriber[] = [];

  constructor(private readonly clock: { now(): number }) {}

  get lastSeq(): number {
    return this.#seq;
  }

  /**
   * Whether anyone is listening. A hot path (a DMA per page, a translation)
   * may build its payload only when this holds, and otherwise call
   * {@link skip}, so that event numbering is the same either way.
   */
  get active(): boolean {
    return this.#subs.length !== 0;
  }

  /** Accounts for an event nobody listens to: exactly what `emit` does without subscribers. */
  skip(): void {
    this.#seq++;
  }

  emit<K extends TraceKind>(kind: K, actor: TraceActor<K>, ids: TraceIds, payload: TracePayload<K>, refcount?: number): void {
    if (this.#subs.length === 0) {
      this.#seq++;
      return;
    }
    const base = { seq: ++this.#seq, time: this.clock.now(), kind, actor, ids, payload };
    const e = (refcount === undefined ? base : { ...base, refcount }) as TraceEvent;
    for (const s of this.#subs) s(e);
  }

  /** Returns the unsubscribe function. */
  subscribe(fn: TraceSubscriber): () => void {
    this.#subs = [...this.#subs, fn];
    return () => {
      this.#subs = this.#subs.filter((s) => s !== fn);
    };
  }
}

/** Collects events from a bus, for tests, the harness and invariant checks. */
export class TraceRecorder {
  readonly events: TraceEvent[] = [];
  readonly #unsubscribe: () => void;

  constructor(bus: TraceBus) {
    this.#unsubscribe = bus.subscribe((e) => this.events.push(e));
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
