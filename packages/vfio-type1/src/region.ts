/** vfio-pci's convention: region `index` starts at file offset index << 40 (VFIO_PCI_INDEX_TO_OFFSET). */
export const REGION_OFFSET_SHIFT = 40;
export const regionOffset = (index: number): number => index * 2 ** REGION_OFFSET_SHIFT;
