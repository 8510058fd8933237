import { Errno, KernelError } from "@vsva/kernel";
import { type PhysMem, bigIntToU64 } from "@vsva/pgtable";
import { type Mmio, readReg, writeReg } from "./mmio/mmio.js";
import { IqaReg, IqhReg, IqtReg, RegOffset } from "./vtd/regs.js";
import { CmdqConsReg, CmdqProdReg, QueueBaseReg, SmmuReg } from "./smmu/regs.js";

/**
 * Submitting to the units' queues as a driver does, for test writers: the entries are written
 * at the producer index the unit's registers show now (no state kept here, so it can be mixed
 * with any other producer), the index wraps at the end of the queue, and the producer register
 * is written once per batch. A full queue is drained first by writing the producer register
 * (an immediate-mode unit consumes inside that write); if the unit made no room (a deferred
 * queue, a stopped queue), EBUSY, with what fitted already submitted.
 */

function writeQwords(mem: PhysMem, at: number, qws: readonly bigint[]): void {
  for (let i = 0; i < qws.length; i++) {
    const u = bigIntToU64(qws[i] ?? 0n);
    if (!mem.write64(at + 8 * i, u.lo, u.hi)) throw new KernelError(Errno.EFAULT, `queue entry at 0x${(at + 8 * i).toString(16)} is not in memory`);
  }
}

/**
 * Writes VT-d invalidation descriptors (two qwords each for a 128-bit queue, four for a 256-bit one,
 * missing qwords zero) at IQT, wrapping at the end of the queue (IQA.QS), and moves IQT past them
 * (VT-d spec §6.5.2: the queue is full when moving the tail would make it equal to the head).
 * Returns the new IQT, in bytes.
 */
export function submitVtdDescriptors(unit: Mmio, mem: PhysMem, descs: readonly (readonly bigint[])[]): number {
  const iqa = readReg(unit, RegOffset.IQA, IqaReg);
  const base = IqaReg.getAddr(iqa, "IQA");
  const bytes = IqaReg.get(iqa, "DW") === 1 ? 32 : 16;
  const size = 4096 * 2 ** IqaReg.get(iqa, "QS");
  const iqt = readReg(unit, RegOffset.IQT, IqtReg);
  let tail = IqtReg.get(iqt, "QT") * 16;
  const publish = (): void => {
    IqtReg.set(iqt, "QT", tail / 16);
    writeReg(unit, RegOffset.IQT, iqt);
  };
  const head = (): number => IqhReg.get(readReg(unit, RegOffset.IQH, IqhReg), "QH") * 16;
  for (const d of descs) {
    if (d.length > bytes / 8) throw new KernelError(Errno.EINVAL, `a ${d.length}-qword descriptor does not fit a ${bytes * 8}-bit queue`);
    const next = (tail + bytes) % size;
    if (next === head()) {
      publish();
      if (next === head()) throw new KernelError(Errno.EBUSY, "invalidation queue full: the unit consumed nothing at the IQT write");
    }
    writeQwords(mem, base + tail, [...d, ...new Array<bigint>(bytes / 8 - d.length).fill(0n)]);
    tail = next;
  }
  publish();
  return tail;
}

/**
 * Writes SMMUv3 commands (two dwords each) at CMDQ_PROD, wrapping at 2^LOG2SIZE with the wrap bit
 * toggled (SMMUv3 spec §3.5: queue pointers carry an index and a wrap flag; full when the indexes
 * are equal and the wrap flags differ), and writes CMDQ_PROD. Returns the new CMDQ_PROD.
 */
export function submitSmmuCommands(unit: Mmio, mem: PhysMem, cmds: readonly (readonly [bigint, bigint])[]): number {
  const qb = readReg(unit, SmmuReg.CMDQ_BASE, QueueBaseReg);
  const base = QueueBaseReg.getAddr(qb, "ADDR");
  const log2 = QueueBaseReg.get(qb, "LOG2SIZE");
  const n = 2 ** log2;
  const mask = 2 * n - 1; // index bits and the wrap bit
  const prodReg = readReg(unit, SmmuReg.CMDQ_PROD, CmdqProdReg);
  let prod = CmdqProdReg.get(prodReg, "WR") & mask;
  const publish = (): void => {
    CmdqProdReg.set(prodReg, "WR", prod);
    writeReg(unit, SmmuReg.CMDQ_PROD, prodReg);
  };
  const cons = (): number => CmdqConsReg.get(readReg(unit, SmmuReg.CMDQ_CONS, CmdqConsReg), "RD") & mask;
  const full = (): boolean => (prod ^ cons()) === n;
  for (const c of cmds) {
    if (full()) {
      publish();
      if (full()) throw new KernelError(Errno.EBUSY, "command queue full: the unit consumed nothing at the CMDQ_PROD write");
    }
    writeQwords(mem, base + 16 * (prod & (n - 1)), c);
    prod = (prod + 1) & mask;
  }
  publish();
  return prod;
}
