import { Errno, KernelBug, KernelError, sourceId } from "@vsva/kernel";
import { describe, expect, it } from "vitest";
import { IommuProt } from "./ops.js";
import { mockHost } from "./testing/mock-host.js";
import { errnoOf } from "@vsva/kernel/testing";

/** Two functions of one card behind a bridge without ACS share a group; a third device is alone. */
function topology(defaultDomain: "dma" | "identity" | "none" = "dma") {
  const h = mockHost({ defaultDomain });
  const f0 = h.core.probeDevice(h.iommu, { name: "gpu.0", sid: sourceId(3, 0, 0), isolation: "bridge-3" });
  const f1 = h.core.probeDevice(h.iommu, { name: "gpu.1", sid: sourceId(3, 0, 1), isolation: "bridge-3" });
  const nic = h.core.probeDevice(h.iommu, { name: "nic", sid: sourceId(4, 0, 0), pasidWidth: 20 });
  return { ...h, f0, f1, nic };
}

describe("IOMMU groups", () => {
  it("put devices without isolation in one group with one default domain", () => {
    const { f0, f1, nic, mock } = topology();
    expect(f0.group).toBe(f1.group);
    expect(nic.group).not.toBe(f0.group);
    expect(f0.domain?.type).toBe("dma");
    expect(mock.attached.get(f0)).toBe(mock.attached.get(f1));
  });

  it("attach every device of the group to a new domain together, and detach back to the default", () => {
    const { core, f0, f1, mock } = topology();
    const group = f0.group!;
    const def = group.defaultDomain!;
    const d = core.domainAlloc(f0, { type: "unmanaged", nestingParent: false });
    core.attachGroup(d, group);
    expect(f0.domain).toBe(d);
    expect(f1.domain).toBe(d);
    expect(mock.attached.get(f1)).toBe(d.type === "unmanaged" ? d.driver : null);
    core.detachGroup(d, group);
    expect(f0.domain).toBe(def);
    expect(mock.attached.get(f0)).toBe(def.type === "dma" ? def.driver : null);
  });

  it("refuse attaching a single device of a multi-device group (EINVAL)", () => {
    const { core, f0 } = topology();
    const d = core.domainAlloc(f0, { type: "unmanaged", nestingParent: false });
    expect(errnoOf(() => core.attachDevice(d, f0))).toBe(Errno.EINVAL);
  });

  it("refuse a second user while another domain owns the group (EBUSY)", () => {
    const { core, nic } = topology();
    const a = core.domainAlloc(nic, { type: "unmanaged", nestingParent: false });
    const b = core.domainAlloc(nic, { type: "unmanaged", nestingParent: false });
    core.attachDevice(a, nic);
    expect(errnoOf(() => core.attachDevice(b, nic))).toBe(Errno.EBUSY);
    expect(errnoOf(() => core.attachDevice(a, nic))).toBe(Errno.EBUSY);
    expect(nic.domain).toBe(a);
  });

  it("refuse a domain made by another IOMMU (EINVAL)", () => {
    const h = topology();
    const other = h.core.registerIommu("mock1", h.mock);
    const dev2 = h.core.probeDevice(other, { name: "ssd", sid: sourceId(9, 0, 0) });
    const foreign = h.core.domainAlloc(dev2, { type: "unmanaged", nestingParent: false });
    expect(errnoOf(() => h.core.attachDevice(foreign, h.nic))).toBe(Errno.EINVAL);
  });

  it("move no device when attaching one of them fails (all or nothing)", () => {
    const { core, kernel, f0, f1, mock } = topology();
    const group = f0.group!;
    const def = group.defaultDomain!;
    const d = core.domainAlloc(f0, { type: "unmanaged", nestingParent: false });
    kernel.faults.failPoint("mock.attach", { nth: 2 });
    expect(errnoOf(() => core.attachGroup(d, group))).toBe(Errno.ENOSPC);
    expect(group.domain).toBe(def);
    const defDriver = def.type === "dma" ? def.driver : null;
    expect(mock.attached.get(f0)).toBe(defDriver);
    expect(mock.attached.get(f1)).toBe(defDriver);
    core.attachGroup(d, group);
    expect(f1.domain).toBe(d);
  });

  it("without default domains, start unattached and return there on detach", () => {
    const { core, nic, mock } = topology("none");
    expect(nic.domain).toBeNull();
    const d = core.domainAlloc(nic, { type: "unmanaged", nestingParent: false });
    core.attachDevice(d, nic);
    const e = core.domainAlloc(nic, { type: "unmanaged", nestingParent: false });
    expect(errnoOf(() => core.attachDevice(e, nic))).toBe(Errno.EBUSY);
    core.detachDevice(d, nic);
    expect(nic.domain).toBeNull();
    expect(mock.attached.has(nic)).toBe(false);
  });

  it("treat freeing an attached domain, or detaching one that is not attached, as kernel bugs", () => {
    const { core, nic } = topology();
    const d = core.domainAlloc(nic, { type: "unmanaged", nestingParent: false });
    expect(() => core.detachDevice(d, nic)).toThrow(KernelBug);
    core.attachDevice(d, nic);
    expect(() => core.domainFree(d)).toThrow(KernelBug);
  });

  it("refuse a nesting parent on an IOMMU that cannot nest (ENODEV)", () => {
    const h = mockHost({ mock: { caps: ["cache-coherency"] } });
    const dev = h.core.probeDevice(h.iommu, { name: "x", sid: sourceId(1, 0, 0) });
    const set = h.core.ioasid.allocSet({ vm: 1 }, 4, "mm");
    expect(errnoOf(() => h.core.domainAlloc(dev, { type: "unmanaged", nestingParent: true, ioasidSet: set }))).toBe(Errno.ENODEV);
    expect(set.refcount).toBe(1);
  });
});

describe("probe and release", () => {
  it("unwind a probe at every failure point and leak nothing (fail-nth)", () => {
    let completed = false;
    for (let n = 1; n < 50 && !completed; n++) {
      const h = mockHost();
      h.core.probeDevice(h.iommu, { name: "a", sid: sourceId(3, 0, 0), isolation: "b" });
      const before = { pages: h.pages.stats.livePages, domains: h.core.liveDomains, devices: h.core.devices.size };
      h.kernel.faults.failNth(n);
      try {
        h.core.probeDevice(h.iommu, { name: "b", sid: sourceId(3, 0, 1), isolation: "b" });
        h.core.probeDevice(h.iommu, { name: "c", sid: sourceId(5, 0, 0) });
        completed = true;
      } catch (e) {
        expect(e).toBeInstanceOf(KernelError);
      }
      h.kernel.faults.disarm();
      if (!completed) {
        // "b" may have been probed before "c" failed; take it away and compare.
        for (const d of [...h.core.devices]) if (d.name !== "a") h.core.releaseDevice(d);
        expect({ pages: h.pages.stats.livePages, domains: h.core.liveDomains, devices: h.core.devices.size }).toEqual(before);
        expect(h.mock.contexts.size).toBe(1);
      }
    }
    expect(completed).toBe(true);
  });

  it("release everything at teardown, user domains with mappings included", () => {
    const { core, pages, f0, f1, nic } = topology();
    const d = core.domainAlloc(nic, { type: "unmanaged", nestingParent: false });
    core.attachDevice(d, nic);
    core.map(d, 0, 0, 0x20_3000, IommuProt.READ);
    for (const dev of [f0, f1, nic]) core.releaseDevice(dev);
    core.domainFree(d);
    expect(pages.live()).toEqual([]);
    expect(core.liveDomains).toBe(0);
    expect(core.groups()).toEqual([]);
  });

  it("refuse a device the IOMMU does not translate for (ENODEV)", () => {
    const h = mockHost({ mock: { foreignSids: [sourceId(7, 0, 0)] } });
    expect(errnoOf(() => h.core.probeDevice(h.iommu, { name: "x", sid: sourceId(7, 0, 0) }))).toBe(Errno.ENODEV);
    expect(h.pages.stats.livePages).toBe(0);
  });
});

describe("per-device PASID limits (seed 002)", () => {
  it("take the smallest of the PCI width, the IOMMU's width and the driver's limit", () => {
    const h = mockHost({ mock: { pasidBits: 16 } });
    const a = h.core.probeDevice(h.iommu, { name: "a", sid: sourceId(1, 0, 0), pasidWidth: 20 });
    const b = h.core.probeDevice(h.iommu, { name: "b", sid: sourceId(2, 0, 0), pasidWidth: 8 });
    const c = h.core.probeDevice(h.iommu, { name: "c", sid: sourceId(3, 0, 0), pasidWidth: 20 });
    h.core.enableFeature(a, "sva");
    h.core.enableFeature(b, "sva");
    h.core.enableFeature(c, "sva", { maxPasid: 1000 });
    expect([a.maxPasids, b.maxPasids, c.maxPasids]).toEqual([1 << 16, 1 << 8, 1000]);
  });

  it("refuse SVA on a device without a PASID capability (ENODEV) and a second enable (EBUSY)", () => {
    const { core, f0, nic } = topology();
    expect(errnoOf(() => core.enableFeature(f0, "sva"))).toBe(Errno.ENODEV);
    core.enableFeature(nic, "sva");
    expect(errnoOf(() => core.enableFeature(nic, "sva"))).toBe(Errno.EBUSY);
    core.disableFeature(nic, "sva");
    expect(nic.maxPasids).toBe(0);
  });
});
