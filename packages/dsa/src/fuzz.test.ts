import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { KernelError } from "@vsva/kernel";
import { DsaDesc, DsaOpcode, DsaReg, DescFlag } from "./regs.js";
import { bringUp, dsaCommand, makeDsaRig } from "./testing/index.js";

/** Pages every PASID (and requests without PASID) see identity-mapped, so a device write at a VA lands at the same PA. */
const MAPPED = 0x10_000;
const PAGE = 0x1000;
const CHECKED = MAPPED + 4 * PAGE;

const addrArb = fc.oneof(
  fc.integer({ min: 0, max: MAPPED + PAGE }),
  fc.integer({ min: 0, max: 2 ** 53 - 1 }),
  fc.constantFrom(0, MAPPED - 32, MAPPED - 1, PAGE - 8),
);

const descArb = fc.record({
  raw: fc.uint8Array({ minLength: 64, maxLength: 64 }),
  opcode: fc.oneof(fc.constantFrom(DsaOpcode.NOOP, DsaOpcode.MEMMOVE, DsaOpcode.MEMFILL, DsaOpcode.COMPARE, DsaOpcode.BATCH), fc.integer({ min: 0, max: 255 })),
  flags: fc.oneof(fc.constantFrom(DescFlag.CRAV | DescFlag.RCR, DescFlag.CRAV | DescFlag.RCR | DescFlag.BOF, 0, DescFlag.RCR), fc.integer({ min: 0, max: 0xff_ffff })),
  pasid: fc.constantFrom(0, 1, 2, 3),
  compl: addrArb,
  src: addrArb,
  dst: addrArb,
  size: fc.oneof(fc.integer({ min: 0, max: 3 * PAGE }), fc.integer({ min: 0, max: 0xffff_ffff })),
  keepRaw: fc.boolean(),
});

const actionArb = fc.oneof(
  fc.record({ kind: fc.constant("submit" as const), wq: fc.integer({ min: 0, max: 3 }), enq: fc.boolean(), d: descArb }),
  fc.record({ kind: fc.constant("mmio" as const), offset: fc.oneof(fc.integer({ min: 0, max: 0xfff }), fc.constantFrom(DsaReg.CMD, DsaReg.SWERR, DsaReg.GENCFG, 0x800, 0x808, 0x828)), value: fc.integer({ min: 0, max: 0xffff_ffff }), wide: fc.boolean() }),
  fc.record({ kind: fc.constant("cmd" as const), command: fc.integer({ min: 0, max: 15 }), operand: fc.integer({ min: 0, max: 0xfffff }) }),
  fc.record({ kind: fc.constant("respond" as const), code: fc.constantFrom("success" as const, "invalid" as const, "failure" as const) }),
  fc.record({ kind: fc.constant("step" as const), n: fc.integer({ min: 1, max: 8 }) }),
);

interface Range {
  readonly lo: number;
  readonly hi: number;
}

/** The bytes a descriptor may write: its destination (move, fill) and its completion record. */
function allowedBy(bytes: Uint8Array): Range[] {
  const d = DsaDesc.alloc();
  new Uint8Array(d.buffer).set(bytes);
  const op = DsaDesc.get(d, "OPCODE");
  const out: Range[] = [];
  const compl = DsaDesc.get(d, "COMPL_HI") * 2 ** 32 + DsaDesc.get(d, "COMPL_LO");
  out.push({ lo: compl, hi: compl + 32 });
  if (op === DsaOpcode.MEMMOVE || op === DsaOpcode.MEMFILL) {
    const dst = DsaDesc.get(d, "DST_HI") * 2 ** 32 + DsaDesc.get(d, "DST_LO");
    out.push({ lo: dst, hi: dst + DsaDesc.get(d, "XFER_SIZE") });
  }
  return out;
}

type DescIn = typeof descArb extends fc.Arbitrary<infer T> ? T : never;

function encode(d: DescIn): Uint8Array {
  if (d.keepRaw) return d.raw;
  const v = DsaDesc.alloc();
  new Uint8Array(v.buffer).set(d.raw);
  DsaDesc.set(v, "OPCODE", d.opcode);
  DsaDesc.set(v, "FLAGS", d.flags);
  DsaDesc.set(v, "PASID", d.pasid);
  DsaDesc.set(v, "COMPL_LO", d.compl % 2 ** 32);
  DsaDesc.set(v, "COMPL_HI", Math.floor(d.compl / 2 ** 32));
  DsaDesc.set(v, "SRC_LO", d.src % 2 ** 32);
  DsaDesc.set(v, "SRC_HI", Math.floor(d.src / 2 ** 32));
  DsaDesc.set(v, "DST_LO", d.dst % 2 ** 32);
  DsaDesc.set(v, "DST_HI", Math.floor(d.dst / 2 ** 32));
  DsaDesc.set(v, "XFER_SIZE", d.size);
  return new Uint8Array(v.buffer).slice();
}

describe("fuzz: random descriptors and register writes", () => {
  it("give only defined outcomes and never write outside a descriptor's destination or completion record", () => {
    fc.assert(
      fc.property(fc.boolean(), fc.array(actionArb, { maxLength: 40 }), (stepwise, actions) => {
        const r = makeDsaRig(stepwise ? { mode: "stepwise" } : {});
        for (let va = 0; va < MAPPED; va += PAGE) for (const p of [undefined, 1, 2]) r.iommu.map(p, va, { pa: va });
        const initial = Uint8Array.from({ length: CHECKED }, (_, i) => (i * 31 + 7) & 0xff);
        r.mem.writeBytes(0, initial);
        bringUp(r.dev, [
          { mode: "dedicated", size: 4, pasid: 1, bof: true },
          { mode: "shared", size: 4, bof: true },
          { mode: "dedicated", size: 4 },
          { mode: "shared", size: 2 },
        ]);
        const allowed: Range[] = [];
        for (const a of actions) {
          try {
            switch (a.kind) {
              case "submit": {
                const bytes = encode(a.d);
                allowed.push(...allowedBy(bytes));
                if (a.enq) expect(["accepted", "retry"]).toContain(r.dev.enqcmd(a.wq, bytes));
                else r.dev.movdir64b(a.wq, bytes);
                break;
              }
              case "mmio":
                if (a.wide) r.dev.mmioWrite64(a.offset, BigInt(a.value) * 0x1_0000_0001n);
                else r.dev.mmioWrite32(a.offset, a.value);
                break;
              case "cmd":
                dsaCommand(r.dev, a.command, a.operand);
                break;
              case "respond": {
                const req = r.iommu.pendingPageRequests[0];
                if (req !== undefined) r.iommu.respond(req, a.code);
                break;
              }
              case "step":
                for (let i = 0; i < a.n; i++) r.dev.step();
                break;
            }
          } catch (e) {
            if (!(e instanceof KernelError)) throw e;
          }
        }
        // Let whatever can finish finish.
        for (let i = 0; i < 1000 && r.dev.step(); i++);
        const now = new Uint8Array(CHECKED);
        r.mem.readBytes(0, now);
        for (let i = 0; i < CHECKED; i++) {
          if (now[i] !== initial[i] && !allowed.some((g) => i >= g.lo && i < g.hi)) {
            throw new Error(`device wrote byte 0x${i.toString(16)} outside every destination and completion record`);
          }
        }
      }),
      { numRuns: 200 },
    );
  });
});
