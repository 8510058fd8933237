// The unit's registers are iommu-hw's one MMIO interface (64-bit values as bigint),
// read and written through the layout helpers beside it.
export { type Mmio, readReg, writeReg } from "@vsva/iommu-hw";
