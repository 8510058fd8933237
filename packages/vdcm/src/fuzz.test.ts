import { asSpid, asVmId, type Ioasid, isKernelError } from "@vsva/kernel";
import { DsaCmd, DsaReg } from "@vsva/dsa";
import { regionOffset, VfioPciRegion } from "@vsva/vfio-type1";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { VDCM_PORTAL_REGION, VDCM_PORTAL_SIZE } from "./mdev.js";
import { allocPasid, freePasid, openMdev, vdcmRig, vdcmViolations, vmmUser } from "./testing/index.js";
import { VBAR0_SIZE, VBAR0_WQCFG } from "./vbar0.js";

const G = 101;

/** A KernelError is an allowed answer to anything a guest or VMM does; anything else thrown is an oops and fails the run. */
function guarded(fn: () => unknown): void {
  try {
    fn();
  } catch (e) {
    if (!isKernelError(e)) throw e;
  }
}

const u32 = fc.integer({ min: 0, max: 0xffff_ffff });
const width = fc.constantFrom(1, 2, 3, 4, 8, 16, 64);
const bar0Offset = fc.oneof(
  fc.integer({ min: 0, max: VBAR0_SIZE + 8 }),
  fc.constantFrom(DsaReg.CMD, DsaReg.CMDSTS, DsaReg.GENCFG, DsaReg.GENSTS, DsaReg.INTCAUSE, DsaReg.SWERR, VBAR0_WQCFG, VBAR0_WQCFG + 8, VBAR0_WQCFG + 10, VBAR0_WQCFG + 24),
);
const cmdValue = fc.record({ command: fc.integer({ min: 0, max: 31 }), operand: fc.oneof(fc.constantFrom(0, 1, 0x10001, 2), fc.integer({ min: 0, max: 0xfffff })), irq: fc.boolean() })
  .map(({ command, operand, irq }) => DsaCmd.encode({ COMMAND: command, OPERAND: operand, INT_REQ: irq ? 1 : 0 })[0] ?? 0);

const opArb = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant("bar0-write" as const), offset: bar0Offset, width, value: u32 }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant("cmd" as const), value: cmdValue }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("wqcfg" as const), pasid: fc.constantFrom(0, G, 202, 7), en: fc.boolean(), priv: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("bar0-read" as const), offset: bar0Offset, width }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant("cfg-write" as const), offset: fc.oneof(fc.integer({ min: 0, max: 4100 }), fc.constantFrom(4, 0x4c, 0x104, 0x106, 0x10c)), width, value: u32 }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("cfg-read" as const), offset: fc.integer({ min: 0, max: 4100 }), width }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("portal" as const), offset: fc.oneof(fc.constantFrom(0, 64, 0x1000, 0x2000), fc.integer({ min: 0, max: VDCM_PORTAL_SIZE })), bytes: fc.uint8Array({ minLength: 0, maxLength: 80 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("free" as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("rebind" as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("work" as const) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("enable" as const) }) },
);
type Op = typeof opArb extends fc.Arbitrary<infer T> ? T : never;

/** Two VMs, each with an mdev on a dedicated WQ (VM 1 also on the shared one), VM 1 with guest PASID 101 bound and programmed. */
function world() {
  const r = vdcmRig();
  const u1 = vmmUser("vm1");
  const u2 = vmmUser("vm2", 0x4_0000_0000);
  const m1 = r.vdcm.createMdev("m1", r.wq(0), { vm: asVmId(1), mm: u1.mm });
  const m2 = r.vdcm.createMdev("m2", r.wq(1), { vm: asVmId(2), mm: u2.mm });
  const m3 = r.vdcm.createMdev("m3", r.wq(2), { vm: asVmId(1), mm: u1.mm });
  const vm1 = openMdev(r.vfio, u1, m1);
  const vm2 = openMdev(r.vfio, u2, m2, asVmId(2));
  const set1 = r.ioasid.findSetByToken(u1.mm);
  if (set1 === null) throw new Error("no set");
  const bind = (): void => {
    if (r.ioasid.snapshot().ids.some((i) => i.set === set1.id && i.spid === G && i.state === "ACTIVE")) return;
    const id = allocPasid(vm1.container) as Ioasid;
    r.ioasid.attachSpid(set1, id, asSpid(G));
  };
  bind();
  // VM 2 has a PASID of its own, with no guest PASID 101: VM 1's must never resolve there.
  allocPasid(vm2.container);
  // VM 1's guest starts with its WQ programmed.
  if (vm1.guest.programWq(G) !== 0) throw new Error("VM 1 could not program its WQ");
  return { r, u1, u2, m1, m2, m3, vm1, vm2, set1, bind };
}

function apply(w: ReturnType<typeof world>, op: Op, which: number): void {
  const vm = which === 0 ? w.vm1 : w.vm2;
  const f = vm.device;
  const bar0 = regionOffset(VfioPciRegion.BAR0);
  const cfg = regionOffset(VfioPciRegion.CONFIG);
  const le = (v: number, n: number) => Uint8Array.from({ length: n }, (_, i) => (i < 4 ? (v >>> (8 * i)) & 0xff : 0));
  switch (op.kind) {
    case "bar0-write":
      guarded(() => f.pwrite(bar0 + op.offset, le(op.value, op.width)));
      return;
    case "cmd":
      guarded(() => f.pwrite(bar0 + DsaReg.CMD, le(op.value, 4)));
      return;
    case "wqcfg":
      guarded(() => vm.guest.writePasid(op.pasid, op.en, op.priv));
      return;
    case "bar0-read":
      guarded(() => f.pread(bar0 + op.offset, op.width));
      return;
    case "cfg-write":
      guarded(() => f.pwrite(cfg + op.offset, le(op.value, op.width)));
      return;
    case "cfg-read":
      guarded(() => f.pread(cfg + op.offset, op.width));
      return;
    case "portal":
      guarded(() => f.pwrite(regionOffset(VDCM_PORTAL_REGION) + op.offset, op.bytes));
      return;
    case "free":
      for (const i of w.r.ioasid.snapshot().ids) if (i.set === w.set1.id && i.state === "ACTIVE") guarded(() => freePasid(w.vm1.container, i.id));
      return;
    case "rebind":
      guarded(() => w.bind());
      return;
    case "work":
      w.r.kernel.scheduler.drain();
      return;
    case "enable":
      guarded(() => {
        vm.guest.disableWq();
        vm.guest.programWq(G);
      });
      return;
  }
}

describe("guest and VMM accesses at random", () => {
  it("get bytes, counts, device errors or KernelErrors only; the WQs always hold what the VDCM holds references for; teardown leaves nothing", () => {
    const seen = new Map<string, number>();
    fc.assert(
      fc.property(fc.array(fc.tuple(opArb, fc.integer({ min: 0, max: 1 })), { minLength: 1, maxLength: 40 }), (ops) => {
        const w = world();
        w.r.kernel.trace.subscribe((e) => {
          if (e.kind.startsWith("vdcm.")) seen.set(e.kind, (seen.get(e.kind) ?? 0) + 1);
        });
        for (const [op, which] of ops) {
          apply(w, op, which);
          expect(vdcmViolations(w.r.vdcm, w.r.ioasid, w.r.wqs)).toEqual([]);
          // VM 2's WQ never holds one of VM 1's PASIDs.
          const p2 = w.r.wq(1).pasid;
          if (p2 !== null) expect(w.r.ioasid.info(p2 as number as Ioasid)?.set).not.toBe(w.set1);
        }
        w.r.kernel.scheduler.drain();
        expect(vdcmViolations(w.r.vdcm, w.r.ioasid, w.r.wqs)).toEqual([]);
        w.u1.exit();
        w.u2.exit();
        for (const m of w.r.vdcm.mdevs) w.r.vdcm.removeMdev(m);
        w.r.kernel.scheduler.drain();
        for (const q of w.r.wqs) if (q.mode === "dedicated") expect(q.pasid).toBeNull();
        expect(w.r.ioasid.allocated).toBe(0);
        expect(w.r.vdcm.vms).toBe(0);
      }),
      { numRuns: 150, seed: 0x5eed },
    );
    // The runs reached the paths that matter: programming, FREE's queued clearing, clearing.
    for (const k of ["vdcm.program", "vdcm.free-notified", "vdcm.clear"]) expect(seen.get(k) ?? 0, k).toBeGreaterThan(5);
  });
});

describe("the invariant check", () => {
  it("reports a WQ that holds a PASID behind the VDCM's back, and one whose ID was reclaimed under it", () => {
    const w = world();
    expect(vdcmViolations(w.r.vdcm, w.r.ioasid, w.r.wqs)).toEqual([]);
    w.vm1.guest.disableWq();
    w.r.wq(1).setPasid(w.r.wq(0).pasid ?? (5 as never));
    expect(vdcmViolations(w.r.vdcm, w.r.ioasid, w.r.wqs)).toHaveLength(1);
    w.r.wq(1).clearPasid();
    expect(w.vm1.guest.programWq(G)).toBe(0);
    const held = w.m1.programmed;
    if (held === null) throw new Error("not programmed");
    // Dropping the VDCM's reference by hand (what a lazy clearing would do) and freeing: the ID goes, the WQ still has it.
    w.r.ioasid.put(w.set1, held.hpasid as number as Ioasid);
    freePasid(w.vm1.container, held.hpasid);
    expect(vdcmViolations(w.r.vdcm, w.r.ioasid, w.r.wqs).length).toBeGreaterThan(0);
  });
});

