import { FaultInjector } from "./fault-inject.js";
import { RateLimitedLog, type RateLimitOptions } from "./ratelimit.js";
import { Scheduler } from "./scheduler.js";
import { TraceBus } from "./trace.js";

/**
 * The per-host bundle of kernel services. There is no module-level state in
 * vsva: a host (and each guest) owns one of these, so several can live in one
 * process and tests never leak into each other.
 */
export interface KernelOptions {
  readonly ratelimit?: RateLimitOptions;
}

export class Kernel {
  readonly scheduler: Scheduler;
  readonly trace: TraceBus;
  readonly faults: FaultInjector;
  readonly log: RateLimitedLog;

  constructor(opts: KernelOptions = {}) {
    this.scheduler = new Scheduler();
    this.trace = new TraceBus(this.scheduler);
    this.faults = new FaultInjector(this.trace);
    this.log = new RateLimitedLog(this.scheduler, this.trace, opts.ratelimit);
  }
}
