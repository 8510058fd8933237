import { smmuPlatform } from "@vsva/arm-smmu-v3";
import { vtdPlatform } from "@vsva/intel-svm";
import type { Platform, PlatformFactory } from "@vsva/machine";

/**
 * The IOMMU platforms a harness host can boot with. Each is its driver
 * package's own board factory (`@vsva/machine` builds the rest of the host),
 * so the harness and the drivers' tests wire a host the same way.
 */
export const PLATFORMS = { vtd: vtdPlatform(), smmuv3: smmuPlatform() } as const satisfies Readonly<Record<string, PlatformFactory>>;

export type PlatformName = keyof typeof PLATFORMS;
export type { Platform };
