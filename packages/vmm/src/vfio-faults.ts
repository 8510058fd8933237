import { Errno, KernelError } from "@vsva/kernel";
import { type IommuFaultRecord, IommuFaultLayout, type PageResponse, PageResponseLayout, decodeIommuFault, defineStruct, encodePageResponse } from "@vsva/iommu-core";
import { DeviceInfoLayout, RegionFlag, RegionInfoLayout, type VfioDeviceFile, VfioIoctl, regionOffset } from "@vsva/vfio-type1";

/**
 * The VMM's copy of the nested DMA fault UAPI (Eric Auger's "vfio: Add DMA
 * fault reporting / fault response region" series, 2019–2021; QEMU keeps
 * such headers in its own linux-headers/): the region type and subtypes its
 * region-info capability names, and the two ring headers.
 */
const VFIO_REGION_TYPE_NESTED = 2;
const NestedSubtype = { DMA_FAULT: 1, DMA_FAULT_RESPONSE: 2 } as const;
/** VFIO_REGION_INFO_CAP_TYPE: struct vfio_region_info_cap_type {header; u32 type; u32 subtype}. */
const CAP_TYPE = 1;

const FaultHeader = defineStruct("vfio_region_dma_fault", 20, {
  tail: [0, "u32"],
  entry_size: [4, "u32"],
  nb_entries: [8, "u32"],
  offset: [12, "u32"],
  head: [16, "u32"],
});

const ResponseHeader = defineStruct("vfio_region_dma_fault_response", 20, {
  head: [0, "u32"],
  entry_size: [4, "u32"],
  nb_entries: [8, "u32"],
  offset: [12, "u32"],
  tail: [16, "u32"],
});

function u32(v: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v, true);
  return b;
}

/**
 * The device's fault and response rings as the VMM reaches them: pread and
 * pwrite on the device file at the regions' offsets. Found through
 * DEVICE_GET_INFO and DEVICE_GET_REGION_INFO by their type capability, as
 * QEMU's vfio_get_dev_region_info() finds a typed region.
 */
export class VfioFaultRings {
  readonly #f: VfioDeviceFile;
  readonly #fault: number;
  readonly #resp: number;

  private constructor(f: VfioDeviceFile, fault: number, resp: number) {
    this.#f = f;
    this.#fault = fault;
    this.#resp = resp;
  }

  /** The rings of a device, or null when it has none (not a nesting container's PCI device). */
  static find(f: VfioDeviceFile): VfioFaultRings | null {
    const info = new Uint8Array(DeviceInfoLayout.size);
    DeviceInfoLayout.set(info, "argsz", DeviceInfoLayout.size);
    f.ioctl(VfioIoctl.DEVICE_GET_INFO, info);
    let fault = -1;
    let resp = -1;
    for (let index = 0; index < DeviceInfoLayout.get(info, "num_regions"); index++) {
      const r = new Uint8Array(64);
      RegionInfoLayout.set(r, "argsz", r.length);
      RegionInfoLayout.set(r, "index", index);
      f.ioctl(VfioIoctl.DEVICE_GET_REGION_INFO, r);
      if ((RegionInfoLayout.get(r, "flags") & RegionFlag.CAPS) === 0) continue;
      const dv = new DataView(r.buffer);
      for (let at = RegionInfoLayout.get(r, "cap_offset"), n = 0; at !== 0 && at + 16 <= r.length && n < 8; at = dv.getUint32(at + 4, true), n++) {
        if (dv.getUint16(at, true) !== CAP_TYPE || dv.getUint32(at + 8, true) !== VFIO_REGION_TYPE_NESTED) continue;
        const sub = dv.getUint32(at + 12, true);
        if (sub === NestedSubtype.DMA_FAULT) fault = index;
        if (sub === NestedSubtype.DMA_FAULT_RESPONSE) resp = index;
      }
    }
    return fault < 0 || resp < 0 ? null : new VfioFaultRings(f, regionOffset(fault), regionOffset(resp));
  }

  /** Takes every fault record the kernel produced since the last call (moves the ring's tail past them). */
  take(): IommuFaultRecord[] {
    const F = FaultHeader;
    const hdr = this.#f.pread(this.#fault, F.size);
    const [head, nb, size, off] = [F.get(hdr, "head"), F.get(hdr, "nb_entries"), F.get(hdr, "entry_size"), F.get(hdr, "offset")];
    let tail = F.get(hdr, "tail");
    if (nb === 0 || size < IommuFaultLayout.size) throw new KernelError(Errno.EIO, `fault ring of ${nb} entries of ${size} bytes`);
    const out: IommuFaultRecord[] = [];
    while (tail !== head) {
      out.push(decodeIommuFault(this.#f.pread(this.#fault + off + tail * size, IommuFaultLayout.size)));
      tail = (tail + 1) % nb;
    }
    this.#f.pwrite(this.#fault + F.offsetOf("tail"), u32(tail));
    return out;
  }

  /** Writes responses at the response ring's head and moves it: the kernel answers the device for each. Errors: the first the kernel reports. */
  respond(responses: readonly PageResponse[]): void {
    if (responses.length === 0) return;
    const R = ResponseHeader;
    const hdr = this.#f.pread(this.#resp, R.size);
    const [nb, size, off] = [R.get(hdr, "nb_entries"), R.get(hdr, "entry_size"), R.get(hdr, "offset")];
    let head = R.get(hdr, "head");
    if (nb === 0 || size < PageResponseLayout.size) throw new KernelError(Errno.EIO, `response ring of ${nb} entries of ${size} bytes`);
    for (const r of responses) {
      this.#f.pwrite(this.#resp + off + head * size, encodePageResponse(r));
      head = (head + 1) % nb;
    }
    this.#f.pwrite(this.#resp + R.offsetOf("head"), u32(head));
  }
}
