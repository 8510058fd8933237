import { Errno, KernelError } from "@vsva/kernel";
import type { IoctlArg } from "./ioctl-table.js";

/**
 * An open VFIO file (container, group or device). Calls on a closed file
 * are EBADF, as on a closed descriptor. Closing runs the file's release once.
 */
export abstract class VfioFile {
  readonly fd: number;
  #closed = false;

  protected constructor(fd: number) {
    this.fd = fd;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** The ioctl's return value (≥ 0), or a KernelError with the errno. */
  ioctl(cmd: number, arg: IoctlArg = null): number {
    if (this.#closed) throw new KernelError(Errno.EBADF, `fd ${this.fd} is closed`);
    return this.dispatch(cmd, arg);
  }

  /** `close()`: the file's release runs. EBADF if it is already closed. */
  close(): void {
    if (this.#closed) throw new KernelError(Errno.EBADF, `fd ${this.fd} is already closed`);
    this.#closed = true;
    this.release();
  }

  protected abstract dispatch(cmd: number, arg: IoctlArg): number;
  protected abstract release(): void;
}
