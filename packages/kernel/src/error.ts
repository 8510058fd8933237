import { type Errno, errnoName } from "./errno.js";

/**
 * The one error type of the simulated kernel: an errno the kernel would return,
 * a message saying what was wrong, and optionally the error that caused it.
 * Throwing anything else out of kernel code is an oops (see {@link KernelBug}).
 */
export class KernelError extends Error {
  override readonly name = "KernelError";
  readonly errno: Errno;

  constructor(errno: Errno, message: string, options?: { cause?: unknown }) {
    super(`-${errnoName(errno)}: ${message}`, options);
    this.errno = errno;
  }

  /** The kernel's return convention: the negated errno. */
  get ret(): number {
    return -this.errno;
  }
}

/**
 * A kernel bug: a condition the real kernel would WARN or BUG on (refcount
 * revived at zero, sleeping in atomic context). The harness counts any of these
 * as an oops; they are never the answer to bad input.
 */
export class KernelBug extends Error {
  override readonly name = "KernelBug";
}

export function isKernelError(e: unknown, errno?: Errno): e is KernelError {
  return e instanceof KernelError && (errno === undefined || e.errno === errno);
}
