import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { KernelError } from "@vsva/kernel";
import { Prot } from "@vsva/iommu-core";
import { DescFlag, DsaDevice, DsaOpcode, encodeDescriptor } from "@vsva/dsa";
import { pciEnableForSva } from "@vsva/iommu-hw";
import { Idxd, type IdxdUserFile, UserThread, openUserWq } from "./index.js";
import { svaMockBoard } from "./testing/index.js";

/**
 * The driver against a misbehaving device: some register reads return
 * garbage (a device that lies about its capabilities, a CMDSTS stuck active
 * or reporting any error, WQCFG reading back anything). Probe, open, submit,
 * close and remove may fail, but only with a KernelError; remove and close
 * never throw at all; the driver never loops forever (a command stuck active
 * ends in ETIMEDOUT).
 */
const BUF = 0x5000_0000;

describe("idxd against a device whose register reads lie", () => {
  it("only KernelErrors come out; close and remove never throw; no bond is left after remove", () => {
    const outcomes = { failed: 0, ok: 0 };
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 0xffff_ffff }), { minLength: 1, maxLength: 32 }),
        fc.integer({ min: 1, max: 12 }),
        fc.integer({ min: 0, max: 400 }),
        (garbage, every, skip) => {
          const board = svaMockBoard();
          const hw = new DsaDevice({ bus: 0, dev: 7, fn: 0, mem: board.mem });
          pciEnableForSva(hw.ep);
          hw.ep.attach(board.port);
          const iommuDev = board.probe(hw.ep, "dsa9");
          // After `skip` honest reads, every `every`-th read returns the next garbage value.
          let reads = 0;
          const lie = (real: number): number => {
            reads++;
            return reads > skip && reads % every === 0 ? (garbage[reads % garbage.length] ?? 0) : real;
          };
          const r32 = hw.mmioRead32.bind(hw);
          const r64 = hw.mmioRead64.bind(hw);
          hw.mmioRead32 = (off) => lie(r32(off));
          hw.mmioRead64 = (off) => {
            const v = r64(off);
            return (BigInt(lie(Number(v >> 32n))) << 32n) | BigInt(lie(Number(v & 0xffff_ffffn)));
          };
          const mm = board.newMm("P");
          mm.mmap(BUF, 0x2000, Prot.READ | Prot.WRITE, { populate: true });
          const files: IdxdUserFile[] = [];
          let idxd: Idxd | null = null;
          try {
            idxd = Idxd.probe({ kernel: board.kernel, core: board.core, iommuDev, hw, commandRounds: 4, config: { wqs: [{ mode: "dedicated", size: 4, type: "user" }, { mode: "shared", size: 4, type: "user" }] } });
            for (const wq of [0, 1]) {
              const f = openUserWq(idxd, wq, new UserThread(mm));
              files.push(f);
              f.submit(encodeDescriptor({ opcode: DsaOpcode.MEMMOVE, flags: DescFlag.CRAV | DescFlag.RCR, completionAddr: BUF + 0x1000, src: BUF, dst: BUF + 0x800, size: 0x100 }));
              f.readCompletion(BUF + 0x1000);
            }
            outcomes.ok++;
          } catch (e) {
            expect(e).toBeInstanceOf(KernelError);
            outcomes.failed++;
          }
          for (const f of files) f.close();
          idxd?.remove();
          expect(board.core.sva.liveBonds).toBe(0);
        },
      ),
      { numRuns: 150 },
    );
    // The lies bite in some runs and miss in others: both paths were taken.
    expect(outcomes.failed).toBeGreaterThan(10);
    expect(outcomes.ok).toBeGreaterThan(0);
  });
});
