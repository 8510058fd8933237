export { MockIommu, type MockIommuOptions, type MockBinding, type MockSvaEntry, type MockMapping } from "./mock-driver.js";
export { mockHost, NullBacking, type MockHost, type MockHostOptions } from "./mock-host.js";
export { svaHost, type SvaHost, type SvaHostOptions } from "./sva-host.js";
export { fuzzDriver, seededRandom, type DriverFuzzTarget, type DriverFuzzOptions, type DriverFuzzResult } from "./driver-fuzz.js";
export { MOCK_FAULT_POINTS } from "./fault-points.js";
export { misbehavingUnit, type MisbehavingUnitOptions, type FuzzMmio } from "./misbehaving-unit.js";
