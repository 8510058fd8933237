import type { IommuOps } from "./ops.js";

/** One registered IOMMU instance (`struct iommu_device`) with its driver's ops. */
export class Iommu {
  constructor(
    readonly id: number,
    readonly name: string,
    readonly ops: IommuOps,
  ) {}

  toString(): string {
    return `${this.name}(${this.ops.name})`;
  }
}
