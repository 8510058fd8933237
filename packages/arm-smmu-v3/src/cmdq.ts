import { Errno, type Kernel, KernelError } from "@vsva/kernel";
import {
  CMD_BYTES,
  CMD_NAMES,
  CmdOp,
  CmdSync,
  CmdqConsReg,
  CmdqError,
  GerrorReg,
  GerrornReg,
  type PhysMem,
  SmmuReg,
  SyncCs,
} from "@vsva/iommu-hw";
import type { PageAllocator } from "@vsva/iommu-core";
import { type Mmio, programQueue, readReg, writeReg } from "./mmio.js";

/** One 4 KiB page of 16-byte commands (Linux sizes the queue to IDR1.CMDQS; one page is plenty here). */
const MAX_LOG2 = 8;
/**
 * Polls one wait may make before it gives up with ETIMEDOUT, whatever the
 * unit does meanwhile: Linux's `queue_poll` (drivers/iommu/arm/arm-smmu-v3/
 * arm-smmu-v3.c) fails once ARM_SMMU_POLL_TIMEOUT_US has passed since
 * `queue_poll_init`, a deadline that CONS moving does not push back. Here
 * time is counted in polls, so the bound is deterministic. Each command
 * error skipped counts as a poll: a unit that raises CERROR again and again
 * cannot keep the wait alive either.
 */
export const CMDQ_POLL_LIMIT = 10_000;
/** Refused commands named in one submission's EIO; the rest are counted. */
const MAX_NAMED_FAILURES = 8;

export interface CommandQueueOptions {
  readonly name: string;
  readonly mmio: Mmio;
  readonly mem: PhysMem;
  readonly pages: PageAllocator;
  readonly kernel: Kernel;
  /** IDR1.CMDQS. */
  readonly maxLog2: number;
  /**
   * IDR0.MSI and COHACC: complete a CMD_SYNC by having the SMMU write its
   * MSI payload over the CMD_SYNC itself and polling that word ("MSI
   * polling", as Linux does when it can); otherwise poll CMDQ_CONS.
   */
  readonly msiPolling: boolean;
  /** Lets a unit that runs its queue from a work item progress while we wait. */
  readonly poll?: () => void;
  /** Polls one wait may make (default {@link CMDQ_POLL_LIMIT}). */
  readonly pollLimit?: number;
}

/**
 * The command queue, driver side (`arm_smmu_cmdq_issue_cmdlist` without the
 * lock-free machinery: one CPU). A batch is written at PROD, followed by a
 * CMD_SYNC, PROD is published once, and the submission waits for the sync.
 *
 * Errors (`arm_smmu_cmdq_skip_err`): when GERROR.CMDQ_ERR is raised the
 * queue has stopped with CONS on the bad command. A CERROR_ILL or
 * CERROR_ABT command is overwritten in memory with a CMD_SYNC (harmless,
 * so the queue can restart) and the error is acknowledged by toggling
 * GERRORN.CMDQ_ERR; the batch then completes and the submission fails with
 * EIO naming the command, leaving the queue usable. CERROR_ATC_INV_SYNC
 * (an ATC invalidation timed out) is acknowledged without rewriting.
 */
export class CommandQueue {
  #base = -1;
  #log2 = 0;
  /** Our PROD: index and wrap bit, as written to CMDQ_PROD. */
  #prod = 0;
  #seq = 0;
  readonly #o: CommandQueueOptions;
  readonly stats = { batches: 0, commands: 0, errors: 0 };

  readonly #pollLimit: number;

  constructor(o: CommandQueueOptions) {
    const limit = o.pollLimit ?? CMDQ_POLL_LIMIT;
    if (!Number.isInteger(limit) || limit < 1) throw new KernelError(Errno.EINVAL, `${o.name}: command queue poll limit ${limit} must be a positive integer`);
    this.#o = o;
    this.#pollLimit = limit;
  }

  get enabled(): boolean {
    return this.#base >= 0;
  }

  get base(): number {
    return this.#base;
  }

  /** Allocates the queue and programs CMDQ_BASE/PROD/CONS (the queue must be disabled in CR0). ENOMEM; EBUSY if already set up. */
  setup(): void {
    const o = this.#o;
    if (this.#base >= 0) throw new KernelError(Errno.EBUSY, `${o.name}: command queue already set up`);
    const log2 = Math.min(o.maxLog2, MAX_LOG2);
    const bytes = 2 ** log2 * CMD_BYTES;
    const base = o.pages.allocPages(Math.max(0, Math.ceil(Math.log2(bytes / 4096))), "smmu.cmdq");
    programQueue(o.mmio, { base: SmmuReg.CMDQ_BASE, prod: SmmuReg.CMDQ_PROD, cons: SmmuReg.CMDQ_CONS }, base, log2);
    this.#log2 = log2;
    this.#prod = 0;
    this.#base = base;
  }

  /** Frees the queue; CR0.CMDQEN must be clear. Cannot fail. */
  free(): void {
    if (this.#base < 0) return;
    this.#o.pages.freePages(this.#base);
    this.#base = -1;
  }

  /**
   * Issues `cmds` followed by a CMD_SYNC and waits for it. EIO when the unit
   * refused a command (the queue is recovered first), ETIMEDOUT when a wait
   * did not end within the poll limit (however many errors
   * the unit raised meanwhile), ENODEV when the queue is not set up.
   */
  submit(cmds: readonly Uint32Array[]): void {
    if (this.#base < 0) throw new KernelError(Errno.ENODEV, `${this.#o.name}: command queue not set up`);
    const failed = new Failures();
    // A batch larger than the queue goes in slices, each closed by its own sync.
    const room = 2 ** this.#log2 - 1;
    try {
      for (let i = 0; i < cmds.length || i === 0; i += room) {
        const slice = cmds.slice(i, i + room);
        this.#issue(slice, failed);
      }
    } finally {
      this.stats.batches++;
      this.stats.commands += cmds.length;
    }
    if (failed.count > 0) throw new KernelError(Errno.EIO, `${this.#o.name}: the SMMU refused ${failed.describe()}`);
  }

  #issue(cmds: readonly Uint32Array[], failed: Failures): void {
    const o = this.#o;
    this.#waitForSpace(cmds.length + 1, failed);
    for (const c of cmds) this.#write(c);
    const syncAt = this.#slotAddr(this.#prod);
    const seq = (this.#seq = (this.#seq + 1) >>> 0 || 1);
    const sync = CmdSync.alloc();
    CmdSync.set(sync, "OPCODE", CmdOp.SYNC);
    if (o.msiPolling) {
      CmdSync.set(sync, "CS", SyncCs.IRQ);
      CmdSync.set(sync, "MSIDATA", seq);
      CmdSync.setAddr(sync, "MSIADDR", syncAt);
    }
    this.#write(sync);
    const syncPos = this.#prod;
    o.mmio.mmioWrite32(SmmuReg.CMDQ_PROD, this.#prod);
    this.#wait(() => (o.msiPolling ? o.mem.read32(syncAt) === seq : this.#consumed(syncPos)), failed);
  }

  #slotAddr(ptr: number): number {
    return this.#base + (ptr & (2 ** this.#log2 - 1)) * CMD_BYTES;
  }

  #write(cmd: Uint32Array): void {
    const at = this.#slotAddr(this.#prod);
    this.#o.mem.write64(at, cmd[0] ?? 0, cmd[1] ?? 0);
    this.#o.mem.write64(at + 8, cmd[2] ?? 0, cmd[3] ?? 0);
    this.#prod = (this.#prod + 1) & (2 ** (this.#log2 + 1) - 1);
  }

  #cons(): number {
    return CmdqConsReg.get(readReg(this.#o.mmio, SmmuReg.CMDQ_CONS, CmdqConsReg), "RD") & (2 ** (this.#log2 + 1) - 1);
  }

  /** Whether CONS has gone past the command before `pos` (wrap-aware, queue not full by construction). */
  #consumed(pos: number): boolean {
    const size = 2 ** (this.#log2 + 1);
    const cons = this.#cons();
    // Distance from CONS to our PROD: what is still queued. The sync at pos-1 is done when it is not queued.
    const queued = (this.#prod - cons + size) % size;
    const afterSync = (this.#prod - pos + size) % size;
    return queued <= afterSync;
  }

  #waitForSpace(n: number, failed: Failures): void {
    const size = 2 ** this.#log2;
    const ring = 2 * size;
    this.#wait(() => size - (this.#prod - this.#cons() + ring) % ring >= n, failed);
  }

  /**
   * Polls until `done`, skipping command errors as they come; at most the
   * poll limit ({@link CMDQ_POLL_LIMIT} by default) in all, then ETIMEDOUT naming where the
   * queue stood and what it refused meanwhile.
   */
  #wait(done: () => boolean, failed: Failures): void {
    for (let polls = 0; !done(); polls++) {
      if (polls >= this.#pollLimit) {
        const refused = failed.count > 0 ? `; refused meanwhile: ${failed.describe()}` : "";
        throw new KernelError(Errno.ETIMEDOUT, `${this.#o.name}: command queue wait timed out after ${this.#pollLimit} polls (PROD ${this.#prod}, CONS ${this.#cons()})${refused}`);
      }
      if (this.#errorPending()) {
        failed.add(this.#skipError());
        continue;
      }
      this.#o.poll?.();
    }
  }

  #errorPending(): boolean {
    const g = readReg(this.#o.mmio, SmmuReg.GERROR, GerrorReg);
    const n = readReg(this.#o.mmio, SmmuReg.GERRORN, GerrornReg);
    return GerrorReg.get(g, "CMDQ_ERR") !== GerrornReg.get(n, "CMDQ_ERR");
  }

  /** `arm_smmu_cmdq_skip_err`: replaces the faulting command by a CMD_SYNC and acknowledges. Returns what failed. */
  #skipError(): string {
    const o = this.#o;
    const consReg = readReg(o.mmio, SmmuReg.CMDQ_CONS, CmdqConsReg);
    const err = CmdqConsReg.get(consReg, "ERR");
    const at = this.#slotAddr(CmdqConsReg.get(consReg, "RD"));
    const opcode = o.mem.read32(at) & 0xff;
    const what = `${CMD_NAMES[opcode] ?? `opcode 0x${opcode.toString(16)}`} (${err === CmdqError.ILL ? "CERROR_ILL" : err === CmdqError.ABT ? "CERROR_ABT" : "CERROR_ATC_INV_SYNC"})`;
    if (err !== CmdqError.ATC_INV_SYNC) {
      const sync = CmdSync.alloc();
      CmdSync.set(sync, "OPCODE", CmdOp.SYNC);
      o.mem.write64(at, sync[0] ?? 0, sync[1] ?? 0);
      o.mem.write64(at + 8, sync[2] ?? 0, sync[3] ?? 0);
    }
    this.stats.errors++;
    o.kernel.log.warn(`${o.name}.cmdq-error`, `${o.name}: CMDQ error: ${what}, skipped`, "IOMMU");
    o.kernel.trace.emit("smmu-drv.cmdq-error", "IOMMU", {}, { unit: o.name, command: what });
    const n = readReg(o.mmio, SmmuReg.GERRORN, GerrornReg);
    const g = readReg(o.mmio, SmmuReg.GERROR, GerrorReg);
    GerrornReg.set(n, "CMDQ_ERR", GerrorReg.get(g, "CMDQ_ERR"));
    writeReg(o.mmio, SmmuReg.GERRORN, n);
    return what;
  }
}

/** The commands one submission saw refused: the first few by name, all of them counted. */
class Failures {
  readonly #named: string[] = [];
  #count = 0;

  get count(): number {
    return this.#count;
  }

  add(what: string): void {
    this.#count++;
    if (this.#named.length < MAX_NAMED_FAILURES) this.#named.push(what);
  }

  describe(): string {
    const more = this.#count - this.#named.length;
    return more > 0 ? `${this.#named.join(", ")} and ${more} more` : this.#named.join(", ");
  }
}
