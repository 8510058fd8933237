export { MockIommu, type MockIommuOptions, type MockBinding, type MockSvaEntry, type MockMapping } from "./mock-driver.js";
export { mockHost, NullBacking, type MockHost, type MockHostOptions } from "./mock-host.js";
