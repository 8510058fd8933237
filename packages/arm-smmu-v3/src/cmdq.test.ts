import { Errno, isKernelError } from "@vsva/kernel";
import { errnoOf } from "@vsva/kernel/testing";
import { Cr0Reg, SmmuReg } from "@vsva/iommu-hw";
import { describe, expect, it } from "vitest";
import { SmmuTestHost } from "./testing.js";

/** A page of 0xff bytes: every slot an unknown opcode, so the unit stops on each with CERROR_ILL. */
const GARBAGE = 0x20_0000;

/** Points the running unit's command queue at a page of garbage behind the driver's back (CMDQEN off, CMDQ_BASE, CMDQEN on). */
function rewriteCmdqBase(h: SmmuTestHost): void {
  h.mem.writeBytes(GARBAGE, new Uint8Array(4096).fill(0xff));
  const cr0 = h.unit.mmioRead32(SmmuReg.CR0);
  const off = Cr0Reg.alloc();
  off[0] = cr0;
  Cr0Reg.set(off, "CMDQEN", 0);
  h.unit.mmioWrite32(SmmuReg.CR0, off[0]);
  const base = h.unit.mmioRead64(SmmuReg.CMDQ_BASE);
  // Same size and attributes, another address.
  h.unit.mmioWrite64(SmmuReg.CMDQ_BASE, (base & ~0xffff_ffffn) | BigInt((Number(base & 0xfffn) | GARBAGE) >>> 0));
  h.unit.mmioWrite32(SmmuReg.CR0, cr0);
}

/** Fails a driver that polls forever, instead of hanging the run. */
function guardReads(h: SmmuTestHost): void {
  let reads = 0;
  const read32 = h.unit.mmioRead32.bind(h.unit);
  h.unit.mmioRead32 = (offset) => {
    if (++reads > 1_000_000) throw new Error("the driver is still polling after a million register reads");
    return read32(offset);
  };
}

describe("the command queue wait is bounded, whatever the unit does", () => {
  it("times out with ETIMEDOUT when the unit raises CERROR on every command it reads", () => {
    const h = new SmmuTestHost();
    rewriteCmdqBase(h);
    guardReads(h);
    let error: unknown = null;
    try {
      h.drv.hw.cmdq.submit([]);
    } catch (e) {
      error = e;
    }
    expect(isKernelError(error, Errno.ETIMEDOUT)).toBe(true);
    const message = error instanceof Error ? error.message : "";
    // The refused commands are counted, only the first few are named: the report stays small.
    expect(message).toMatch(/refused meanwhile: .* and \d+ more$/);
    expect(message.length).toBeLessThan(1000);
    expect(h.drv.hw.cmdq.stats.errors).toBeGreaterThan(8);
  });

  it("keeps the driver's teardown paths returning: a flush is logged, not hung", () => {
    const h = new SmmuTestHost();
    const ep = h.endpoint();
    const dev = h.probe(ep);
    rewriteCmdqBase(h);
    guardReads(h);
    expect(errnoOf(() => h.core.releaseDevice(dev))).toBe(0);
    expect(h.kernel.log.lines.some((l) => l.message.includes("timed out"))).toBe(true);
    h.drv.shutdown();
    expect(h.pages.live()).toEqual([]);
  });
});
