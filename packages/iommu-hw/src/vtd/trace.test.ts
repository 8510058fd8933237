import { Scheduler, TraceBus, TraceRecorder } from "@vsva/kernel";
import { describe, expect, it } from "vitest";
import { PRQ_BASE, R, VtdRig, desc } from "./testing/rig.js";
import { FakeEndpoint } from "../pci/testing/fake-endpoint.js";

describe("trace events of the VT-d unit", () => {
  it("emits faults (with why they were not recorded), invalidations, queue errors, page requests and responses", () => {
    const sched = new Scheduler();
    const bus = new TraceBus(sched);
    const rec = new TraceRecorder(bus);
    const rig = new VtdRig({ trace: bus, name: "dmar0" }).bringUp();
    rig.device();
    rig.setPasid(4, { pgtt: 1, did: 2, flptr: rig.alloc(), fpd: true });
    rig.unit.attachEndpoint(new FakeEndpoint(rig.dev));
    rig.setReg64(R.PQA, BigInt(PRQ_BASE));

    rig.unit.translate({ sid: rig.dev, pasid: 4, addr: 0x1000, write: true });
    rig.unit.translate({ sid: rig.dev, pasid: 5, addr: 0x1000, write: false });
    rig.unit.pageRequest({ sid: rig.dev, pasid: 4, priv: false, exec: false, addr: 0x1000, read: true, write: false, lastInGroup: true, groupIndex: 1 });
    rig.submit(desc.pasidIotlb(2, 2, 4), desc.pageResponse(rig.dev, 1, 0, 4), [0xfn, 0n]);

    expect(rec.ofKind("vtd.fault").map((e) => [e.payload.reason, e.payload.recorded, e.payload.suppressed, e.ids.hpasid])).toEqual([
      [0x71, false, "fpd", 4],
      [0x59, true, null, 5],
    ]);
    expect(rec.ofKind("vtd.page-request").map((e) => e.payload.outcome)).toEqual(["queued"]);
    expect(rec.ofKind("vtd.invalidation").map((e) => [e.payload.unit, e.payload.type, e.payload.did, e.payload.pasid])).toEqual([["dmar0", "pasid-iotlb", 2, 4]]);
    expect(rec.ofKind("vtd.page-response").map((e) => [e.payload.code, e.payload.auto])).toEqual([["success", false]]);
    expect(rec.ofKind("vtd.queue-error").map((e) => e.payload.iqei)).toEqual([3]);
    expect(rec.events.every((e) => e.actor === "HW")).toBe(true);
  });
});
