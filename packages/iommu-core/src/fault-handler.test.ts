import { describe, expect, it } from "vitest";
import { Errno, asHostPasid } from "@vsva/kernel";
import { Prot } from "./mm/prot.js";
import type { PageRequestFault } from "./ops.js";
import { svaHost } from "./testing/sva-host.js";

const fault = (pasid: number, addr: number): PageRequestFault => ({ pasid: asHostPasid(pasid), addr, read: true, write: false, exec: false, priv: false, grpid: 1, last: true });

describe("device fault handlers (iommu_register_device_fault_handler / iommu_report_device_fault)", () => {
  it("enabling SVA routes a device's recoverable faults to the IO page fault queue, reached by the driver through its uplink", () => {
    const h = svaHost();
    const dev = h.svaDevice("dsa", 0);
    const mm = h.newMm("P");
    const va = mm.mmap(null, 0x1000, Prot.READ);
    const bond = h.core.sva.bindDevice(dev, mm);
    const uplink = h.mock.uplink;
    if (uplink === null) throw new Error("the core connects every registered driver");
    expect(uplink.reportDeviceFault(dev, fault(bond.pasid, va))).toBe(true);
    h.kernel.scheduler.runUntilIdle();
    expect(mm.lookup(va)).not.toBeNull(); // the IO page fault queue faulted it in
  });

  it("refuses a second handler (EBUSY) and lets a registered one take the faults instead", () => {
    const h = svaHost();
    const dev = h.svaDevice("dsa", 0);
    expect(() => h.core.registerDeviceFaultHandler(dev, () => true)).toThrow(expect.objectContaining({ errno: Errno.EBUSY }));
    h.core.unregisterDeviceFaultHandler(dev);
    const seen: number[] = [];
    h.core.registerDeviceFaultHandler(dev, (_d, f) => (seen.push(f.addr), true));
    expect(h.core.reportDeviceFault(dev, fault(5, 0x1000))).toBe(true);
    expect(seen).toEqual([0x1000]);
  });

  it("reports false when nobody handles the device's faults, so the driver answers them itself", () => {
    const h = svaHost();
    const dev = h.svaDevice("dsa", 0);
    h.core.disableFeature(dev, "sva");
    expect(h.core.reportDeviceFault(dev, fault(5, 0x1000))).toBe(false);
  });
});
