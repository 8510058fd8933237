import { asSpid, Errno, type Ioasid, isKernelError, Kernel } from "@vsva/kernel";
import type { IoasidSet } from "@vsva/ioasid";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { kvmTestHost, startKvm } from "./testing/host.js";

/**
 * Random IOASID operation sequences on the VM's set (so random BIND, UNBIND
 * and FREE notifications reach KVM, including the set dying and the token's
 * next set appearing) interleaved with random guest IA32_PASID writes and
 * ENQCMD/ENQCMDS. Nothing may throw but a KernelError. After every step, what
 * memory holds (read as the CPU would) must be exactly the bound pairs the
 * IOASID core reports — guest PASID (the SPID, when ENQCMD can carry it) to
 * host PASID of each ACTIVE ID of the VM's current set — each such ID must
 * carry exactly one reference more than its owner's, and ENQCMD's answer must
 * follow from those pairs alone.
 */
type Op =
  | { op: "alloc" }
  | { op: "attach"; idx: number; g: number }
  | { op: "detach" | "free"; idx: number }
  | { op: "setPut" }
  | { op: "enqcmd" | "wrmsr"; msr: bigint | number }
  | { op: "enqcmds"; pasid: number };

const VALID = 0x8000_0000;
// Guest PASIDs at the edges of the structure: both directories, first/last entries, neighbours sharing a table, one too wide.
const gArb = fc.oneof(fc.constantFrom(0, 1, 2, 1023, 1024, 0x7_ffff, 0x8_0000, 0x8_0001, 0xf_ffff, 0x10_0000), fc.integer({ min: 0, max: 0xf_ffff }));
const msrArb = fc.oneof(
  gArb.map((g) => VALID + g),
  gArb,
  fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
  fc.bigInt({ min: -(1n << 70n), max: 1n << 70n }),
  fc.integer({ min: -(2 ** 31), max: 2 ** 33 }),
  fc.double(),
);
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 3, arbitrary: fc.constant({ op: "alloc" as const }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant("attach" as const), idx: fc.nat(7), g: gArb }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constantFrom("detach" as const, "free" as const), idx: fc.nat(7) }) },
  { weight: 1, arbitrary: fc.constant({ op: "setPut" as const }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constantFrom("enqcmd" as const, "wrmsr" as const), msr: msrArb }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("enqcmds" as const), pasid: fc.integer({ min: -1, max: 0x10_0001 }) }) },
);

function kernelErrnoOr<T>(fn: () => T): T | number {
  try {
    return fn();
  } catch (e) {
    if (isKernelError(e)) return e.errno;
    throw e;
  }
}

describe("KVM's translation structure under random notifications and guest input", () => {
  it("always holds exactly the bound pairs, and ENQCMD answers from them", () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 30 }), (ops) => {
        const kernel = new Kernel();
        const host = kvmTestHost(kernel, 64);
        const { ioasid, pool } = host;
        const mm = {};
        const kvm = startKvm(host, mm);
        let set: IoasidSet = ioasid.allocSet(mm, 8, "mm");
        let ids: Ioasid[] = [];

        const bound = (): Map<number, number> => {
          const out = new Map<number, number>();
          for (const i of ioasid.snapshot().ids) {
            if (i.set === set.id && i.state === "ACTIVE" && i.spid !== null && i.spid <= 0xf_ffff) out.set(i.spid, i.id);
          }
          return out;
        };

        for (const o of ops) {
          const pairs = bound();
          switch (o.op) {
            case "alloc":
              kernelErrnoOr(() => ids.push(ioasid.alloc(set, 1, ioasid.capacity)));
              break;
            case "attach": {
              const id = ids[o.idx % Math.max(ids.length, 1)];
              if (id !== undefined) kernelErrnoOr(() => ioasid.attachSpid(set, id, asSpid(o.g)));
              break;
            }
            case "detach":
            case "free": {
              const id = ids[o.idx % Math.max(ids.length, 1)];
              if (id === undefined) break;
              kernelErrnoOr(() => (o.op === "detach" ? ioasid.detachSpid(set, id) : ioasid.free(set, id)));
              break;
            }
            case "setPut":
              ioasid.setPut(set);
              set = ioasid.allocSet(mm, 8, "mm");
              ids = [];
              break;
            case "wrmsr": {
              const r = kernelErrnoOr(() => kvm.wrmsrPasid(o.msr));
              if (typeof r === "number") expect(r).toBe(Errno.EINVAL);
              break;
            }
            case "enqcmd":
            case "enqcmds": {
              const r = kernelErrnoOr(() => ("msr" in o ? kvm.enqcmd(o.msr) : kvm.enqcmds(o.pasid)));
              if (typeof r === "number") {
                expect(r).toBe(Errno.EINVAL);
                break;
              }
              const valid = !("msr" in o) || (BigInt(o.msr) & BigInt(VALID)) !== 0n;
              const g = "msr" in o ? Number(BigInt(o.msr) & 0xf_ffffn) : o.pasid;
              if (!valid) expect(r).toMatchObject({ ok: false, fault: { kind: "GP" } });
              else if (pairs.has(g)) expect(r).toMatchObject({ ok: true, guestPasid: g, hostPasid: pairs.get(g) });
              else expect(r).toMatchObject({ ok: false, fault: { kind: "VMEXIT", exitReason: o.op === "enqcmd" ? 72 : 73, guestPasid: g } });
              break;
            }
          }
          const now = bound();
          expect(kvm.readTable()).toEqual(now);
          expect(kvm.references).toBe(now.size);
          expect(pool.inUse).toBe(kvm.pages);
          for (const i of ioasid.snapshot().ids) {
            if (i.state === "ACTIVE") expect(i.refcount).toBe(1 + (now.get(i.spid ?? -1) === i.id ? 1 : 0));
          }
        }
        kvm.destroy();
        ioasid.setPut(set);
        expect(pool.inUse).toBe(0);
        expect(ioasid.allocated).toBe(0);
      }),
      { numRuns: 150 },
    );
  });
});
