// Guest-physical memory: page-granular views over host pages, with pin counts.
export { GuestMemoryView, MAX_PIN_COUNT, type GuestMemoryOptions, type PinStats } from "./guest-memory.js";
