import { describe, expect, it } from "vitest";
import { Errno, Scheduler, isKernelError } from "@vsva/kernel";
import { DmaWorker } from "./dma-worker.js";
import { makeRig } from "./testing/rig.js";

const PAGE = 0x1000;
const pattern = Uint8Array.of(0x11);

describe("DmaWorker", () => {
  it("moves one page per work item, a page per nsPerPage of virtual time", () => {
    const sched = new Scheduler();
    const wq = sched.createWorkqueue("dev");
    const { iommu, ep } = makeRig({ dma: { mode: "stepwise" } });
    for (let p = 0; p < 4; p++) iommu.map(1, p * PAGE, { pa: 0x10_000 + p * PAGE });
    const worker = new DmaWorker(ep.dma, wq, { nsPerPage: 100 });
    ep.dma.setProgram({ pasid: 1, addr: 0, length: 4 * PAGE, direction: "write", pattern });
    expect(worker.start()).toBe("running");
    expect(sched.drain()).toBe(0); // nothing is due yet
    sched.advance(100);
    sched.drain();
    expect(ep.dma.bytesDone).toBe(PAGE);
    sched.runUntilIdle();
    expect(ep.dma.result).toBe("ok");
    expect(sched.now()).toBe(400);
  });

  it("queues nothing while blocked on a page request and resumes on the response", () => {
    const sched = new Scheduler();
    const wq = sched.createWorkqueue("dev");
    const { iommu, ep } = makeRig({ dma: { mode: "stepwise" } });
    const worker = new DmaWorker(ep.dma, wq);
    ep.dma.setProgram({ pasid: 1, addr: 0x8000, length: 8, direction: "write", pattern });
    worker.start();
    sched.runUntilIdle();
    expect(ep.dma.result).toBe("pageRequestPending");
    expect(sched.pending()).toBe(0);
    iommu.map(1, 0x8000, { pa: 0x20_000 });
    iommu.respond({ sid: ep.sid, pasid: 1, groupIndex: 0 }, "success");
    expect(sched.pending()).toBe(1);
    sched.runUntilIdle();
    expect(ep.dma.result).toBe("ok");
  });

  it("needs a stepwise engine", () => {
    const sched = new Scheduler();
    const { ep } = makeRig();
    let err: unknown;
    try {
      new DmaWorker(ep.dma, sched.createWorkqueue("dev"));
    } catch (e) {
      err = e;
    }
    expect(isKernelError(err, Errno.EINVAL)).toBe(true);
  });
});
