import { describe, expect, it } from "vitest";
import type { VtdInterrupt } from "./options.js";
import { R, VtdRig } from "./testing/rig.js";

const FRCD0 = 0x400;
const F_BIT = 0x8000_0000; // FRCD dword 3 bit 31

/** A unit whose every request faults (root entry not present), with `n` fault-recording registers. */
function faulting(n: number): { rig: VtdRig; irqs: VtdInterrupt[]; fault: (addr: number) => void } {
  const irqs: VtdInterrupt[] = [];
  const rig = new VtdRig({ faultRecords: n, onInterrupt: (i) => irqs.push(i) }).bringUp();
  rig.unit.mmioWrite32(R.FEDATA, 0x21);
  rig.unit.mmioWrite32(R.FEADDR, 0xfee0_0000);
  return { rig, irqs, fault: (addr) => void rig.unit.translate({ sid: rig.dev, addr, write: true }) };
}

const fsts = (rig: VtdRig): { pfo: number; ppf: number; fri: number } => {
  const v = rig.unit.mmioRead32(R.FSTS);
  return { pfo: v & 1, ppf: (v >> 1) & 1, fri: (v >> 8) & 0xff };
};
const dw3 = (rig: VtdRig, i: number): number => rig.unit.mmioRead32(FRCD0 + 16 * i + 12) >>> 0;

describe("primary fault recording", () => {
  it("fills records in order, sets PPF with FRI at the first, and records a write as T=0", () => {
    const { rig, fault } = faulting(4);
    fault(0x1000);
    fault(0x2000);
    expect(fsts(rig)).toEqual({ pfo: 0, ppf: 1, fri: 0 });
    expect(dw3(rig, 0) & F_BIT).not.toBe(0);
    expect(dw3(rig, 1) & F_BIT).not.toBe(0);
    expect(dw3(rig, 0) & (1 << 30)).toBe(0);
    expect(rig.unit.mmioRead32(FRCD0 + 16)).toBe(0x2000);
  });

  it("overflows into PFO when the next record is still pending, and drops the fault", () => {
    const { rig, fault } = faulting(2);
    fault(0x1000);
    fault(0x2000);
    fault(0x3000);
    expect(fsts(rig)).toEqual({ pfo: 1, ppf: 1, fri: 0 });
    expect(rig.unit.mmioRead32(FRCD0)).toBe(0x1000);
  });

  it("clearing F (RW1C on the top dword) moves FRI to the next pending record and clears PPF at the end", () => {
    const { rig, fault } = faulting(4);
    fault(0x1000);
    fault(0x2000);
    rig.unit.mmioWrite32(FRCD0 + 12, F_BIT);
    expect(fsts(rig)).toEqual({ pfo: 0, ppf: 1, fri: 1 });
    rig.unit.mmioWrite32(FRCD0 + 16 + 12, F_BIT);
    expect(fsts(rig).ppf).toBe(0);
    // A write of 0 to F changes nothing; the record's other fields are read-only.
    fault(0x3000);
    rig.unit.mmioWrite32(FRCD0 + 16 * 2 + 12, 0);
    rig.unit.mmioWrite32(FRCD0 + 16 * 2, 0xffff_ffff);
    expect(dw3(rig, 2) & F_BIT).not.toBe(0);
    expect(rig.unit.mmioRead32(FRCD0 + 32)).toBe(0x3000);
  });

  it("raises the fault event once while faults are pending; masked, it stays pending in IP until unmasked", () => {
    const { rig, irqs, fault } = faulting(4);
    fault(0x1000);
    expect(irqs).toEqual([]); // FECTL.IM=1 out of reset
    expect(rig.unit.mmioRead32(R.FECTL) >>> 0).toBe(0xc000_0000);
    rig.unit.mmioWrite32(R.FECTL, 0);
    expect(irqs).toEqual([{ source: "fault", addr: 0xfee0_0000, data: 0x21 }]);
    fault(0x2000);
    expect(irqs).toHaveLength(1);
    // Service everything, then a new fault interrupts again.
    rig.unit.mmioWrite32(FRCD0 + 12, F_BIT);
    rig.unit.mmioWrite32(FRCD0 + 16 + 12, F_BIT);
    fault(0x3000);
    expect(irqs).toHaveLength(2);
  });

  it("drops a pending, masked event once software has serviced every fault", () => {
    const { rig, irqs, fault } = faulting(4);
    fault(0x1000);
    rig.unit.mmioWrite32(FRCD0 + 12, F_BIT);
    expect(rig.unit.mmioRead32(R.FECTL) >>> 0).toBe(0x8000_0000);
    rig.unit.mmioWrite32(R.FECTL, 0);
    expect(irqs).toEqual([]);
  });
});
