import type { Scenario } from "../scenario.js";
import { ioasidFreeBeforeUnbind, ioasidLifecycle } from "./ioasid-lifecycle.js";

export const scenarios: readonly Scenario[] = [ioasidLifecycle, ioasidFreeBeforeUnbind];

/** What `vsva` with no arguments runs. */
export const FLAGSHIP = ioasidLifecycle.name;

export function findScenario(name: string): Scenario | undefined {
  return scenarios.find((s) => s.name === name);
}
