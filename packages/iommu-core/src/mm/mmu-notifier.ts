import type { Mm } from "./mm.js";

/**
 * A secondary MMU's view of an mm (`struct mmu_notifier_ops`, the two
 * callbacks an IOMMU sharing the page tables needs). Both are called by the
 * mm; neither may fail.
 */
export interface MmuNotifier {
  /**
   * CPU page-table entries in [start, end) were cleared or lost permissions
   * (munmap, mprotect, reclaim). Called after the entries changed and before
   * the pages are freed, in atomic context (the old `invalidate_range`,
   * called under the page-table lock): flush, do not sleep.
   */
  invalidateRange(mm: Mm, start: number, end: number): void;
  /**
   * The mm is exiting (`exit_mmap`): called once, before its mappings are
   * torn down and its page tables freed, while they still translate. After
   * it returns the notifier is unhooked; unregistering it later is harmless.
   * May sleep.
   */
  release(mm: Mm): void;
}
