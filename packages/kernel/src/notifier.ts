import type { AtomicContext } from "./atomic.js";
import { Errno } from "./errno.js";
import { KernelError } from "./error.js";

/**
 * Notifier chains with the semantics of include/linux/notifier.h: blocks are
 * called in descending priority, equal priorities in registration order, and a
 * handler that returns a value with {@link NOTIFY_STOP_MASK} set ends the call.
 *
 * Two flavours. An atomic chain runs its handlers in atomic context (the
 * caller may hold a spinlock): a handler must not sleep, so work that needs
 * thread context is queued, and {@link AtomicContext.mightSleep} catches a
 * handler that tries. A blocking chain's handlers may sleep.
 */
export const NOTIFY_DONE = 0x0000;
export const NOTIFY_OK = 0x0001;
export const NOTIFY_STOP_MASK = 0x8000;
export const NOTIFY_BAD = NOTIFY_STOP_MASK | 0x0002;
export const NOTIFY_STOP = NOTIFY_OK | NOTIFY_STOP_MASK;

export type NotifyResult = number;

export interface NotifierBlock<E, D> {
  readonly priority: number;
  call(event: E, data: D): NotifyResult;
}

/** `notifier_to_errno`-style: true when a handler vetoed (NOTIFY_BAD). */
export function notifyVetoed(ret: NotifyResult): boolean {
  return (ret & NOTIFY_STOP_MASK) !== 0 && ret !== NOTIFY_STOP;
}

abstract class NotifierChainBase<E, D> {
  #blocks: NotifierBlock<E, D>[] = [];

  constructor(readonly name: string) {}

  get length(): number {
    return this.#blocks.length;
  }

  /** EEXIST if `nb` is already on the chain (newer kernels refuse a double registration). */
  register(nb: NotifierBlock<E, D>): void {
    if (this.#blocks.includes(nb)) {
      throw new KernelError(Errno.EEXIST, `notifier block already registered on ${this.name}`);
    }
    if (!Number.isInteger(nb.priority)) {
      throw new KernelError(Errno.EINVAL, `notifier priority ${nb.priority} is not an integer`);
    }
    // Insert after every block of greater or equal priority.
    let i = 0;
    while (i < this.#blocks.length && (this.#blocks[i]?.priority ?? 0) >= nb.priority) i++;
    this.#blocks = [...this.#blocks.slice(0, i), nb, ...this.#blocks.slice(i)];
  }

  /** ENOENT if `nb` is not on the chain. */
  unregister(nb: NotifierBlock<E, D>): void {
    const i = this.#blocks.indexOf(nb);
    if (i < 0) throw new KernelError(Errno.ENOENT, `notifier block not registered on ${this.name}`);
    this.#blocks = this.#blocks.filter((b) => b !== nb);
  }

  has(nb: NotifierBlock<E, D>): boolean {
    return this.#blocks.includes(nb);
  }

  /** The blocks in call order (a snapshot). */
  blocks(): readonly NotifierBlock<E, D>[] {
    return this.#blocks;
  }

  /**
   * Calls the chain. Iterates a snapshot, so a handler that unregisters itself
   * (allowed) does not disturb the walk. Returns the last handler's result.
   */
  protected callBlocks(event: E, data: D): NotifyResult {
    let ret: NotifyResult = NOTIFY_DONE;
    for (const nb of this.#blocks) {
      ret = nb.call(event, data);
      if ((ret & NOTIFY_STOP_MASK) !== 0) break;
    }
    return ret;
  }
}

export class AtomicNotifierChain<E, D> extends NotifierChainBase<E, D> {
  constructor(
    name: string,
    private readonly atomic: AtomicContext,
  ) {
    super(name);
  }

  call(event: E, data: D): NotifyResult {
    return this.atomic.run(`atomic notifier ${this.name}`, () => this.callBlocks(event, data));
  }
}

export class BlockingNotifierChain<E, D> extends NotifierChainBase<E, D> {
  constructor(
    name: string,
    private readonly atomic: AtomicContext,
  ) {
    super(name);
  }

  call(event: E, data: D): NotifyResult {
    this.atomic.mightSleep(`blocking notifier ${this.name}`);
    return this.callBlocks(event, data);
  }
}
