import { Errno, sourceId } from "@vsva/kernel";
import { errnoOf } from "@vsva/kernel/testing";
import { describe, expect, it } from "vitest";
import type { IommuDevice, IommuDomain } from "./index.js";
import { mockHost } from "./testing/mock-host.js";

/**
 * Counts, per driver domain, the devices the driver was told are attached
 * (attachDev minus detachDev). The mock driver keeps one domain per device,
 * so a later attach hides a device left behind in another domain; this
 * ledger does not.
 */
function ledger(domains: readonly IommuDomain[]) {
  const held = new Map<IommuDomain, Set<string>>();
  for (const d of domains) {
    const set = new Set<string>();
    held.set(d, set);
    if (d.type === "nested") continue;
    const drv = d.driver;
    const attach = drv.attachDev.bind(drv);
    const detach = drv.detachDev.bind(drv);
    drv.attachDev = (dev: IommuDevice) => {
      attach(dev);
      set.add(dev.name);
    };
    drv.detachDev = (dev: IommuDevice) => {
      detach(dev);
      set.delete(dev.name);
    };
  }
  return (d: IommuDomain) => [...(held.get(d) ?? [])].sort();
}

function group3() {
  const h = mockHost({ defaultDomain: "dma" });
  const devs = [0, 1, 2].map((fn) => h.core.probeDevice(h.iommu, { name: `gpu.${fn}`, sid: sourceId(3, 0, fn), isolation: "bridge-3" }));
  const group = devs[0]!.group!;
  return { ...h, devs, group, def: group.defaultDomain! };
}

describe("a failed group attach rolls back completely", () => {
  for (const nth of [1, 2, 3]) {
    it(`leaves no device in the new domain and every device back in the default one (attach ${nth} of 3 fails)`, () => {
      const { core, kernel, devs, group, def } = group3();
      const d = core.domainAlloc(devs[0], { type: "unmanaged", nestingParent: false });
      const inDomain = ledger([d, def]);
      // The ledger starts empty: count the default domain's devices from here on.
      kernel.faults.failPoint("mock.attach", { nth });
      expect(errnoOf(() => core.attachGroup(d, group))).toBe(Errno.ENOSPC);
      expect(inDomain(d)).toEqual([]);
      expect(group.domain).toBe(def);
      for (const dev of devs) expect(dev.domain).toBe(def);
      // Every device the attempt took out of the default domain was put back.
      const movedOut = nth; // devices detached from the default domain before the failure
      expect(inDomain(def)).toEqual(devs.slice(0, movedOut).map((x) => x.name));
      // And the domain is still usable: a retry moves all three.
      core.attachGroup(d, group);
      expect(inDomain(d)).toEqual(devs.map((x) => x.name));
      core.detachGroup(d, group);
      expect(inDomain(d)).toEqual([]);
    });
  }

  it("leaves nothing behind when the group had no domain (no default domain)", () => {
    const h = mockHost({ defaultDomain: "none" });
    const devs = [0, 1].map((fn) => h.core.probeDevice(h.iommu, { name: `gpu.${fn}`, sid: sourceId(3, 0, fn), isolation: "bridge-3" }));
    const group = devs[0]!.group!;
    const d = h.core.domainAlloc(devs[0], { type: "unmanaged", nestingParent: false });
    const inDomain = ledger([d]);
    h.kernel.faults.failPoint("mock.attach", { nth: 2 });
    expect(errnoOf(() => h.core.attachGroup(d, group))).toBe(Errno.ENOSPC);
    expect(inDomain(d)).toEqual([]);
    expect(group.domain).toBeNull();
    expect(h.mock.attached.size).toBe(0);
  });
});
