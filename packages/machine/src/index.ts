// Guest-physical memory: page-granular views over host pages, with pin counts.
export { GuestMemoryView, MAX_PIN_COUNT, type GuestMemoryOptions, type PinStats } from "./guest-memory.js";

// Boards: a host assembled in one place for the harness and the drivers' tests.
export { Board, MiB, DEFAULT_RAM, DEFAULT_POOL, type BoardOptions, type EndpointOptions, type DeviceSlot } from "./board.js";
export type { Platform, PlatformContext, PlatformFactory } from "./platform.js";
