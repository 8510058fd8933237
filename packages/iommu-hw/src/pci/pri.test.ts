import { describe, expect, it } from "vitest";
import { TraceBus, TraceRecorder } from "@vsva/kernel";
import { makeRig } from "./testing/rig.js";

const PAGE = 0x1000;
const pattern = Uint8Array.of(0xa5);

function priStatus(ep: ReturnType<typeof makeRig>["ep"]): number {
  return ep.configRead(ep.config.offsets.pri + 6, 2);
}
const RF = 0x1;
const UPRGI = 0x2;
const STOPPED = 0x100;

describe("PRI round trip", () => {
  it("fault → page request → success response → the retried translation succeeds and the DMA completes", () => {
    const { iommu, ep, mem } = makeRig();
    ep.dma.setProgram({ pasid: 7, addr: 0x40_0000, length: 16, direction: "write", pattern });
    expect(ep.dma.trigger()).toBe("pageRequestPending");
    expect(iommu.pendingPageRequests).toEqual([
      { sid: ep.sid, pasid: 7, priv: false, exec: false, addr: 0x40_0000, read: false, write: true, lastInGroup: true, groupIndex: 0 },
    ]);
    expect(ep.pri?.outstanding).toBe(1);
    // The fault handler maps the page, then responds.
    iommu.map(7, 0x40_0000, { pa: 0x8000 });
    iommu.respond({ sid: ep.sid, pasid: 7, groupIndex: 0 }, "success");
    expect(ep.dma.result).toBe("ok");
    expect(mem.read8(0x8000)).toBe(0xa5);
    expect(mem.read8(0x800f)).toBe(0xa5);
    expect(ep.pri?.outstanding).toBe(0);
    expect(ep.pri?.stats).toMatchObject({ requests: 1, success: 1 });
  });

  it("asks for read access on a read DMA and for write access on a write to a read-only page", () => {
    const { iommu, ep } = makeRig();
    iommu.map(7, 0x1000, { pa: 0x8000, write: false });
    ep.dma.setProgram({ pasid: 7, addr: 0x1000, length: 4, direction: "read", buffer: new Uint8Array(4) });
    expect(ep.dma.trigger()).toBe("ok");
    ep.dma.setProgram({ pasid: 7, addr: 0x1000, length: 4, direction: "write", pattern });
    expect(ep.dma.trigger()).toBe("pageRequestPending");
    expect(iommu.pendingPageRequests[0]).toMatchObject({ addr: 0x1000, read: false, write: true });
    // COW-like resolution: writable now; the cached read-only entry is refetched, not trusted.
    iommu.map(7, 0x1000, { pa: 0x9000 });
    iommu.respond({ sid: ep.sid, pasid: 7, groupIndex: 0 }, "success");
    expect(ep.dma.result).toBe("ok");
    expect(ep.deviceTlb.peek(7, false, 0x1000)?.paBase).toBe(0x9000);
  });

  it("continues page by page: one request per faulting page", () => {
    const { iommu, ep } = makeRig();
    iommu.onPageRequest = (req, io) => {
      io.map(req.pasid, req.addr, { pa: 0x10_0000 + req.addr });
      io.respond(req, "success");
    };
    ep.dma.setProgram({ pasid: 2, addr: 0x3800, length: 3 * PAGE, direction: "write", pattern });
    expect(ep.dma.trigger()).toBe("ok");
    expect(iommu.allPageRequests.map((r) => r.addr)).toEqual([0x3000, 0x4000, 0x5000, 0x6000]);
    expect(iommu.allPageRequests.map((r) => r.groupIndex)).toEqual([0, 1, 2, 3]);
  });

  it("an invalid-request response completes the DMA with an error and no retry", () => {
    const { iommu, ep } = makeRig();
    ep.dma.setProgram({ pasid: 7, addr: 0x40_0000, length: 16, direction: "write", pattern });
    ep.dma.trigger();
    const translations = iommu.translations.length;
    iommu.respond({ sid: ep.sid, pasid: 7, groupIndex: 0 }, "invalid");
    expect(ep.dma.result).toBe("pageRequestInvalid");
    expect(iommu.translations.length).toBe(translations);
    expect(priStatus(ep) & (RF | UPRGI)).toBe(0);
  });

  it("a response failure sets Response Failure, abandons everything and stops issuing until re-enabled", () => {
    const { iommu, ep } = makeRig();
    ep.dma.setProgram({ pasid: 7, addr: 0x40_0000, length: 16, direction: "write", pattern });
    ep.dma.trigger();
    iommu.respond({ sid: ep.sid, pasid: 7, groupIndex: 0 }, "failure");
    expect(ep.dma.result).toBe("priResponseFailure");
    expect(priStatus(ep) & RF).toBe(RF);
    expect(ep.pri?.outstanding).toBe(0);
    // No new page requests while failed: the next fault is final.
    ep.dma.trigger();
    expect(ep.dma.result).toBe("translationFault");
    expect(iommu.allPageRequests).toHaveLength(1);
    // Later responses are ignored, not flagged unexpected.
    iommu.respond({ sid: ep.sid, pasid: 7, groupIndex: 0 }, "success");
    expect(priStatus(ep) & UPRGI).toBe(0);
    // Disable (stopped: nothing outstanding), re-enable: flags clear, PRI works again.
    const ctl = ep.config.offsets.pri + 4;
    ep.configWrite(ctl, 2, 0);
    expect(priStatus(ep) & STOPPED).toBe(STOPPED);
    ep.configWrite(ctl, 2, 1);
    expect(priStatus(ep) & (RF | STOPPED)).toBe(0);
    expect(ep.dma.trigger()).toBe("pageRequestPending");
  });

  it("sets Unexpected PRG Index for a response to a group that is not outstanding", () => {
    const { iommu, ep } = makeRig();
    iommu.respond({ sid: ep.sid, pasid: 7, groupIndex: 5 }, "success");
    expect(priStatus(ep) & UPRGI).toBe(UPRGI);
    expect(ep.pri?.stats.unexpected).toBe(1);
    ep.configWrite(ep.config.offsets.pri + 6, 2, UPRGI);
    expect(priStatus(ep) & UPRGI).toBe(0);
  });

  it("treats a response with the wrong PASID as unexpected when PRG Response PASID Required", () => {
    const { iommu, ep } = makeRig();
    ep.dma.setProgram({ pasid: 7, addr: 0x40_0000, length: 16, direction: "write", pattern });
    ep.dma.trigger();
    iommu.respond({ sid: ep.sid, pasid: 8, groupIndex: 0 }, "success");
    expect(priStatus(ep) & UPRGI).toBe(UPRGI);
    expect(ep.dma.result).toBe("pageRequestPending");
  });

  it("gives up after repeated success responses that do not make the page present", () => {
    const { iommu, ep } = makeRig({ dma: { maxPageRequestRetries: 2 } });
    iommu.onPageRequest = (req, io) => io.respond(req, "success");
    ep.dma.setProgram({ pasid: 7, addr: 0x40_0000, length: 16, direction: "write", pattern });
    expect(ep.dma.trigger()).toBe("translationFault");
    expect(iommu.allPageRequests).toHaveLength(2);
  });

  it("does not issue page requests while PRI is disabled", () => {
    const { iommu, ep } = makeRig({ enable: { pri: false } });
    ep.dma.setProgram({ pasid: 7, addr: 0x40_0000, length: 16, direction: "write", pattern });
    expect(ep.dma.trigger()).toBe("translationFault");
    expect(iommu.allPageRequests).toHaveLength(0);
  });

  it("does not use PRI when the IOMMU says the fault is not recoverable", () => {
    const { iommu, ep } = makeRig();
    iommu.priCapable = false;
    ep.dma.setProgram({ pasid: 7, addr: 0x40_0000, length: 16, direction: "write", pattern });
    expect(ep.dma.trigger()).toBe("translationFault");
    expect(iommu.allPageRequests).toHaveLength(0);
  });

  it("does not use PRI for untranslated requests (ATS disabled)", () => {
    const { iommu, ep } = makeRig({ enable: { ats: false } });
    ep.dma.setProgram({ pasid: 7, addr: 0x40_0000, length: 16, direction: "write", pattern });
    expect(ep.dma.trigger()).toBe("translationFault");
    expect(iommu.allPageRequests).toHaveLength(0);
  });
});

describe("PRI outstanding budget and control", () => {
  it("keeps at most the allocated number of requests outstanding; a waiting DMA proceeds when credit returns", () => {
    const { iommu, ep } = makeRig({ enable: { priAllocation: 1 } });
    // Another requester inside the function (say a second work queue) holds the only credit.
    const other: string[] = [];
    expect(ep.pri?.issue({ pasid: 1, priv: false, exec: false, addr: 0x9000, read: true, write: false }, (o) => other.push(o))).toBe("sent");
    ep.dma.setProgram({ pasid: 7, addr: 0x40_0000, length: 16, direction: "write", pattern });
    expect(ep.dma.trigger()).toBe("pageRequestPending");
    expect(iommu.allPageRequests).toHaveLength(1);
    expect(ep.pri?.issue({ pasid: 1, priv: false, exec: false, addr: 0xa000, read: true, write: false }, () => undefined)).toBe("noCredit");
    iommu.respond({ sid: ep.sid, pasid: 1, groupIndex: 0 }, "success");
    expect(other).toEqual(["success"]);
    expect(iommu.allPageRequests).toHaveLength(2);
    expect(iommu.allPageRequests[1]).toMatchObject({ pasid: 7, addr: 0x40_0000, groupIndex: 1 });
  });

  it("clamps an allocation above the capacity to the capacity", () => {
    const { ep } = makeRig({ pri: { outstandingCapacity: 2 }, enable: { priAllocation: 100 } });
    expect(ep.pri?.budget).toBe(2);
  });

  it("with a zero allocation cannot request pages at all", () => {
    const { iommu, ep } = makeRig({ enable: { priAllocation: 0 } });
    ep.dma.setProgram({ pasid: 7, addr: 0x40_0000, length: 16, direction: "write", pattern });
    expect(ep.dma.trigger()).toBe("translationFault");
    expect(iommu.allPageRequests).toHaveLength(0);
  });

  it("is Stopped only when disabled with nothing outstanding; Reset discards what is outstanding", () => {
    const { iommu, ep } = makeRig();
    const ctl = ep.config.offsets.pri + 4;
    ep.dma.setProgram({ pasid: 7, addr: 0x40_0000, length: 16, direction: "write", pattern });
    ep.dma.trigger();
    expect(priStatus(ep) & STOPPED).toBe(0);
    ep.configWrite(ctl, 2, 0); // disable with a request outstanding
    expect(priStatus(ep) & STOPPED).toBe(0);
    ep.configWrite(ctl, 2, 0x2); // Reset while disabled
    expect(priStatus(ep) & STOPPED).toBe(STOPPED);
    expect(ep.dma.result).toBe("priResponseFailure");
    iommu.respond({ sid: ep.sid, pasid: 7, groupIndex: 0 }, "success");
    expect(priStatus(ep) & UPRGI).toBe(UPRGI); // that group no longer exists
  });

  it("ignores Reset while enabled", () => {
    const { ep } = makeRig();
    ep.dma.setProgram({ pasid: 7, addr: 0x40_0000, length: 16, direction: "write", pattern });
    ep.dma.trigger();
    ep.configWrite(ep.config.offsets.pri + 4, 2, 0x3);
    expect(ep.pri?.outstanding).toBe(1);
    expect(ep.dma.result).toBe("pageRequestPending");
  });

  it("keeps a dropped request outstanding: the function cannot know the IOMMU lost it", () => {
    const { iommu, ep } = makeRig();
    iommu.acceptPageRequests = false;
    ep.dma.setProgram({ pasid: 7, addr: 0x40_0000, length: 16, direction: "write", pattern });
    expect(ep.dma.trigger()).toBe("pageRequestPending");
    expect(ep.pri?.stats.dropped).toBe(1);
    expect(ep.pri?.outstanding).toBe(1);
    // VT-d answers a dropped last-in-group request itself with success; the DMA retries.
    iommu.map(7, 0x40_0000, { pa: 0x8000 });
    iommu.respond({ sid: ep.sid, pasid: 7, groupIndex: 0 }, "success");
    expect(ep.dma.result).toBe("ok");
  });

  it("traces requests and responses with the device and PASID", () => {
    const trace = new TraceBus({ now: () => 0 });
    const rec = new TraceRecorder(trace);
    const { iommu, ep } = makeRig({ trace });
    ep.dma.setProgram({ pasid: 7, addr: 0x40_0000, length: 16, direction: "write", pattern });
    ep.dma.trigger();
    iommu.respond({ sid: ep.sid, pasid: 7, groupIndex: 0 }, "invalid");
    const req = rec.ofKind("pci.page-request");
    expect(req).toHaveLength(1);
    expect(req[0]?.ids).toEqual({ device: "00:04.0", hpasid: 7 });
    expect(rec.ofKind("pci.page-response")[0]?.payload).toEqual({ groupIndex: 0, code: "invalid", expected: true });
    expect(rec.ofKind("pci.dma-complete")[0]?.payload.result).toBe("pageRequestInvalid");
  });

  it("traces a request before a response the IOMMU gives synchronously", () => {
    const trace = new TraceBus({ now: () => 0 });
    const rec = new TraceRecorder(trace);
    const { iommu, ep } = makeRig({ trace });
    iommu.onPageRequest = (req, io) => io.respond(req, "invalid");
    ep.dma.setProgram({ pasid: 7, addr: 0x40_0000, length: 16, direction: "write", pattern });
    expect(ep.dma.trigger()).toBe("pageRequestInvalid");
    expect(rec.events.map((e) => e.kind)).toEqual(["pci.ats-translate", "pci.page-request", "pci.page-response", "pci.dma-complete"]);
  });
});

describe("stepwise DMA", () => {
  it("waits for the response, signals runnable, and resumes one page per step", () => {
    let runnable = 0;
    const { iommu, ep } = makeRig({ dma: { mode: "stepwise", onRunnable: () => runnable++ } });
    iommu.map(7, 0x1000, { pa: 0x8000 });
    ep.dma.setProgram({ pasid: 7, addr: 0x1000, length: 2 * PAGE, direction: "write", pattern });
    expect(ep.dma.trigger()).toBe("running");
    expect(ep.dma.step()).toBe(true);
    expect(ep.dma.bytesDone).toBe(PAGE);
    expect(ep.dma.step()).toBe(true);
    expect(ep.dma.result).toBe("pageRequestPending");
    expect(ep.dma.step()).toBe(false);
    iommu.map(7, 0x2000, { pa: 0x9000 });
    iommu.respond({ sid: ep.sid, pasid: 7, groupIndex: 0 }, "success");
    expect(runnable).toBe(1);
    expect(ep.dma.result).toBe("running");
    expect(ep.dma.step()).toBe(true);
    expect(ep.dma.result).toBe("ok");
  });
});
