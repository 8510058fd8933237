import { declareFaultPoints } from "@vsva/kernel";

/** Every fault-injection point of the SMMUv3 driver; the fail-nth sweep must fail each one. */
export const SMMU_FAULT_POINTS = declareFaultPoints("@vsva/arm-smmu-v3", [
  "smmu.init",
  "smmu.probe-device",
  "smmu.domain-alloc",
  "smmu.attach",
  "smmu.map",
  "smmu.asid-alloc",
  "smmu.vmid-alloc",
  "smmu.sva-bind",
]);
