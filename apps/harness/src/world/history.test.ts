import { describe, expect, it } from "vitest";
import { Errno } from "@vsva/kernel";
import { errnoOf } from "@vsva/kernel/testing";
import { Prot } from "@vsva/iommu-core";
import { Host } from "./host.js";
import { InvariantChecker } from "./invariants.js";
import { PATTERN, dmaWrite, mmResolver } from "../scenarios/sva-common.js";

/** One process life on the host: bind, DMA `dmas` times, unbind, exit. */
function cycle(h: Host, slot: ReturnType<Host["addDevice"]>, dmas: number): void {
  const mm = h.newMm("P");
  const buf = mm.mmap(null, 0x1000, Prot.READ | Prot.WRITE, { populate: true });
  const bond = h.core.sva.bindDevice(slot.dev, mm);
  for (let i = 0; i < dmas; i++) expect(dmaWrite(h, slot, bond.pasid, buf, PATTERN)).toBe("ok");
  h.core.sva.unbindDevice(bond);
  mm.exit();
  h.settle();
}

/** What the host retains from past cycles. */
function retained(h: Host) {
  return { mms: h.mms.length, records: h.port.records.length, logLines: h.kernel.log.lines.length, pages: h.pages.live().length, pasids: h.ioasid.allocated };
}

describe("a long run's retained history", () => {
  for (const platform of ["vtd", "smmuv3"] as const) {
    it(`stays the same from cycle 100 to cycle 400 of bind/DMA/unbind/exit (${platform})`, () => {
      const h = new Host({ platform, dmaRecords: 64 });
      const slot = h.addDevice("dsa0", 4);
      h.enableSva(slot);
      for (let i = 0; i < 100; i++) cycle(h, slot, 3);
      const early = retained(h);
      for (let i = 0; i < 300; i++) cycle(h, slot, 3);
      expect(retained(h)).toEqual(early);
      // Freed processes are let go; the recorder holds its ring and no more.
      expect(early.mms).toBe(0);
      expect(early.records).toBe(64);
    });
  }

  it("refuses a DMA ring of no records with EINVAL", () => {
    for (const dmaRecords of [0, 2.5]) {
      const h = new Host({ dmaRecords, deferBringUp: true });
      expect(errnoOf(() => h.bringUp())).toBe(Errno.EINVAL);
      // The platform it had booted is taken down again.
      expect({ up: h.up, pages: h.pages.live() }).toEqual({ up: false, pages: [] });
    }
  });

  it("keeps everything when the run asks for its history", () => {
    const h = new Host({ history: true });
    const slot = h.addDevice("dsa0", 4);
    h.enableSva(slot);
    for (let i = 0; i < 30; i++) cycle(h, slot, 2);
    expect(h.mms.length).toBe(30);
    expect(h.mms.every((mm) => mm.state === "freed")).toBe(true);
    // Every translation the IOMMU answered (at least one per process: the device TLB serves repeats).
    expect(h.port.mark()).toBeGreaterThanOrEqual(30);
    expect(h.port.records.map((r) => r.seq)).toEqual(Array.from({ length: h.port.mark() }, (_, i) => i + 1));
  });

  it("keeps the latest records in order, and the invariant checker reports the ones it could not check", () => {
    const h = new Host({ dmaRecords: 4 });
    const slot = h.addDevice("dsa0", 4);
    h.enableSva(slot);
    const checker = new InvariantChecker(h);
    const mm = h.newMm("P");
    const buf = mm.mmap(null, 16 * 0x1000, Prot.READ | Prot.WRITE, { populate: true });
    const bond = h.core.sva.bindDevice(slot.dev, mm);
    checker.bind(bond.pasid, mmResolver(mm));
    // Each DMA to a page of its own: a translation (and a record) each.
    for (let i = 0; i < 3; i++) dmaWrite(h, slot, bond.pasid, buf + i * 0x1000, PATTERN);
    expect(h.port.mark()).toBe(3);
    expect(checker.check()).toEqual([]);
    for (let i = 3; i < 13; i++) dmaWrite(h, slot, bond.pasid, buf + i * 0x1000, PATTERN);
    expect(h.port.mark()).toBe(13);
    const seqs = h.port.records.map((r) => r.seq);
    expect(seqs).toHaveLength(4);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    expect(seqs.at(-1)).toBe(h.port.mark());
    expect(checker.check()).toEqual([`6 DMA translations went unchecked: the recording ring overwrote them before this check`]);
    h.core.sva.unbindDevice(bond);
    mm.exit();
  });
});
