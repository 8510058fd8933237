import { Errno, KernelError } from "@vsva/kernel";
import type { VfioFile } from "./files/file.js";

/**
 * The user process's memory as VFIO pins it (get_user_pages with FOLL_LONGTERM
 * in vfio_pin_pages_remote). A VMM backs it with its guest-RAM view.
 */
export interface UserPages {
  /**
   * Pins the 4 KiB pages of [vaddr, vaddr + npages·4 KiB) and returns their
   * host-physical addresses, all or nothing: EFAULT when a page is not mapped
   * (nothing stays pinned).
   */
  pin(vaddr: number, npages: number): number[];
  /** Drops the pins `pin` took on the same range. */
  unpin(vaddr: number, npages: number): void;
}

export interface VfioUserOptions {
  readonly name: string;
  /** The process's mm: the token of the VM's IOASID set, and of KVM's notifier. */
  readonly mm: object;
  readonly pages: UserPages;
  /** RLIMIT_MEMLOCK in bytes: pinned pages are charged against it (vfio_lock_acct). */
  readonly memlockLimit: number;
  /** CAP_IPC_LOCK: pins are not limited. */
  readonly capIpcLock?: boolean;
}

/**
 * A process that uses VFIO: its descriptor table and its locked-memory
 * account. When it dies, every file it holds is closed (releases run in
 * descriptor order, as exit_files does).
 */
export class VfioUser {
  readonly name: string;
  readonly mm: object;
  readonly pages: UserPages;
  readonly memlockLimit: number;
  readonly capIpcLock: boolean;
  #locked = 0;
  #nextFd = 3;
  readonly #files = new Map<number, VfioFile>();

  constructor(opts: VfioUserOptions) {
    if (!Number.isSafeInteger(opts.memlockLimit) || opts.memlockLimit < 0) throw new KernelError(Errno.EINVAL, `memlockLimit ${opts.memlockLimit} is not a byte count`);
    this.name = opts.name;
    this.mm = opts.mm;
    this.pages = opts.pages;
    this.memlockLimit = opts.memlockLimit;
    this.capIpcLock = opts.capIpcLock ?? false;
  }

  /** Bytes pinned by this process's containers (mm->locked_vm in bytes). */
  get lockedBytes(): number {
    return this.#locked;
  }

  /** `vfio_lock_acct`: charges (or with a negative count, refunds) pinned bytes. ENOMEM past the limit. */
  chargeLocked(bytes: number): void {
    if (bytes > 0 && !this.capIpcLock && this.#locked + bytes > this.memlockLimit) {
      throw new KernelError(Errno.ENOMEM, `${this.name}: pinning ${bytes} more bytes exceeds RLIMIT_MEMLOCK ${this.memlockLimit} (${this.#locked} locked)`);
    }
    this.#locked += bytes;
  }

  /** @internal the next free descriptor. */
  allocFd(): number {
    return this.#nextFd++;
  }

  /** @internal */
  install(file: VfioFile): void {
    this.#files.set(file.fd, file);
  }

  /** @internal */
  forget(fd: number): void {
    this.#files.delete(fd);
  }

  /** The open file behind a descriptor (`fdget`): EBADF when there is none. */
  file(fd: number): VfioFile {
    const f = this.#files.get(fd);
    if (f === undefined || f.closed) throw new KernelError(Errno.EBADF, `${this.name}: fd ${fd} is not open`);
    return f;
  }

  get openFiles(): number {
    return this.#files.size;
  }

  /** The process exits: every file it holds is closed. */
  exit(): void {
    for (const f of [...this.#files.values()].sort((a, b) => a.fd - b.fd)) if (!f.closed) f.close();
    this.#files.clear();
  }
}
