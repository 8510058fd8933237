import { describe, expect, it } from "vitest";
import { Prot } from "@vsva/iommu-core";
import { type HostScenarioDef, runHostScenario } from "./host-scenario.js";

/** A process bound with a stop callback that crashes, then exits while bound. */
const crashingStop: HostScenarioDef = {
  name: "crashing-stop",
  summary: "a device driver's stop callback throws at mm exit",
  title: "crashing stop callback",
  body(ctx) {
    const h = ctx.host;
    const slot = ctx.step("plug in dsa0", () => h.addDevice("dsa0", 4));
    ctx.step("enable SVA", () => h.enableSva(slot));
    const mm = ctx.step("P maps a buffer", () => {
      const m = h.newMm("P");
      m.mmap(null, 0x1000, Prot.READ | Prot.WRITE, { populate: true });
      return m;
    });
    const bond = ctx.step("P's driver binds with a stop callback", () =>
      h.core.sva.bindDevice(slot.dev, mm, {
        stop: () => {
          throw new TypeError("the driver's stop crashed");
        },
      }),
    );
    ctx.step("P exits while bound", () => mm.exit());
    ctx.step("P's driver unbinds", () => h.core.sva.unbindDevice(bond));
  },
};

describe("a host scenario run", () => {
  it("reports a WARN from a teardown step as a violation, and still ends with nothing leaked", () => {
    const r = runHostScenario(crashingStop, { seed: 1 });
    expect(r.error).toBeNull();
    expect(r.violations).toEqual(["WARN: P's stop callback threw (TypeError: the driver's stop crashed); the teardown went on without it"]);
  });
});
