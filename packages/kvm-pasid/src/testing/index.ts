export { kvmTestHost, startKvm, type KvmTestHost } from "./host.js";
export { kvmTableRows, type KvmTableRow } from "./lifecycle-rows.js";
