import { declareFaultPoints } from "@vsva/kernel";

/** Every fault-injection point of the IOMMU core and the mm model; the fail-nth sweeps must fail each one. */
export const IOMMU_CORE_FAULT_POINTS = declareFaultPoints("@vsva/iommu-core", [
  "iommu.probe-device",
  "iommu.group-alloc",
  "iommu.subdev-alloc",
  "iommu.domain-alloc",
  "iommu.page-alloc",
  "iommu.sva-bond",
  "iommu.bind-gpasid",
  "iommu.iopf-alloc",
  "mm.alloc",
  "mm.notifier-alloc",
  "mm.vma-alloc",
]);
