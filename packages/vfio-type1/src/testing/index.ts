export { FakeUserPages } from "./fake-user-pages.js";
export { configOnlyOps } from "./config-only-ops.js";
export { vfioUapi } from "../index.js";
