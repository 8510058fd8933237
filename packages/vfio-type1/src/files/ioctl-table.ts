import { Errno, KernelError } from "@vsva/kernel";
import { readArgsz } from "@vsva/iommu-core";

/**
 * What an ioctl's third argument is. VFIO's requests carry no size bits
 * (`_IO`), so the table says how each is passed, as iommufd's
 * `iommufd_ioctl_ops` table does for its structs (drivers/iommu/iommufd/main.c).
 *
 * - `none`: no argument (GET_API_VERSION, UNSET_CONTAINER);
 * - `int`: an integer by value (CHECK_EXTENSION, SET_IOMMU);
 * - `ptr`: a pointer to bytes the handler parses itself (SET_CONTAINER's
 *   `int *`, GET_DEVICE_FD's string);
 * - `struct`: a pointer to a struct that starts with `u32 argsz; u32 flags`.
 */
export type IoctlArg = Uint8Array | number | null;

export type IoctlEntry<F> =
  | { readonly cmd: number; readonly arg: "none"; readonly handler: (file: F) => number }
  | { readonly cmd: number; readonly arg: "int"; readonly handler: (file: F, value: number) => number }
  | { readonly cmd: number; readonly arg: "ptr"; readonly handler: (file: F, user: Uint8Array) => number }
  | {
      readonly cmd: number;
      readonly arg: "struct";
      /** `minsz`: offsetofend of the last field the kernel reads. Fewer user bytes fault; a smaller argsz is EINVAL. */
      readonly minsz: number;
      /** Input flag bits the kernel knows (others EINVAL); omit where flags are output only. */
      readonly knownFlags?: number;
      readonly handler: (file: F, user: Uint8Array) => number;
    };

function userBuffer(arg: IoctlArg): Uint8Array {
  // A pointer VFIO would copy_from_user(): anything but mapped bytes faults.
  if (!(arg instanceof Uint8Array)) throw new KernelError(Errno.EFAULT, "the argument is not a user buffer");
  return arg;
}

/**
 * Dispatches `cmd` through `table`, applying the checks every VFIO handler
 * starts with (copy_from_user of minsz, `argsz < minsz`, unknown flags), in
 * that order. An unknown request is ENOTTY, as the kernel's default case.
 */
export function dispatchIoctl<F>(table: ReadonlyMap<number, IoctlEntry<F>>, file: F, what: string, cmd: number, arg: IoctlArg): number {
  const e = table.get(cmd);
  if (e === undefined) throw new KernelError(Errno.ENOTTY, `${what}: unknown ioctl 0x${cmd.toString(16)}`);
  switch (e.arg) {
    case "none":
      return e.handler(file);
    case "int":
      if (typeof arg !== "number" || !Number.isInteger(arg)) throw new KernelError(Errno.EINVAL, `${what}: expects an integer argument`);
      return e.handler(file, arg);
    case "ptr":
      return e.handler(file, userBuffer(arg));
    case "struct": {
      const user = userBuffer(arg);
      if (user.length < e.minsz) throw new KernelError(Errno.EFAULT, `${what}: ${e.minsz} bytes to copy, ${user.length} mapped`);
      const argsz = readArgsz(user);
      if (argsz < e.minsz) throw new KernelError(Errno.EINVAL, `${what}: argsz ${argsz} < ${e.minsz}`);
      if (e.knownFlags !== undefined) {
        const flags = new DataView(user.buffer, user.byteOffset, user.byteLength).getUint32(4, true);
        if ((flags & ~e.knownFlags) !== 0) throw new KernelError(Errno.EINVAL, `${what}: unknown flags 0x${(flags & ~e.knownFlags).toString(16)}`);
      }
      return e.handler(file, user);
    }
  }
}

export function ioctlTable<F>(entries: readonly IoctlEntry<F>[]): ReadonlyMap<number, IoctlEntry<F>> {
  return new Map(entries.map((e) => [e.cmd, e]));
}
