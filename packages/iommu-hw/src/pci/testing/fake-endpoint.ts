import type { SourceId } from "@vsva/kernel";
import type { EndpointPort, PageGroupResponse } from "../../iommu-port.js";

/** An endpoint that records what an IOMMU unit (VT-d or SMMUv3) sends it: ATS invalidations and page responses. */
export class FakeEndpoint implements EndpointPort {
  readonly invalidations: { pasid?: number; global?: boolean; addr: number; size: number }[] = [];
  readonly responses: PageGroupResponse[] = [];
  constructor(readonly sid: SourceId) {}
  invalidateDeviceTlb(inv: Parameters<EndpointPort["invalidateDeviceTlb"]>[0]): void {
    this.invalidations.push({ ...inv });
  }
  pageResponse(resp: PageGroupResponse): void {
    this.responses.push(resp);
  }
}
