/**
 * Linux errno values (include/uapi/asm-generic/errno-base.h and errno.h), the
 * only error vocabulary in vsva. Every refusal a layer makes is one of these.
 */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  ESRCH: 3,
  EINTR: 4,
  EIO: 5,
  ENXIO: 6,
  E2BIG: 7,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  ENODEV: 19,
  EINVAL: 22,
  ENOTTY: 25,
  ENOSPC: 28,
  ERANGE: 34,
  ENOSYS: 38,
  EOVERFLOW: 75,
  EOPNOTSUPP: 95,
  ETIMEDOUT: 110,
  /** Kernel-internal "operation not supported" (include/linux/errno.h), never seen by user space. */
  ENOTSUPP: 524,
} as const;

export type ErrnoName = keyof typeof Errno;
export type Errno = (typeof Errno)[ErrnoName];

const names = new Map<number, ErrnoName>(
  (Object.entries(Errno) as [ErrnoName, Errno][]).map(([name, value]) => [value, name]),
);

/** The symbolic name of an errno value, e.g. `errnoName(22) === "EINVAL"`. */
export function errnoName(errno: number): string {
  return names.get(errno) ?? `E${errno}`;
}
