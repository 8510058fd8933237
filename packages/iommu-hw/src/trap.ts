import { Errno, KernelError } from "@vsva/kernel";

/**
 * Trap points: what a hypervisor traps on an IOMMU it emulates for a guest
 * (register accesses, queue entries as the unit consumes them, virtual
 * commands), offered by both units through one hook. A unit made with a
 * `trap` calls it at each point and obeys the reply; a unit without one is
 * the model alone. The unit does not know whether it is physical or
 * virtual: a VMM that answers "pass" everywhere gets exactly the run (trace
 * events, memory bytes) of a unit without a trap.
 *
 * Replies, by event kind:
 * - `mmio-read`: "pass" (the model's value) or `{ value }` (the read returns
 *   it; it must fit the access width);
 * - `mmio-write`: "pass" (the model takes the write) or "handled" (the
 *   model never sees it: the register keeps its value and nothing happens —
 *   a refused write, or one the VMM carries out itself);
 * - `descriptor` (VT-d invalidation queue) / `command` (SMMUv3 command
 *   queue): "pass" (the model executes it now), "handled" (the VMM did it;
 *   the queue moves past it without executing it), or "defer" (the queue
 *   stops at it: see {@link QueueEntryTrap} and the unit's
 *   `completeDeferred`);
 * - `vcmd` (VT-d virtual command): "pass" (the model answers: it has no
 *   PASIDs to give) or `{ status, result }` (what VCRSP reports).
 *
 * A reply that does not fit its event is refused with EINVAL before the
 * unit changes anything.
 */
export type TrapReply = "pass" | "handled" | "defer" | TrapReadValue | VcmdReply;

/** A register read the VMM answers. */
export interface TrapReadValue {
  readonly value: bigint;
}

/** A virtual command the VMM answers: VCRSP.SC and VCRSP.RSLT. */
export interface VcmdReply {
  readonly status: number;
  readonly result?: number;
}

/** Software reads a register (32 or 64 bits at `offset`). */
export interface MmioReadTrap {
  readonly kind: "mmio-read";
  readonly offset: number;
  readonly width: 32 | 64;
}

/** Software writes a register; `value` has already been checked to fit `width`. */
export interface MmioWriteTrap {
  readonly kind: "mmio-write";
  readonly offset: number;
  readonly width: 32 | 64;
  readonly value: bigint;
}

/**
 * The unit has fetched one entry of its command queue and is about to
 * execute it. `seq` numbers every entry the unit has fetched (it names a
 * deferred entry to `completeDeferred`); `slot` is its index in the ring and
 * `addr` its physical address; `bytes` and `dwords` are a copy of what was
 * fetched (little-endian), `type` the descriptor type or opcode and `name`
 * what the specification calls it.
 *
 * Deferring ("defer") stops the queue at the entry, with the consumer
 * pointer (VT-d IQH, SMMUv3 CMDQ_CONS) still naming it: nothing after it is
 * consumed, and software sees the queue as not past it. Because completion
 * is in queue order (VT-d spec §6.5.2 and §6.5.2.8: an invalidation wait
 * descriptor's status write and interrupt come only after every earlier
 * descriptor has completed; SMMUv3 spec, CMD_SYNC: CONS moves past a
 * CMD_SYNC, and its MSI is written, only once every earlier command has
 * completed, which is what Linux's `arm_smmu_cmdq_poll_until_sync()`
 * waits for), a
 * deferred wait descriptor or CMD_SYNC withholds its status write, MSI or
 * interrupt, and a deferred invalidation withholds every later wait or
 * sync, until the VMM calls `completeDeferred(seq, "pass" | "handled")`.
 * Disabling the queue (VT-d GCMD.QIE = 0, SMMUv3 CR0.CMDQEN = 0) ends a
 * deferral unfinished: the entry counts as not consumed, like every entry
 * after it (VT-d resets IQH to 0; an SMMUv3 fetches it again from
 * CMDQ_CONS once CMDQEN is set, and the trap sees it as a new fetch).
 */
export interface QueueEntryTrap<K extends "descriptor" | "command"> {
  readonly kind: K;
  readonly seq: number;
  readonly slot: number;
  readonly addr: number;
  readonly bytes: Uint8Array;
  readonly dwords: Uint32Array;
  readonly type: number;
  readonly name: string;
}

/** Software wrote VCMD (VT-d §10.4.43): the command and its operand. */
export interface VcmdTrap {
  readonly kind: "vcmd";
  readonly cmd: number;
  readonly operand: number;
}

export type VtdTrapEvent = MmioReadTrap | MmioWriteTrap | QueueEntryTrap<"descriptor"> | VcmdTrap;
export type SmmuTrapEvent = MmioReadTrap | MmioWriteTrap | QueueEntryTrap<"command">;

/** The hook a VT-d unit calls at each trap point. */
export type VtdTrap = (event: VtdTrapEvent) => TrapReply;
/** The hook an SMMUv3 calls at each trap point. */
export type SmmuTrap = (event: SmmuTrapEvent) => TrapReply;

/** How a VMM finishes a deferred queue entry: the model executes it ("pass") or it is done already ("handled"). */
export type DeferredOutcome = "pass" | "handled";

function misfit(kind: string, reply: unknown): never {
  throw new KernelError(Errno.EINVAL, `trap reply ${JSON.stringify(reply, (_k, v: unknown) => (typeof v === "bigint" ? `${v}n` : v))} does not answer a ${kind} event`);
}

/** A register read's reply: null to let the model answer, or the value (EINVAL if it does not fit `width`). */
export function readReply(reply: TrapReply, width: 32 | 64): bigint | null {
  if (reply === "pass") return null;
  if (typeof reply === "object" && "value" in reply && typeof reply.value === "bigint" && reply.value >= 0n && reply.value < 1n << BigInt(width)) {
    return reply.value;
  }
  return misfit(`${width}-bit mmio-read`, reply);
}

/** A register write's reply: whether the model takes the write. */
export function writeReply(reply: TrapReply): boolean {
  if (reply === "pass") return true;
  if (reply === "handled") return false;
  return misfit("mmio-write", reply);
}

/** A queue entry's reply. */
export function entryReply(reply: TrapReply, kind: "descriptor" | "command"): "pass" | "handled" | "defer" {
  if (reply === "pass" || reply === "handled" || reply === "defer") return reply;
  return misfit(kind, reply);
}

/** VCRSP.RSLT for a PASID is 20 bits wide; SC is 2 bits (VT-d §10.4.44). */
const RSLT_LIMIT = 2 ** 20;

/** A virtual command's reply: null to let the model answer. EINVAL for a status or result VCRSP cannot hold. */
export function vcmdReply(reply: TrapReply): VcmdReply | null {
  if (reply === "pass") return null;
  if (typeof reply === "object" && "status" in reply) {
    const { status, result } = reply;
    const okStatus = Number.isInteger(status) && status >= 0 && status <= 3;
    const okResult = result === undefined || (Number.isInteger(result) && result >= 0 && result < RSLT_LIMIT);
    if (okStatus && okResult) return reply;
  }
  return misfit("vcmd", reply);
}

/** How a deferred entry is finished; EINVAL for anything but "pass" or "handled". */
export function deferredOutcome(outcome: unknown): DeferredOutcome {
  if (outcome === "pass" || outcome === "handled") return outcome;
  throw new KernelError(Errno.EINVAL, `a deferred queue entry completes as "pass" or "handled", not ${JSON.stringify(outcome)}`);
}

/** A fetched queue entry as its trap sees it (a copy: the trap may keep it). */
export function entryBytes(dwords: Uint32Array): { bytes: Uint8Array; dwords: Uint32Array } {
  const copy = Uint32Array.from(dwords);
  const bytes = new Uint8Array(copy.length * 4);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < copy.length; i++) view.setUint32(i * 4, copy[i] ?? 0, true);
  return { bytes, dwords: copy };
}
