import { Kernel, TraceRecorder, asVmId } from "@vsva/kernel";
import "@vsva/kvm-pasid";
import "@vsva/vdcm";
import { expect, it } from "vitest";
import { rowsFromEvents } from "./events.js";

it("puts a guest kernel's events in lanes of their own, named by context and the emitting layer's actor", () => {
  const host = new Kernel();
  const vm1 = new Kernel({ system: host, context: "vm1" });
  const rec = new TraceRecorder(host.trace, { system: true });
  host.log.warn("a", "host warning", "IOMMU");
  vm1.log.warn("b", "guest warning", "IOMMU");
  host.faults.failPoint("x");
  expect(() => host.faults.inject("x")).toThrow();
  expect(rowsFromEvents(rec.events, 1).map((r) => r.actor)).toEqual(["IOMMU", "vm1 IOMMU", "KERNEL"]);
});

it("names the VM, the PASIDs (and the mdev) of KVM's and the VDCM's rows, which carry them as IDs only", () => {
  const k = new Kernel();
  const rec = new TraceRecorder(k.trace);
  k.trace.emit("kvm.pasid.install", "KVM", { vm: asVmId(1), gpasid: 101, hpasid: 7 }, {}, 3);
  k.trace.emit("vdcm.program", "VDCM", { vm: asVmId(1), device: "mdev0", gpasid: 101, hpasid: 7 }, { source: "guest-pasid", priv: false }, 4);
  expect(rowsFromEvents(rec.events, 1).map((r) => r.text)).toEqual(["kvm.pasid.install VM 1 hpasid=7 gpasid=101", "vdcm.program VM 1 mdev0 hpasid=7 gpasid=101"]);
});
