import { pciEnableForSva } from "../pci/pci-enable.js";
import { describe, expect, it } from "vitest";
import type { PageRequest } from "../iommu-port.js";
import { PciEndpoint } from "../pci/endpoint.js";
import type { VtdInterrupt } from "./options.js";
import { PRQ_BASE, R, VtdRig, desc } from "./testing/rig.js";
import { FakeEndpoint } from "../pci/testing/fake-endpoint.js";

const PASID = 77;
const DID = 4;
const FRCD0 = 0x400;

function prqRig(opts: ConstructorParameters<typeof VtdRig>[0] = {}): { rig: VtdRig; root: number; irqs: VtdInterrupt[] } {
  const irqs: VtdInterrupt[] = [];
  const rig = new VtdRig({ ...opts, onInterrupt: (i) => irqs.push(i) }).bringUp();
  rig.device();
  const root = rig.alloc();
  rig.setPasid(PASID, { pgtt: 1, did: DID, flptr: root });
  rig.setReg64(R.PQA, BigInt(PRQ_BASE)); // PQS=0: one page, 128 descriptors
  rig.setReg64(R.PQH, 0n);
  rig.setReg64(R.PQT, 0n);
  rig.unit.mmioWrite32(R.PEDATA, 0x55);
  rig.unit.mmioWrite32(R.PEADDR, 0xfee0_1000);
  rig.unit.mmioWrite32(R.PECTL, 0);
  return { rig, root, irqs };
}

const pr = (rig: VtdRig, o: Partial<PageRequest> = {}): PageRequest => ({
  sid: rig.dev, pasid: PASID, priv: false, exec: false, addr: 0x5000, read: true, write: true, lastInGroup: true, groupIndex: 3, ...o,
});

describe("page-request queue", () => {
  it("writes the 256-bit descriptor at PQT, advances PQT, sets PPR and raises the event", () => {
    const { rig, irqs } = prqRig();
    expect(rig.unit.pageRequest(pr(rig, { groupIndex: 0x1a5, addr: 0x7f00_1234_5000, priv: true }))).toBe(true);
    const qw0 = rig.r64(PRQ_BASE);
    const qw1 = rig.r64(PRQ_BASE + 8);
    // The page-request descriptor (VT-d spec chapter 7), hand-decoded.
    expect(Number(qw0 & 0xffn)).toBe(1);
    expect(Number((qw0 >> 8n) & 1n)).toBe(1); // PP
    expect(Number((qw0 >> 16n) & 0xffffn)).toBe(rig.dev);
    expect(Number((qw0 >> 32n) & 0xfffffn)).toBe(PASID);
    expect(Number((qw0 >> 53n) & 1n)).toBe(1); // PM
    expect(Number(qw1 & 7n)).toBe(0b111); // RD, WR, LPIG
    expect(Number((qw1 >> 3n) & 0x1ffn)).toBe(0x1a5);
    expect(qw1 & ~0xfffn).toBe(0x7f00_1234_5000n);
    expect(rig.reg64(R.PQT)).toBe(32n);
    expect(rig.unit.mmioRead32(R.PRS) & 1).toBe(1);
    expect(irqs).toEqual([{ source: "page-request", addr: 0xfee0_1000, data: 0x55 }]);
    // A second request while PPR is pending raises no new event.
    rig.unit.pageRequest(pr(rig));
    expect(irqs).toHaveLength(1);
  });

  it("when full sets PRS.PRO, drops the request and answers a last-in-group request with success itself", () => {
    const { rig } = prqRig();
    const ep = new FakeEndpoint(rig.dev);
    rig.unit.attachEndpoint(ep);
    for (let i = 0; i < 127; i++) expect(rig.unit.pageRequest(pr(rig, { lastInGroup: false }))).toBe(true);
    expect(rig.unit.pageRequest(pr(rig, { lastInGroup: false }))).toBe(false);
    expect(ep.responses).toEqual([]);
    expect(rig.unit.pageRequest(pr(rig, { groupIndex: 9 }))).toBe(false);
    expect(rig.unit.mmioRead32(R.PRS) & 2).toBe(2);
    expect(ep.responses).toEqual([{ sid: rig.dev, pasid: PASID, groupIndex: 9, code: "success" }]);
    // Software drains: once PQH moves, requests are queued again.
    rig.setReg64(R.PQH, 32n * 10n);
    expect(rig.unit.pageRequest(pr(rig))).toBe(true);
  });

  it("refuses a request from a context with PRE=0: fault 0x47 recorded, invalid response for the group", () => {
    const { rig } = prqRig();
    rig.setContext(rig.dev, { pre: false });
    const ep = new FakeEndpoint(rig.dev);
    rig.unit.attachEndpoint(ep);
    expect(rig.unit.pageRequest(pr(rig))).toBe(false);
    expect(Number((rig.reg64(FRCD0 + 8) >> 32n) & 0xffn)).toBe(0x47);
    expect(ep.responses).toEqual([{ sid: rig.dev, pasid: PASID, groupIndex: 3, code: "invalid" }]);
    expect(rig.reg64(R.PQT)).toBe(0n);
  });

  it("a unit without PRS refuses every page request", () => {
    const rig = new VtdRig({ pageRequests: false }).bringUp();
    rig.device({ pre: false });
    expect(rig.unit.pageRequest(pr(rig, { lastInGroup: false }))).toBe(false);
    expect(rig.unit.mmioRead32(R.PRS)).toBe(0);
  });

  it("round trip with the PCIe endpoint: DMA to a missing page, page request, software maps it and responds, DMA completes", () => {
    const { rig, root } = prqRig();
    const ep = new PciEndpoint({
      bus: 0, dev: 2, fn: 0, mem: rig.mem, id: { vendorId: 0x8086, deviceId: 0x0b25 },
      pasid: { maxWidth: 20, exec: true, priv: true }, ats: {}, pri: { outstandingCapacity: 32 },
    });
    pciEnableForSva(ep);
    ep.attach(rig.unit);
    rig.unit.attachEndpoint(ep);

    const pattern = new Uint8Array([0xde, 0xad, 0xbe, 0xef]);
    ep.dma.setProgram({ pasid: PASID, addr: 0x5000, length: 16, direction: "write", pattern });
    expect(ep.dma.trigger()).toBe("pageRequestPending");
    expect(rig.reg64(R.PQT)).toBe(32n);
    const qw1 = rig.r64(PRQ_BASE + 8);
    expect(qw1 & ~0xfffn).toBe(0x5000n);
    const prgi = Number((qw1 >> 3n) & 0x1ffn);

    // The fault handler: map the page, consume the request, respond through the invalidation queue.
    rig.flMap(root, 0x5000, 0x000a_0000);
    rig.setReg64(R.PQH, 32n);
    rig.unit.mmioWrite32(R.PRS, 1);
    rig.submit(desc.pageResponse(rig.dev, prgi, 0, PASID));
    expect(ep.dma.result).toBe("ok");
    expect(rig.mem.read32(0x000a_0000)).toBe(0xefbeadde);
  });
});
