import type { Scenario } from "../scenario.js";
import { ioasidFreeBeforeUnbind, ioasidLifecycle } from "./ioasid-lifecycle.js";
import { kvmEnqcmd } from "./kvm-enqcmd.js";
import { vdcmProgram } from "./vdcm-program.js";
import { nativeDsa } from "./native-dsa.js";
import { nativeExitBeforeUnbind } from "./native-exit-before-unbind.js";
import { nativeSva, smmuNativeSva } from "./native-sva.js";
import { guestSva } from "./guest-sva.js";
import { guestPageFault } from "./guest-page-fault.js";
import { guestCrash } from "./guest-crash.js";
import { maliciousGuest } from "./malicious-guest.js";
import { guestFreeBeforeUnbind, guestLifecycle } from "./guest-lifecycle.js";
import { sharedGpasid } from "./shared-gpasid.js";
import { flagship } from "./flagship.js";
import { guestMdevPageFault } from "./guest-mdev-page-fault.js";
import { nestedBind } from "./nested-bind.js";
import { pageRequest } from "./page-request.js";
import { mdevNotIommuBacked, mdevSiblings, vfioMap, vfioNestedBind, vfioQuota, vfioReleaseLive } from "./vfio.js";

export const scenarios: readonly Scenario[] = [nativeSva, nativeExitBeforeUnbind, pageRequest, nestedBind, smmuNativeSva, ioasidLifecycle, ioasidFreeBeforeUnbind,
  vfioMap, vfioNestedBind, mdevSiblings, mdevNotIommuBacked, vfioQuota, vfioReleaseLive, nativeDsa, kvmEnqcmd, vdcmProgram, guestSva,
  guestPageFault, guestCrash, maliciousGuest, guestLifecycle, guestFreeBeforeUnbind,
  sharedGpasid, flagship, guestMdevPageFault];

/** What `vsva` with no arguments runs. */
export const FLAGSHIP = flagship.name;

export function findScenario(name: string): Scenario | undefined {
  return scenarios.find((s) => s.name === name);
}
