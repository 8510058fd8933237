import { declareFaultPoints } from "@vsva/kernel";

/** Every fault-injection point of the VT-d driver; the fail-nth sweep must fail each one. */
export const VTD_FAULT_POINTS = declareFaultPoints("@vsva/intel-svm", [
  "vtd.init",
  "vtd.probe-device",
  "vtd.domain-alloc",
  "vtd.attach",
  "vtd.map",
  "vtd.sva-bind",
  "vtd.svm-alloc",
  "vtd.sdev-alloc",
]);
