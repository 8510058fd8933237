import { FaultInjector } from "./fault-inject.js";
import { RateLimitedLog, type RateLimitOptions } from "./ratelimit.js";
import { Scheduler } from "./scheduler.js";
import { HOST_CONTEXT, TraceBus } from "./trace.js";

/**
 * The per-context bundle of kernel services. There is no module-level state
 * in vsva: a host and each of its guests own one of these, so several systems
 * can live in one process and tests never leak into each other. The kernels
 * of one system (made with `system`) share one virtual clock, one run order
 * and one trace numbering; fault injection and logs stay per kernel.
 */
export interface KernelOptions {
  readonly ratelimit?: RateLimitOptions;
  /**
   * Another kernel of the same system (the host's): this one then steps on
   * its clock and scheduler and emits on its trace bus, under its own
   * context. Without it, the kernel is a system of its own.
   * EEXIST if the system already has a kernel of that context.
   */
  readonly system?: Kernel;
  /** The context every trace event of this kernel carries (default "host"). */
  readonly context?: string;
}

export class Kernel {
  readonly context: string;
  readonly scheduler: Scheduler;
  readonly trace: TraceBus;
  readonly faults: FaultInjector;
  readonly log: RateLimitedLog;

  constructor(opts: KernelOptions = {}) {
    const context = opts.context ?? HOST_CONTEXT;
    const sys = opts.system;
    this.context = context;
    // Every kernel sees the system's scheduler through its own context (EEXIST for a taken name).
    this.scheduler = (sys === undefined ? new Scheduler() : sys.scheduler).forContext(context);
    this.trace = sys === undefined ? new TraceBus(this.scheduler, context) : sys.trace.forContext(context);
    this.faults = new FaultInjector(this.trace);
    this.log = new RateLimitedLog(this.scheduler, this.trace, opts.ratelimit);
  }
}
