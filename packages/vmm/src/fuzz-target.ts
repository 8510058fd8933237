/** Test support (not exported): a guest under fuzz beside a bystander VM. */
import { expect } from "vitest";
import fc from "fast-check";
import { isKernelError, type SourceId } from "@vsva/kernel";
import {
  CONTEXT_ENTRY_BYTES, ContextEntry, InvType, type Layout, PASID_DIR_ENTRY_BYTES, PASID_ENTRY_BYTES, PasidCacheDesc, PasidDirEntry, PasidEntry, Pgtt, RegOffset, ROOT_ENTRY_BYTES,
  RootEntry, RtaddrReg, VcmdReg, WaitDesc, pasidDirIndex, pasidTableIndex, readReg, writeReg,
} from "@vsva/iommu-hw";
import { submitVtdDescriptors } from "@vsva/iommu-hw/testing";
import { Prot } from "@vsva/iommu-core";
import { Guest } from "./guest.js";
import { PAGE } from "./guest-ram.js";
import { assign, vmTestHost } from "./test-host.js";
import type { GuestPasidMode } from "./viommu.js";
import { Vm } from "./vm.js";

const RAM = 2 << 20;
export const VA = 0x7000_0000_0000;
const REGS = Object.values(RegOffset);

export type Action =
  | { readonly kind: "reg"; readonly offset: number; readonly wide: boolean; readonly value: bigint }
  | { readonly kind: "pasid-entry"; readonly pick: number; readonly pasid: number; readonly words: readonly number[]; readonly gran: number }
  | { readonly kind: "desc"; readonly lo: bigint; readonly hi: bigint; readonly wait: boolean }
  | { readonly kind: "vcmd"; readonly cmd: number; readonly operand: number };

const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
const pasidEntryAction: fc.Arbitrary<Action> = fc.record({
    kind: fc.constant("pasid-entry" as const),
    pick: fc.integer({ min: 0, max: 2 }),
    pasid: fc.integer({ min: 0, max: 0xf_ffff }),
    words: fc.oneof(fc.array(fc.integer({ min: 0, max: 0xffff_ffff }), { minLength: 16, maxLength: 16 }), plausibleEntry()),
    gran: fc.integer({ min: 0, max: 3 }),
  });

/** PASID entries weighted up: a random register write or descriptor often stops the queue (IQE, QIE off) for the rest of a run. */
export const action: fc.Arbitrary<Action> = fc.oneof(
  { arbitrary: pasidEntryAction, weight: 5 },
  { arbitrary: fc.record({ kind: fc.constant("reg" as const), offset: fc.constantFrom(...REGS), wide: fc.boolean(), value: u64 }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant("desc" as const), lo: u64, hi: u64, wait: fc.boolean() }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant("vcmd" as const), cmd: fc.integer({ min: 0, max: 3 }), operand: fc.integer({ min: 0, max: 0xf_ffff }) }), weight: 1 },
);

/**
 * A PASID entry shaped like one (present, a first-level table in guest RAM,
 * 4- or 5-level) with random details, so the VMM's bind path is reached
 * often, not once in hundreds of random entries.
 */
function plausibleEntry(): fc.Arbitrary<number[]> {
  return fc
    .record({
      p: fc.constantFrom(0, 1, 1, 1),
      pgtt: fc.constantFrom(Pgtt.FIRST_LEVEL, Pgtt.FIRST_LEVEL, Pgtt.SECOND_LEVEL, Pgtt.PASS_THROUGH, 7),
      flpm: fc.constantFrom(0, 0, 1, 2),
      flptr: fc.integer({ min: 0, max: 2 * RAM / PAGE }).map((n) => n * PAGE),
      sre: fc.integer({ min: 0, max: 1 }),
      noise: fc.array(fc.integer({ min: 0, max: 0xffff_ffff }), { minLength: 8, maxLength: 8 }),
    })
    .map((r) => {
      const e = PasidEntry.alloc();
      PasidEntry.set(e, "P", r.p);
      PasidEntry.set(e, "PGTT", r.pgtt);
      PasidEntry.set(e, "FLPM", r.flpm);
      PasidEntry.set(e, "SRE", r.sre);
      PasidEntry.setAddr(e, "FLPTPTR", r.flptr);
      return [...e, ...r.noise].slice(0, 16);
    });
}

/** Where the guest's PASID-table entry of `pasid` lives (GPA), following its tables; null where they stop. */
export function pasidEntryGpa(g: Guest, sid: SourceId, pasid: number): number | null {
  const mem = g.vm.ram.view;
  const read = (layout: Layout<string>, pa: number): Uint32Array | null => {
    const v = layout.alloc();
    return layout.read(mem, pa, v) ? v : null;
  };
  const root = read(RootEntry, RtaddrReg.getAddr(readReg(g.viommu.unit, RegOffset.RTADDR, RtaddrReg), "RTA") + ROOT_ENTRY_BYTES * (sid >> 8));
  if (root === null || RootEntry.get(root, "LP") !== 1) return null;
  const ctx = read(ContextEntry, RootEntry.getAddr(root, "LCTP") + CONTEXT_ENTRY_BYTES * (sid & 0x7f));
  if (ctx === null || ContextEntry.get(ctx, "P") !== 1) return null;
  const dir = read(PasidDirEntry, ContextEntry.getAddr(ctx, "PASIDDIRPTR") + PASID_DIR_ENTRY_BYTES * pasidDirIndex(pasid));
  if (dir === null || PasidDirEntry.get(dir, "P") !== 1) return null;
  return PasidDirEntry.getAddr(dir, "SMPTBLPTR") + PASID_ENTRY_BYTES * pasidTableIndex(pasid);
}

const wait = (): bigint[] => {
  const d = WaitDesc.alloc();
  WaitDesc.set(d, "TYPE", InvType.WAIT);
  return [BigInt(d[0] ?? 0) | (BigInt(d[1] ?? 0) << 32n), 0n];
};

/** `guestPasids`: how the VM under test numbers its guest PASIDs (the bystander keeps the host's numbers). */
export function bootVictimAndTarget(guestPasids: GuestPasidMode = "identity") {
  const a = vmTestHost();
  const b = assign(a.board, "dsa1", 5, a.vfio);
  // The bystander: another VM with a bound guest process holding data.
  const vm2 = new Vm({ host: a.board, vfio: a.vfio, id: 2, ramBytes: RAM, device: b.device });
  const g2 = new Guest(vm2);
  const p2 = g2.newProcess("Q");
  p2.mmap(VA, PAGE, Prot.READ | Prot.WRITE, { populate: true });
  const bond2 = g2.core.sva.bindDevice(g2.device, p2);
  expect(g2.dma({ pasid: bond2.pasid, addr: VA, length: 4, direction: "write", pattern: Uint8Array.of(1, 2, 3, 4) })).toBe("ok");
  const pagesBefore = a.board.pages.stats.livePages;
  const allocatedBefore = a.board.ioasid.allocated;
  // The guest under test.
  const vm1 = new Vm({ host: a.board, vfio: a.vfio, id: 1, ramBytes: RAM, device: a.device, guestPasids });
  const g1 = new Guest(vm1);
  const p1 = g1.newProcess("P");
  p1.mmap(VA, PAGE, Prot.READ | Prot.WRITE, { populate: true });
  const bond1 = g1.core.sva.bindDevice(g1.device, p1);
  return { h: a.board, vm1, g1, bond1, vm2, g2, p2, bond2, pagesBefore, allocatedBefore };
}

export function apply(t: ReturnType<typeof bootVictimAndTarget>, a: Action): void {
  const unit = t.g1.viommu.unit;
  const mem = t.vm1.ram.view;
  switch (a.kind) {
    case "reg":
      if (a.wide) unit.mmioWrite64(a.offset, a.value);
      else unit.mmioWrite32(a.offset, Number(a.value & 0xffff_ffffn));
      break;
    case "vcmd":
      writeReg(unit, RegOffset.VCMD, VcmdReg.encode({ CMD: a.cmd, OPERAND: a.operand }));
      break;
    case "pasid-entry": {
      const pasid = [t.bond1.pasid, t.bond2.pasid, a.pasid][a.pick] ?? a.pasid;
      const at = pasidEntryGpa(t.g1, t.g1.sid, pasid);
      if (at !== null) for (let i = 0; i < a.words.length; i += 2) mem.write64(at + 4 * i, a.words[i] ?? 0, a.words[i + 1] ?? 0);
      const d = PasidCacheDesc.alloc();
      PasidCacheDesc.set(d, "TYPE", InvType.PASID_CACHE);
      PasidCacheDesc.set(d, "G", a.gran);
      PasidCacheDesc.set(d, "PASID", pasid);
      submit(t, [[BigInt(d[0] ?? 0) | (BigInt(d[1] ?? 0) << 32n), BigInt(d[2] ?? 0) | (BigInt(d[3] ?? 0) << 32n)], wait()]);
      break;
    }
    case "desc":
      submit(t, a.wait ? [[a.lo, a.hi], wait()] : [[a.lo, a.hi]]);
      break;
  }
  // The VMM's thread runs between guest actions.
  t.g1.viommu.service();
}

/** The guest writing its queue: a full, stopped or unmapped queue is the guest's own problem (the helper reports it as a KernelError). */
function submit(t: ReturnType<typeof bootVictimAndTarget>, descs: bigint[][]): void {
  try {
    submitVtdDescriptors(t.g1.viommu.unit, t.vm1.ram.view, descs);
  } catch (e) {
    if (!isKernelError(e)) throw e;
  }
}

