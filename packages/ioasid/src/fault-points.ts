import { declareFaultPoints } from "@vsva/kernel";

/** Every fault-injection point of the IOASID core; the fail-nth sweep must fail each one. */
export const IOASID_FAULT_POINTS = declareFaultPoints("@vsva/ioasid", [
  "ioasid.set_alloc",
  "ioasid.alloc",
  "ioasid.alloc.store",
  "ioasid.attach_spid",
  "ioasid.notifier_mm",
  "ioasid.register_allocator",
]);
