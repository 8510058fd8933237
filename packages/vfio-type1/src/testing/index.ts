export { FakeUserPages } from "./fake-user-pages.js";
export { configOnlyOps } from "./config-only-ops.js";
export * as vfioUapi from "./uapi-builders.js";
