import { Kernel, TraceRecorder } from "@vsva/kernel";
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
