import { declareFaultPoints } from "@vsva/kernel";

/** The mock driver's fault-injection points, so core sweeps also fail the driver's side of each op. */
export const MOCK_FAULT_POINTS = declareFaultPoints("@vsva/iommu-core/testing", ["mock.attach", "mock.map-page", "mock.sva-bind", "mock.bind-gpasid"]);
