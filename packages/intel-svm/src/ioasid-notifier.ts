import { type HostPasid, NOTIFY_DONE, NOTIFY_OK, Work, asHostPasid } from "@vsva/kernel";
import { type IoasidCore, type IoasidEvent, type IoasidNotifierBlock, type IoasidNotifyData, IoasidPriority } from "@vsva/ioasid";
import type { VtdNestingDomain } from "./domain.js";
import { GuestSvm, type NestedBinder } from "./nested.js";
import type { VtdHardware } from "./unit.js";

/** Where the handler reports a binding it took over (the IOMMU core, through the driver's uplink). */
export type GpasidFreedReport = (domain: VtdNestingDomain, hpasid: HostPasid) => void;

/**
 * The driver's IOASID notifier (the ioasid.rst proposal's "iommu_nb_handler", iommu list, 2020): system-wide,
 * at IOMMU priority, so CPU (KVM) and DEVICE (VDCM) subscribers have
 * quiesced submission before the IOMMU context goes. It handles FREE that
 * arrives before unbind: notifiers run in atomic context, so the handler
 * marks the binding defunct (no new binds, the teardown owns it), stops
 * fault reporting for the PASID (FPD), tells the IOMMU core the binding is
 * gone (the core owns the binding record and drops it: DESIGN rule "one
 * owner per life-cycle record") and queues a work item; the work clears the
 * PASID entry on every device it is bound to with the full flush and
 * page-request drain, leaving FPD set, then detaches the SPID (silently,
 * FREE having told everyone), clears the private data and drops the
 * driver's reference. A later unbind fails cleanly with ENOENT; nothing is
 * put twice.
 */
export class IoasidFreeHandler implements IoasidNotifierBlock {
  readonly priority = IoasidPriority.IOMMU;
  /** Teardowns queued and not yet run. */
  pending = 0;

  constructor(
    private readonly hw: VtdHardware,
    private readonly ioasid: IoasidCore,
    private readonly binder: NestedBinder,
    private readonly report: GpasidFreedReport = () => undefined,
  ) {}

  call(event: IoasidEvent, data: IoasidNotifyData): number {
    if (event !== "FREE") return NOTIFY_DONE;
    const svm = data.private;
    if (!(svm instanceof GuestSvm) || svm.owner !== this.binder || svm.defunct || svm.released) return NOTIFY_DONE;
    svm.defunct = true;
    this.binder.silenceFaults(svm);
    // Each device may be bound over its own nesting domain: every one of them is told.
    const domains = new Set([...svm.devs.values()].map((s) => s.domain));
    for (const domain of domains) this.report(domain, asHostPasid(svm.pasid));
    const first = [...domains][0];
    const ids = { hpasid: svm.pasid as number, set: svm.set.id, ...(first === undefined ? {} : { domain: first.did }) };
    this.hw.kernel.trace.emit("vtd-drv.free-notified", "IOMMU", ids, { unit: this.hw.name, devices: svm.devs.size });
    this.pending++;
    this.ioasid.queueWork(
      new Work(`${this.hw.name}-teardown-pasid-${svm.pasid}`, () => {
        this.pending--;
        const devices = this.binder.tearDownAll(svm, true);
        this.binder.release(svm);
        this.hw.kernel.trace.emit("vtd-drv.free-teardown", "IOMMU", ids, { unit: this.hw.name, devices });
      }),
    );
    return NOTIFY_OK;
  }
}
