// Helpers for tests of packages built on the kernel (subpath `@vsva/kernel/testing`).
import { isKernelError } from "./error.js";

/**
 * Runs `fn` and returns 0 if it returned, or the errno of the KernelError it
 * threw: the kernel's "0 or -errno" convention, so a test reads
 * `expect(errnoOf(() => bind())).toBe(Errno.EBUSY)`. Anything else thrown (a
 * TypeError, a KernelBug) is rethrown: a crash must never pass for an errno.
 */
export function errnoOf(fn: () => unknown): number {
  try {
    fn();
  } catch (e) {
    if (isKernelError(e)) return e.errno;
    throw e;
  }
  return 0;
}
