import { Errno, KernelError, type TraceEventOfKind } from "@vsva/kernel";
import { errnoOf } from "@vsva/kernel/testing";
import { describe, expect, it } from "vitest";
import { PAGE_SIZE, Prot, type SvaBindOptions } from "@vsva/iommu-core";
import { type SvaHost, svaHost } from "@vsva/iommu-core/testing";

const VA = 0x10_0000_0000;

/** What a host holds for SVA besides the mock's own device contexts. */
function svaLeftovers(h: SvaHost) {
  return {
    bonds: h.core.sva.liveBonds,
    pasids: h.ioasid.allocated,
    pages: h.pages.live().filter((p) => !p.tag.startsWith("mock.")).length,
    entries: h.mock.svaEntries.size,
  };
}

const NOTHING = { bonds: 0, pasids: 0, pages: 0, entries: 0 };

function warnings(h: SvaHost): TraceEventOfKind<"sva.warn">[] {
  const out: TraceEventOfKind<"sva.warn">[] = [];
  h.kernel.trace.subscribe((e) => {
    if (e.kind === "sva.warn") out.push(e);
  });
  return out;
}

describe("SVA bind options are checked at bind", () => {
  const bad: [string, unknown][] = [
    ["a stop that is a number", { stop: 5 }],
    ["a stop that is a string", { stop: "stop" }],
    ["a stop that is null", { stop: null }],
    ["a stop that is an object", { stop: {} }],
    ["options that are null", null],
    ["options that are a number", 7],
  ];
  for (const [what, opts] of bad) {
    it(`refuses ${what} with EINVAL and changes nothing`, () => {
      const h = svaHost();
      const dev = h.svaDevice("dsa", 0);
      const mm = h.newMm("proc");
      const before = svaLeftovers(h);
      expect(errnoOf(() => h.core.sva.bindDevice(dev, mm, opts as SvaBindOptions))).toBe(Errno.EINVAL);
      expect(svaLeftovers(h)).toEqual(before);
      expect(mm.pasid).toBeNull();
      expect(mm.notifierCount).toBe(0);
      // The mm exits and is freed as if the bind had never been tried.
      mm.exit();
      expect(mm.state).toBe("freed");
      expect(svaLeftovers(h)).toEqual(NOTHING);
    });
  }

  it("refuses a bad stop on a second bind of a bond without touching its references", () => {
    const h = svaHost();
    const dev = h.svaDevice("dsa", 0);
    const mm = h.newMm("proc");
    const bond = h.core.sva.bindDevice(dev, mm);
    expect(errnoOf(() => h.core.sva.bindDevice(dev, mm, { stop: 1 } as unknown as SvaBindOptions))).toBe(Errno.EINVAL);
    expect(bond.users).toBe(1);
    h.core.sva.unbindDevice(bond);
    mm.exit();
    expect(mm.state).toBe("freed");
    expect(svaLeftovers(h)).toEqual(NOTHING);
  });

  it("refuses a bad stop for a group bind before binding any device", () => {
    const h = svaHost();
    const dev = h.svaDevice("dsa", 0);
    const mm = h.newMm("proc");
    const group = dev.group;
    expect(group).not.toBeNull();
    if (group === null) return;
    const before = svaLeftovers(h);
    expect(errnoOf(() => h.core.sva.bindGroup(group, mm, { stop: "x" } as unknown as SvaBindOptions))).toBe(Errno.EINVAL);
    expect(svaLeftovers(h)).toEqual(before);
    expect(h.mock.svaHistory).toEqual([]);
  });
});

describe("the SVA release at mm exit finishes whatever a callback does", () => {
  it("ends every bond, frees the PASID, the pages and the mm when a stop callback throws, and reports it", () => {
    const h = svaHost();
    const a = h.svaDevice("a", 0);
    const b = h.svaDevice("b", 1);
    const mm = h.newMm("proc");
    mm.mmap(VA, 4 * PAGE_SIZE, Prot.READ | Prot.WRITE, { populate: true });
    const warned = warnings(h);
    const stopped: string[] = [];
    const ba = h.core.sva.bindDevice(a, mm, {
      stop: () => {
        throw new TypeError("the device driver's stop crashed");
      },
    });
    const bb = h.core.sva.bindDevice(b, mm, { stop: () => stopped.push("b") });
    mm.exit();
    // The other owner was still told, and both entries were torn down.
    expect(stopped).toEqual(["b"]);
    expect(mm.state).toBe("exited");
    expect([ba.bondState, bb.bondState]).toEqual(["released", "released"]);
    expect(h.mock.svaEntries.size).toBe(0);
    expect(warned.map((e) => e.payload)).toEqual([{ mm: "proc", step: "stop callback", error: "TypeError: the device driver's stop crashed" }]);
    expect(h.kernel.log.lines.some((l) => l.message.includes("stop callback threw"))).toBe(true);
    h.core.sva.unbindDevice(ba);
    h.core.sva.unbindDevice(bb);
    expect(mm.state).toBe("freed");
    expect(svaLeftovers(h)).toEqual(NOTHING);
  });

  it("still tears the other bonds down when a driver's release throws", () => {
    const h = svaHost();
    const a = h.svaDevice("a", 0);
    const b = h.svaDevice("b", 1);
    const mm = h.newMm("proc");
    const svaBind = h.mock.svaBind.bind(h.mock);
    h.mock.svaBind = (dev, view) => {
      const ops = svaBind(dev, view);
      if (dev !== a) return ops;
      return {
        ...ops,
        release: () => {
          ops.release();
          throw new KernelError(Errno.EIO, "release flush timed out");
        },
      };
    };
    const warned = warnings(h);
    const ba = h.core.sva.bindDevice(a, mm);
    const bb = h.core.sva.bindDevice(b, mm);
    mm.exit();
    expect(mm.state).toBe("exited");
    expect([ba.bondState, bb.bondState]).toEqual(["released", "released"]);
    expect(h.mock.svaEntries.size).toBe(0);
    expect(warned.map((e) => e.payload.step)).toEqual(["driver release"]);
    h.core.sva.unbindDevice(bb);
    h.core.sva.unbindDevice(ba);
    expect(mm.state).toBe("freed");
    expect(svaLeftovers(h)).toEqual(NOTHING);
  });

  it("forgets the mm and drops its reference at the last unbind even when the driver's unbind throws", () => {
    const h = svaHost();
    const dev = h.svaDevice("dsa", 0);
    const mm = h.newMm("proc");
    const svaBind = h.mock.svaBind.bind(h.mock);
    h.mock.svaBind = (d, view) => {
      const ops = svaBind(d, view);
      return {
        ...ops,
        unbind: () => {
          ops.unbind();
          throw new Error("driver bug");
        },
      };
    };
    const warned = warnings(h);
    const bond = h.core.sva.bindDevice(dev, mm);
    h.core.sva.unbindDevice(bond);
    expect(bond.bondState).toBe("unbound");
    expect(mm.notifierCount).toBe(0);
    expect(warned.map((e) => e.payload.step)).toEqual(["driver unbind"]);
    mm.exit();
    expect(mm.state).toBe("freed");
    expect(svaLeftovers(h)).toEqual(NOTHING);
  });
});

describe("a device that goes away under its bonds", () => {
  it("ends the bonds, and each owner's later unbind only drops its reference", () => {
    const h = svaHost();
    const dev = h.svaDevice("dsa", 0);
    const mm = h.newMm("proc");
    const first = h.core.sva.bindDevice(dev, mm);
    const second = h.core.sva.bindDevice(dev, mm);
    expect(second).toBe(first);
    h.core.releaseDevice(dev);
    expect(first.bondState).toBe("unbound");
    expect(h.mock.svaEntries.size).toBe(0);
    expect(errnoOf(() => h.core.sva.unbindDevice(first))).toBe(0);
    expect(errnoOf(() => h.core.sva.unbindDevice(second))).toBe(0);
    // One unbind more than there were binds is still the caller's bug.
    expect(() => h.core.sva.unbindDevice(first)).toThrow(/no reference left/);
    mm.exit();
    expect(mm.state).toBe("freed");
    expect(svaLeftovers(h)).toEqual(NOTHING);
  });
});

describe("mm exit", () => {
  it("finishes exit_mmap and frees the mm when an mmu notifier's release throws, and logs it", () => {
    const h = svaHost();
    const mm = h.newMm("proc");
    mm.mmap(VA, 2 * PAGE_SIZE, Prot.READ | Prot.WRITE, { populate: true });
    const released: string[] = [];
    mm.registerNotifier({ invalidateRange: () => undefined, release: () => released.push("first") });
    mm.registerNotifier({
      invalidateRange: () => undefined,
      release: () => {
        throw new RangeError("notifier bug");
      },
    });
    mm.exit();
    expect(released).toEqual(["first"]);
    expect(mm.state).toBe("freed");
    expect(h.pages.live()).toEqual([]);
    expect(h.kernel.log.lines.map((l) => l.message)).toEqual(["proc: an mmu notifier's release threw (RangeError: notifier bug); exit continued"]);
  });
});
