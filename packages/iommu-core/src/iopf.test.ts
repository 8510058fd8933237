import { type HostPasid, asHostPasid } from "@vsva/kernel";
import { describe, expect, it } from "vitest";
import { Prot } from "./mm/prot.js";
import type { PageRequestFault } from "./ops.js";
import { PAGE_SIZE } from "./page-alloc.js";
import { svaHost } from "./testing/index.js";

const VA = 0x7000_0000;

function rig() {
  const h = svaHost();
  const dev = h.svaDevice("dsa", 0);
  const mm = h.newMm("proc");
  mm.mmap(VA, 4 * PAGE_SIZE, Prot.READ | Prot.WRITE);
  mm.mmap(VA + 8 * PAGE_SIZE, PAGE_SIZE, Prot.READ);
  const bond = h.core.sva.bindDevice(dev, mm);
  let mmFaults = 0;
  h.kernel.trace.subscribe((e) => {
    if (e.kind === "mm.fault") mmFaults++;
  });
  const req = (addr: number, grpid: number, last: boolean, over: Partial<PageRequestFault> = {}): PageRequestFault => ({
    pasid: bond.pasid,
    addr,
    read: true,
    write: false,
    exec: false,
    priv: false,
    grpid,
    last,
    ...over,
  });
  const responses = () => h.mock.responses.map((r) => r.response);
  return { h, dev, mm, bond, req, responses, mmFaults: () => mmFaults };
}

describe("IO page fault queue", () => {
  it("resolves a group against the bound mm in a work item and answers success", () => {
    const { h, dev, mm, bond, req, responses } = rig();
    h.kernel.scheduler.atomic.run("prq interrupt", () => {
      expect(h.core.reportPageRequest(dev, req(VA, 5, false, { write: true }))).toBe(true);
      expect(h.core.reportPageRequest(dev, req(VA + 2 * PAGE_SIZE, 5, true))).toBe(true);
    });
    expect(mm.residentPages).toBe(0); // nothing happens in the interrupt
    expect(h.core.iopf.queuedGroups).toBe(1);
    h.kernel.scheduler.runUntilIdle();
    expect(responses()).toEqual([{ pasid: bond.pasid, grpid: 5, code: "success" }]);
    expect(mm.lookup(VA)?.prot.write).toBe(true);
    expect(mm.lookup(VA + 2 * PAGE_SIZE)).not.toBeNull();
    expect(mm.residentPages).toBe(2);
  });

  it("answers invalid when any fault of the group cannot be resolved, and stops at it", () => {
    const { h, dev, mm, req, responses } = rig();
    h.core.reportPageRequest(dev, req(VA + 8 * PAGE_SIZE, 1, false, { write: true })); // read-only VMA
    h.core.reportPageRequest(dev, req(VA, 1, true));
    h.core.reportPageRequest(dev, req(VA + 20 * PAGE_SIZE, 2, true)); // no VMA
    h.kernel.scheduler.runUntilIdle();
    expect(responses().map((r) => [r.grpid, r.code])).toEqual([
      [1, "invalid"],
      [2, "invalid"],
    ]);
    expect(mm.residentPages).toBe(0);
  });

  it("answers an unknown PASID, a request without PASID and a privileged request invalid without touching the mm", () => {
    const { h, dev, req, responses, mmFaults } = rig();
    h.core.reportPageRequest(dev, req(VA, 1, true, { pasid: asHostPasid(77) }));
    h.core.reportPageRequest(dev, req(VA, 2, true, { pasid: undefined }));
    h.core.reportPageRequest(dev, req(VA, 3, true, { priv: true }));
    h.kernel.scheduler.runUntilIdle();
    expect(responses().map((r) => [r.grpid, r.pasid, r.code])).toEqual([
      [1, 77, "invalid"],
      [2, undefined, "invalid"],
      [3, 1, "invalid"],
    ]);
    expect(mmFaults()).toBe(0);
  });

  it("answers a dying mm's queued groups invalid without touching it", () => {
    const { h, dev, mm, bond, req, responses, mmFaults } = rig();
    h.core.reportPageRequest(dev, req(VA, 4, true));
    mm.exit(); // release flushes the PASID's queue
    expect(responses()).toEqual([{ pasid: bond.pasid, grpid: 4, code: "invalid" }]);
    h.kernel.scheduler.runUntilIdle();
    expect(responses().length).toBe(1);
    expect(mmFaults()).toBe(0);
  });

  it("still resolves faults while another user keeps the mm after its task exits (exit_mmap waits for that user)", () => {
    const { h, dev, mm, req, responses, mmFaults } = rig();
    h.core.reportPageRequest(dev, req(VA, 4, true));
    // Another user holds the mm while the task exits: exit_mmap waits for it.
    expect(mm.mmgetNotZero()).toBe(true);
    mm.exit();
    h.kernel.scheduler.runUntilIdle();
    expect(responses()[0]?.code).toBe("success");
    expect(mmFaults()).toBe(1);
    mm.mmput(); // now exit_mmap runs
    expect(mm.state).toBe("exited");
  });

  it("flushes at unbind: partial groups are dropped, complete ones answered invalid", () => {
    const { h, dev, bond, req, responses, mmFaults } = rig();
    h.core.reportPageRequest(dev, req(VA, 6, false));
    h.core.reportPageRequest(dev, req(VA, 7, true));
    h.core.sva.unbindDevice(bond);
    expect(h.core.iopf.partialGroups).toBe(0);
    expect(responses()).toEqual([{ pasid: bond.pasid, grpid: 7, code: "invalid" }]);
    h.core.reportPageRequest(dev, req(VA, 6, true)); // the rest of group 6, after the unbind
    h.kernel.scheduler.runUntilIdle();
    expect(responses()[1]).toEqual({ pasid: bond.pasid, grpid: 6, code: "invalid" });
    expect(mmFaults()).toBe(0);
  });

  it("answers a group invalid when one of its requests could not be recorded", () => {
    const { h, dev, req, responses } = rig();
    h.kernel.faults.failPoint("iommu.iopf-alloc");
    expect(h.core.reportPageRequest(dev, req(VA, 9, false))).toBe(false);
    expect(h.core.reportPageRequest(dev, req(VA + PAGE_SIZE, 9, true))).toBe(true);
    h.kernel.scheduler.runUntilIdle();
    expect(responses()).toEqual([{ pasid: 1 as HostPasid, grpid: 9, code: "invalid" }]);
  });

  it("never throws on garbage from a driver", () => {
    const { h, dev, req, responses } = rig();
    expect(h.core.reportPageRequest(dev, req(VA, 512, true))).toBe(false);
    expect(h.core.reportPageRequest(dev, req(VA, -1, true))).toBe(false);
    expect(h.core.reportPageRequest(dev, req(Number.NaN, 1, true))).toBe(true);
    expect(h.core.reportPageRequest(dev, req(2 ** 60, 2, true, { exec: true }))).toBe(true);
    const stranger = h.core.addSubDevice(dev, "mdev");
    expect(h.core.reportPageRequest(stranger, req(VA, 3, true))).toBe(false);
    h.kernel.scheduler.runUntilIdle();
    expect(responses().map((r) => [r.grpid, r.code])).toEqual([
      [1, "invalid"],
      [2, "invalid"],
    ]);
  });

  it("answers what is queued when the device goes away, and takes nothing from it after", () => {
    const { h, dev, bond, req, responses, mmFaults } = rig();
    h.core.reportPageRequest(dev, req(VA, 1, true));
    h.core.reportPageRequest(dev, req(VA, 2, true, { pasid: undefined }));
    h.core.releaseDevice(dev);
    expect(responses()).toEqual([
      { pasid: bond.pasid, grpid: 1, code: "invalid" },
      { pasid: undefined, grpid: 2, code: "invalid" },
    ]);
    expect(h.core.reportPageRequest(dev, req(VA, 3, true))).toBe(false);
    h.kernel.scheduler.runUntilIdle();
    expect(responses().length).toBe(2);
    expect(mmFaults()).toBe(0);
  });
});
