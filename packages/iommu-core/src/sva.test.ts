import { Errno, type TraceEvent } from "@vsva/kernel";
import { describe, expect, it } from "vitest";
import { Prot } from "./mm/prot.js";
import { PAGE_SIZE } from "./page-alloc.js";
import { type SvaHost, svaHost } from "./testing/index.js";
import { errnoOf } from "@vsva/kernel/testing";

const VA = 0x10_0000_0000;

/** Only what the IOMMU side holds (device contexts, default domains) may remain once every mm and bond is gone. */
function onlyContextsLeft(h: SvaHost): boolean {
  return h.pages.live().every((p) => p.tag.startsWith("mock."));
}

describe("svaBindDevice", () => {
  it("programs the mm's page-table root and PASID through the driver", () => {
    const h = svaHost();
    const dev = h.svaDevice("dsa", 0);
    const mm = h.newMm("proc");
    const bond = h.core.sva.bindDevice(dev, mm);
    expect(bond.pasid).toBe(1);
    expect(mm.pasid).toBe(1);
    const entry = h.mock.svaEntries.get(`dsa/${bond.pasid}`);
    expect(entry?.mm).toMatchObject({ pgd: mm.pgd, levels: 4, pasid: bond.pasid, name: "proc" });
    expect(h.ioasid.info(bond.pasid as number as Parameters<typeof h.ioasid.info>[0])?.private).toBe(mm);
  });

  it("gives an mm one PASID for all its devices, and each mm its own", () => {
    const h = svaHost();
    const a = h.svaDevice("a", 0);
    const b = h.svaDevice("b", 1);
    const mm1 = h.newMm("p1");
    const mm2 = h.newMm("p2");
    const a1 = h.core.sva.bindDevice(a, mm1);
    const b1 = h.core.sva.bindDevice(b, mm1);
    const a2 = h.core.sva.bindDevice(a, mm2);
    expect(b1.pasid).toBe(a1.pasid);
    expect(a2.pasid).not.toBe(a1.pasid);
    expect(h.ioasid.allocated).toBe(2);
  });

  it("counts a second bind of the same device and mm on one bond, and tears down at the last unbind", () => {
    const h = svaHost();
    const dev = h.svaDevice("dsa", 0);
    const mm = h.newMm("proc");
    const first = h.core.sva.bindDevice(dev, mm);
    const second = h.core.sva.bindDevice(dev, mm);
    expect(second).toBe(first);
    expect(first.users).toBe(2);
    expect(h.mock.svaHistory.length).toBe(1);
    h.core.sva.unbindDevice(first);
    expect(h.mock.svaEntries.size).toBe(1);
    h.core.sva.unbindDevice(first);
    expect(h.mock.svaEntries.size).toBe(0);
    expect(first.bondState).toBe("unbound");
    expect(mm.notifierCount).toBe(0);
    expect(() => h.core.sva.unbindDevice(first)).toThrow(/no reference left/);
    // The PASID stays with the mm for its life: a new bind reuses it.
    expect(mm.pasid).toBe(first.pasid);
    expect(h.core.sva.bindDevice(dev, mm).pasid).toBe(first.pasid);
  });

  it("frees the PASID and every page when the mm is finally dropped", () => {
    const h = svaHost();
    const dev = h.svaDevice("dsa", 0);
    const mm = h.newMm("proc");
    const bond = h.core.sva.bindDevice(dev, mm);
    mm.mmap(VA, 4 * PAGE_SIZE, Prot.READ | Prot.WRITE, { populate: true });
    h.core.sva.unbindDevice(bond);
    expect(h.ioasid.allocated).toBe(1);
    mm.exit();
    expect(mm.state).toBe("freed");
    expect(h.ioasid.allocated).toBe(0);
    expect(onlyContextsLeft(h)).toBe(true);
  });

  it("refuses with EOVERFLOW, changing nothing, when the mm's PASID is beyond the device's limit", () => {
    const h = svaHost();
    const wide = h.svaDevice("wide", 0);
    const narrow = h.svaDevice("narrow", 1, { maxPasid: 2 }); // PASID 1 only
    const mm1 = h.newMm("p1");
    const mm2 = h.newMm("p2");
    h.core.sva.bindDevice(wide, mm1);
    h.core.sva.bindDevice(wide, mm2);
    expect(mm2.pasid).toBe(2);
    const before = { allocated: h.ioasid.allocated, entries: h.mock.svaEntries.size, count: mm2.count, notifiers: mm2.notifierCount };
    expect(errnoOf(() => h.core.sva.bindDevice(narrow, mm2))).toBe(Errno.EOVERFLOW);
    expect({ allocated: h.ioasid.allocated, entries: h.mock.svaEntries.size, count: mm2.count, notifiers: mm2.notifierCount }).toEqual(before);
    expect(h.core.sva.bondOf(narrow, mm2)).toBeNull();
    expect(h.core.sva.bindDevice(narrow, mm1).pasid).toBe(1);
  });

  it("allocates a new mm's PASID under the binding device's limit, ENOSPC when none is left", () => {
    const h = svaHost();
    const narrow = h.svaDevice("narrow", 0, { maxPasid: 2 });
    const mm1 = h.newMm("p1");
    const mm2 = h.newMm("p2");
    h.core.sva.bindDevice(narrow, mm1);
    expect(errnoOf(() => h.core.sva.bindDevice(narrow, mm2))).toBe(Errno.ENOSPC);
    expect(mm2.pasid).toBeNull();
    expect(h.ioasid.allocated).toBe(1);
    const single = h.svaDevice("single", 1, { maxPasid: 1 }); // PASID 0 is never for SVA
    expect(errnoOf(() => h.core.sva.bindDevice(single, mm2))).toBe(Errno.ENOSPC);
  });

  it("is ENOSPC when the SVA set's quota is used up", () => {
    const h = svaHost({ svaPasidQuota: 1 });
    const dev = h.svaDevice("dsa", 0);
    h.core.sva.bindDevice(dev, h.newMm("p1"));
    expect(errnoOf(() => h.core.sva.bindDevice(dev, h.newMm("p2")))).toBe(Errno.ENOSPC);
  });

  it("refuses devices without SVA, sub-devices and dying mms", () => {
    const h = svaHost();
    const plain = h.core.probeDevice(h.iommu, { name: "plain", sid: 0x100 as never, pasidWidth: 20 });
    const mm = h.newMm("proc");
    expect(errnoOf(() => h.core.sva.bindDevice(plain, mm))).toBe(Errno.ENODEV);
    const dev = h.svaDevice("dsa", 0);
    const sub = h.core.addSubDevice(dev, "mdev0");
    expect(errnoOf(() => h.core.sva.bindDevice(sub, mm))).toBe(Errno.EINVAL);
    h.core.releaseDevice(plain);
    expect(errnoOf(() => h.core.sva.bindDevice(plain, mm))).toBe(Errno.ENODEV);
    mm.mmgrab();
    mm.exit();
    expect(errnoOf(() => h.core.sva.bindDevice(dev, mm))).toBe(Errno.EINVAL);
    expect(mm.pasid).toBeNull();
  });

  it("forwards the mm's invalidations to every bound device", () => {
    const h = svaHost();
    const a = h.svaDevice("a", 0);
    const b = h.svaDevice("b", 1);
    const mm = h.newMm("proc");
    mm.mmap(VA, 4 * PAGE_SIZE, Prot.READ | Prot.WRITE, { populate: true });
    const ba = h.core.sva.bindDevice(a, mm);
    h.core.sva.bindDevice(b, mm);
    mm.munmap(VA, PAGE_SIZE);
    mm.mprotect(VA + PAGE_SIZE, PAGE_SIZE, Prot.READ);
    const ranges = [
      [VA, VA + PAGE_SIZE],
      [VA + PAGE_SIZE, VA + 2 * PAGE_SIZE],
    ];
    expect(h.mock.svaEntries.get(`a/${ba.pasid}`)?.flushes).toEqual(ranges);
    expect(h.mock.svaEntries.get(`b/${ba.pasid}`)?.flushes).toEqual(ranges);
  });

  it("keeps SVA enabled while bonds exist (EBUSY), and ends bonds when the device goes away", () => {
    const h = svaHost();
    const dev = h.svaDevice("dsa", 0);
    const mm = h.newMm("proc");
    const bond = h.core.sva.bindDevice(dev, mm);
    expect(errnoOf(() => h.core.disableFeature(dev, "sva"))).toBe(Errno.EBUSY);
    h.core.releaseDevice(dev);
    expect(h.mock.svaEntries.size).toBe(0);
    expect(bond.bondState).toBe("unbound");
    expect(mm.notifierCount).toBe(0);
    mm.exit();
    expect(h.ioasid.allocated).toBe(0);
    expect(h.pages.stats.livePages).toBe(0);
  });
});

describe("exit before unbind (DESIGN native-exit-before-unbind)", () => {
  it("stops the device, releases every PASID entry with faults off while the tables still translate, and leaves unbind nothing to do", () => {
    const h = svaHost();
    const a = h.svaDevice("a", 0);
    const b = h.svaDevice("b", 1);
    const mm = h.newMm("proc");
    mm.mmap(VA, 2 * PAGE_SIZE, Prot.READ | Prot.WRITE);
    mm.write(VA, new Uint8Array([1, 2, 3]));
    const log: string[] = [];
    const unsubscribe = h.kernel.trace.subscribe((e: TraceEvent) => {
      if (e.kind === "sva.release" || e.kind === "mm.exit" || e.kind === "mm.free" || e.kind === "sva.unbind") log.push(e.kind);
    });
    const stop = (which: string) => () => {
      log.push(`stop ${which} (mapped: ${String(mm.lookup(VA) !== null)}, entries: ${h.mock.svaEntries.size})`);
    };
    const ba = h.core.sva.bindDevice(a, mm, { stop: stop("a") });
    const bb = h.core.sva.bindDevice(b, mm, { stop: stop("b") });
    mm.exit();
    expect(log).toEqual(["stop a (mapped: true, entries: 2)", "stop b (mapped: true, entries: 2)", "sva.release", "mm.exit"]);
    expect(h.mock.svaEntries.size).toBe(0);
    expect(h.mock.svaHistory.every((e) => e.released)).toBe(true);
    expect([ba.bondState, bb.bondState]).toEqual(["released", "released"]);
    expect(mm.state).toBe("exited"); // the bonds keep the struct (and the PASID)
    expect(h.ioasid.allocated).toBe(1);
    // The owners unbind later: nothing reaches the driver (the mock would call a second teardown a bug).
    h.core.sva.unbindDevice(ba);
    h.core.sva.unbindDevice(bb);
    unsubscribe();
    expect(log.slice(4)).toEqual(["sva.unbind", "sva.unbind", "mm.free"]);
    expect(h.ioasid.allocated).toBe(0);
    expect(onlyContextsLeft(h)).toBe(true);
  });

  it("answers page requests of the released PASID invalid without touching the mm", () => {
    const h = svaHost();
    const dev = h.svaDevice("dsa", 0);
    const mm = h.newMm("proc");
    mm.mmap(VA, PAGE_SIZE, Prot.READ | Prot.WRITE);
    const bond = h.core.sva.bindDevice(dev, mm);
    mm.exit();
    let faults = 0;
    h.kernel.trace.subscribe((e) => {
      if (e.kind === "mm.fault") faults++;
    });
    h.core.reportPageRequest(dev, { pasid: bond.pasid, addr: VA, read: true, write: false, exec: false, priv: false, grpid: 3, last: true });
    h.kernel.scheduler.runUntilIdle();
    expect(h.mock.responses.map((r) => r.response)).toEqual([{ pasid: bond.pasid, grpid: 3, code: "invalid" }]);
    expect(faults).toBe(0);
    h.core.sva.unbindDevice(bond);
  });
});

describe("svaBindGroup", () => {
  function groupHost() {
    const h = svaHost();
    const devs = ["f0", "f1", "f2"].map((n, i) => h.svaDevice(n, i, { isolation: "bridge" }));
    const group = devs[0]?.group;
    if (group === null || group === undefined) throw new Error("no group");
    expect(group.devices.length).toBe(3);
    return { h, devs, group };
  }

  it("binds every device of the group at the mm's PASID", () => {
    const { h, group } = groupHost();
    const mm = h.newMm("vfio-user");
    const bonds = h.core.sva.bindGroup(group, mm);
    expect(bonds.map((b) => b.pasid)).toEqual([1, 1, 1]);
    expect(h.mock.svaEntries.size).toBe(3);
    h.core.sva.unbindGroup(bonds);
    expect(h.mock.svaEntries.size).toBe(0);
  });

  it("rolls back every device, the PASID and the notifier when one bind fails", () => {
    const { h, group } = groupHost();
    const mm = h.newMm("vfio-user");
    h.kernel.faults.failPoint("mock.sva-bind", { nth: 3 });
    expect(errnoOf(() => h.core.sva.bindGroup(group, mm))).toBe(Errno.ENOMEM);
    expect(h.mock.svaEntries.size).toBe(0);
    expect(h.mock.svaHistory.length).toBe(2);
    expect(h.core.sva.liveBonds).toBe(0);
    expect(mm.pasid).toBeNull();
    expect(mm.notifierCount).toBe(0);
    expect(mm.count).toBe(1);
    expect(h.ioasid.allocated).toBe(0);
  });

  it("leaves no bond, PASID or page behind whichever injection point fails (fail-nth sweep)", () => {
    const points = new Set<string>();
    for (let n = 1; ; n++) {
      const { h, group } = groupHost();
      const mm = h.newMm("vfio-user");
      mm.mmap(VA, 2 * PAGE_SIZE, Prot.READ | Prot.WRITE, { populate: true });
      h.kernel.faults.resetCounters();
      h.kernel.faults.failNth(n);
      let bonds: ReturnType<typeof h.core.sva.bindGroup> = [];
      const errno = errnoOf(() => (bonds = h.core.sva.bindGroup(group, mm)));
      const injected = [...h.kernel.faults.injected];
      for (const p of h.kernel.faults.counts.keys()) points.add(p);
      h.kernel.faults.disarm();
      if (injected.length === 0) {
        expect(errno).toBe(0);
        expect(bonds.length).toBe(3);
        h.core.sva.unbindGroup(bonds);
      } else {
        expect(errno).toBe(Errno.ENOMEM);
        expect(h.core.sva.liveBonds).toBe(0);
        expect(h.mock.svaEntries.size).toBe(0);
        expect(mm.pasid).toBeNull();
        expect(h.ioasid.allocated).toBe(0);
        expect(mm.notifierCount).toBe(0);
        expect(mm.count).toBe(1);
      }
      mm.exit();
      expect(h.ioasid.allocated).toBe(0);
      expect(onlyContextsLeft(h)).toBe(true);
      if (injected.length === 0) break;
      expect(n).toBeLessThan(50);
    }
    expect([...points].sort()).toEqual(["ioasid.alloc", "ioasid.set_alloc", "iommu.sva-bond", "mm.notifier-alloc", "mock.sva-bind"]);
  });
});
