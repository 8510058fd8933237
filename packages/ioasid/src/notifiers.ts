import { AtomicNotifierChain, type AtomicContext, Errno, KernelError, NOTIFY_STOP_MASK } from "@vsva/kernel";
import type { SetState } from "./set.js";
import type { IoasidEvent, IoasidNotifierBlock, IoasidNotifyData } from "./types.js";

/** A registration made by mm token (`ioasid_register_notifier_mm`): pending until a set with the token exists. */
interface MmRegistration {
  readonly token: unknown;
  readonly nb: IoasidNotifierBlock;
  set: SetState | null;
}

/**
 * The two notifier scopes of the ioasid.rst proposal (iommu list, 2020) — system-wide and per set — and the
 * pending list of mm registrations.
 *
 * Both scopes are `AtomicNotifierChain`s (registration rules, priority order,
 * EEXIST/ENOENT), but an event is delivered by merging the two chains in
 * priority order rather than calling one chain after the other: priority must
 * hold across scopes, so a per-set KVM block at CPU priority runs before a
 * system-wide IOMMU block even though they sit on different chains. At equal
 * priority the set scope runs first (decision): the set's subscribers are the
 * VM's own components, and the proposal's rule is to quiesce the DMA sources
 * before system-wide hardware context is torn down. A block returning a value
 * with NOTIFY_STOP_MASK ends the whole merged walk, as it would one chain.
 */
export class IoasidNotifiers {
  readonly system: AtomicNotifierChain<IoasidEvent, IoasidNotifyData>;
  /** In registration order, pending and active alike. */
  readonly #mm: MmRegistration[] = [];

  constructor(readonly atomicContext: AtomicContext) {
    this.system = new AtomicNotifierChain("ioasid system-wide", atomicContext);
  }

  /** Blocks an event on `set` would reach (before any NOTIFY_STOP). */
  blockCount(set: SetState): number {
    return set.chain.length + this.system.length;
  }

  /** True when delivering to `set` would reach no block: lets hot paths skip building event data. */
  idle(set: SetState): boolean {
    return set.chain.length === 0 && this.system.length === 0;
  }

  /** Delivers `event` in merged priority order, in atomic context. Returns how many blocks ran. */
  deliver(set: SetState, event: IoasidEvent, data: IoasidNotifyData): number {
    const local = set.chain.blocks();
    const global = this.system.blocks();
    return this.atomicContext.run(`ioasid notify ${event}`, () => {
      let i = 0;
      let j = 0;
      let ran = 0;
      for (;;) {
        const a = local[i];
        const b = global[j];
        let nb: IoasidNotifierBlock;
        if (a !== undefined && (b === undefined || a.priority >= b.priority)) {
          nb = a;
          i++;
        } else if (b !== undefined) {
          nb = b;
          j++;
        } else {
          return ran;
        }
        ran++;
        const ret = nb.call(event, data);
        if ((ret & NOTIFY_STOP_MASK) !== 0) return ran;
      }
    });
  }

  findMm(token: unknown, nb: IoasidNotifierBlock): MmRegistration | undefined {
    return this.#mm.find((r) => r.token === token && r.nb === nb);
  }

  isMmRegistered(set: SetState, nb: IoasidNotifierBlock): boolean {
    return this.#mm.some((r) => r.set === set && r.nb === nb);
  }

  /**
   * Records an mm registration; registers it on `set` at once when the set
   * exists. Caller has checked duplicates and the set's emptiness.
   */
  addMm(token: unknown, nb: IoasidNotifierBlock, set: SetState | null): void {
    if (set !== null) set.chain.register(nb);
    this.#mm.push({ token, nb, set });
  }

  removeMm(reg: MmRegistration): void {
    if (reg.set?.chain.has(reg.nb) === true) reg.set.chain.unregister(reg.nb);
    const i = this.#mm.indexOf(reg);
    if (i >= 0) this.#mm.splice(i, 1);
  }

  /** A set with an mm token was created: pending registrations for the token join its chain. */
  activate(set: SetState): number {
    let n = 0;
    for (const r of this.#mm) {
      if (r.set === null && r.token === set.token) {
        set.chain.register(r.nb);
        r.set = set;
        n++;
      }
    }
    return n;
  }

  /** The set died: its mm registrations go back to pending, ready for the token's next set. */
  deactivate(set: SetState): number {
    let n = 0;
    for (const r of this.#mm) {
      if (r.set === set) {
        if (set.chain.has(r.nb)) set.chain.unregister(r.nb);
        r.set = null;
        n++;
      }
    }
    return n;
  }

  pendingCount(token: unknown): number {
    return this.#mm.filter((r) => r.token === token && r.set === null).length;
  }
}

export function checkBlock(nb: IoasidNotifierBlock): void {
  if (typeof nb !== "object" || typeof nb.call !== "function" || !Number.isInteger(nb.priority)) {
    throw new KernelError(Errno.EINVAL, "notifier block needs an integer priority and a call function");
  }
}

