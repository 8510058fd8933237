import { describe, expect, it } from "vitest";
import { isKernelError } from "@vsva/kernel";
import { FaultCoverage } from "@vsva/kernel/testing";
import { IOASID_FAULT_POINTS } from "@vsva/ioasid";
import { IOMMU_CORE_FAULT_POINTS } from "@vsva/iommu-core";
import { VTD_FAULT_POINTS } from "@vsva/intel-svm";
import { SMMU_FAULT_POINTS } from "@vsva/arm-smmu-v3";
import { Host } from "./host.js";
import type { PlatformName } from "./platform.js";

const REGISTRIES = [VTD_FAULT_POINTS, SMMU_FAULT_POINTS, IOMMU_CORE_FAULT_POINTS, IOASID_FAULT_POINTS];
const DRIVER: Readonly<Record<PlatformName, typeof VTD_FAULT_POINTS | typeof SMMU_FAULT_POINTS>> = { vtd: VTD_FAULT_POINTS, smmuv3: SMMU_FAULT_POINTS };
const INIT: Readonly<Record<PlatformName, string>> = { vtd: "vtd.init", smmuv3: "smmu.init" };

describe("the host's bring-up under fail-nth", () => {
  for (const platform of ["vtd", "smmuv3"] as const) {
    it(`fails cleanly at every fallible step of booting ${platform}: nothing kept, and the host boots once nothing fails`, () => {
      const cov = new FaultCoverage(DRIVER[platform], REGISTRIES);
      const failedAt: string[] = [];
      let n = 1;
      for (; n < 100; n++) {
        const host = new Host({ platform, deferBringUp: true });
        host.kernel.faults.failNth(n);
        let failed = false;
        try {
          host.bringUp();
        } catch (e) {
          if (!isKernelError(e)) throw e;
          failed = true;
        }
        host.kernel.faults.disarm();
        cov.record(host.kernel.faults);
        failedAt.push(...host.kernel.faults.injected);
        const injected = host.kernel.faults.injected.length > 0;
        // An injected failure ends the bring-up with an errno and every page given back; none means it booted.
        expect({ n, failed, up: host.up }).toEqual({ n, failed: injected, up: !injected });
        if (failed) expect({ n, pages: host.pages.live() }).toEqual({ n, pages: [] });
        else {
          host.platform.shutdown();
          expect(host.pages.live()).toEqual([]);
          break;
        }
      }
      expect(n).toBeGreaterThan(2);
      expect(n).toBeLessThan(100);
      expect(cov.undeclared()).toEqual([]);
      // The driver's own init point was failed, and so were the page allocations of its tables and queues.
      expect(cov.missing()).not.toContain(INIT[platform]);
      expect(failedAt).toContain("iommu.page-alloc");
    });
  }
});
