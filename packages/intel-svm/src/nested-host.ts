import { type Ioasid, asSpid } from "@vsva/kernel";
import type { IoasidSet } from "@vsva/ioasid";
import { type IommuDevice, IommuProt, type PagingDomain, decodeGpasidBindData } from "@vsva/iommu-core";
import type { PciEndpoint } from "@vsva/iommu-hw";
import type { VtdNestingDomain } from "./domain.js";
import { MiB, type TestHost, bindBytes, endpoint, guestTable, probe, testHost } from "./test-host.js";

/** Guest RAM: GPA [0, 4 MiB) backed linearly by HPA [8 MiB, 12 MiB). */
export const GUEST_HPA = 8 * MiB;
export const GUEST_RAM = 4 * MiB;
export const GVA = 0x7000_0000;
export const GPA_DATA = 0x10_0000;

export interface VmHost extends TestHost {
  readonly ep: PciEndpoint;
  readonly pdev: IommuDevice;
  readonly parent: PagingDomain;
  readonly vtd: VtdNestingDomain;
  readonly set: IoasidSet;
  readonly mm: object;
  readonly gpgd: number;
  /** A host PASID allocated in the VM's set. */
  alloc(): Ioasid;
}

/**
 * What VFIO's nesting container sets up for one VM: the device attached to
 * a nesting parent holding guest RAM (GPA -> HPA), owned by the VM's IOASID
 * set (given at allocation), SVA enabled; plus a guest first-level table in
 * guest RAM mapping GVA -> GPA_DATA.
 */
export function vmHost(opts: Parameters<typeof testHost>[0] = {}): VmHost {
  const h = testHost(opts);
  const ep = endpoint(h);
  const pdev = probe(h, ep);
  h.core.enableFeature(pdev, "sva");
  h.core.enableFeature(pdev, "aux");
  const mm = { vm: 1 };
  const set = h.ioasid.allocSet(mm, 16, "mm");
  const parent = h.core.domainAlloc(pdev, { type: "unmanaged", nestingParent: true, ioasidSet: set }) as PagingDomain;
  const vtd = parent.driver as VtdNestingDomain;
  h.core.attachDevice(parent, pdev);
  h.core.map(parent, 0, GUEST_HPA, GUEST_RAM, IommuProt.READ | IommuProt.WRITE);
  const gpgd = guestTable(h.mem, GUEST_HPA, GVA, GPA_DATA);
  return { ...h, ep, pdev, parent, vtd, set, mm, gpgd, alloc: () => h.ioasid.alloc(set, 1, 0xfffff) };
}

/** The typed bind request for `hpasid` with guest PASID `gpasid`. */
export function bindData(vm: VmHost, hpasid: number, gpasid?: number, more: Parameters<typeof bindBytes>[1] = {}) {
  return decodeGpasidBindData(bindBytes(hpasid, { gpgd: vm.gpgd, ...(gpasid === undefined ? {} : { gpasid }), ...more }));
}

export { asSpid };
