import { AtomicNotifierChain, type AtomicContext } from "@vsva/kernel";
import { emptyList, type IdList } from "./id-table.js";
import type { IoasidEvent, IoasidNotifyData, IoasidSet, IoasidSetType } from "./types.js";

/**
 * The core's record of one set. Users hold it typed as the read-only
 * {@link IoasidSet}; only the core mutates it.
 */
export class SetState implements IoasidSet {
  quota: number;
  count = 0;
  refcount = 1;
  alive = true;
  /** The set's IDs, in allocation order. */
  readonly ids: IdList = emptyList();
  /** SPID -> IOASID within this set. */
  readonly spids = new Map<number, number>();
  /** Per-set notifier scope. */
  readonly chain: AtomicNotifierChain<IoasidEvent, IoasidNotifyData>;

  constructor(
    readonly id: number,
    readonly token: unknown,
    readonly type: IoasidSetType,
    quota: number,
    atomic: AtomicContext,
  ) {
    this.quota = quota;
    this.chain = new AtomicNotifierChain(`ioasid_set ${id}`, atomic);
  }
}
