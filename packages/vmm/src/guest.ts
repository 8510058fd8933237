import type { SourceId } from "@vsva/kernel";
import type { DmaResult } from "@vsva/iommu-hw";
import { IoasidCore } from "@vsva/ioasid";
import { type Iommu, IommuCore, type IommuDevice, Mm, PageAllocator, PhysMemBacking } from "@vsva/iommu-core";
import { IntelIommu } from "@vsva/intel-svm";
import type { VirtualVtd } from "./viommu.js";
import type { Vm } from "./vm.js";

/** Fault round trips one DMA may take before the driver gives up waiting (each is one page group). */
const MAX_FAULT_ROUNDS = 64;

export interface GuestOptions {
  /** The guest kernel's page pool inside guest RAM (default: the upper half). */
  readonly pool?: { readonly base: number; readonly size: number };
}

/** What a guest driver asks of the assigned device's DMA engine through its BAR. */
export interface GuestDmaRequest {
  readonly pasid?: number;
  readonly addr: number;
  readonly length: number;
  readonly direction: "read" | "write";
  readonly pattern?: Uint8Array;
  readonly buffer?: Uint8Array;
}

/**
 * A guest kernel booted on a VM: the same packages the host runs — the
 * IOASID allocator (with the virtual-command allocator the VT-d driver
 * registers on a vIOMMU), the IOMMU core, the VT-d driver — over guest
 * memory and the VM's virtual VT-d unit (the VMM's device model: the kernel
 * drives its registers). Nothing the guest kernel holds is a host object:
 * the driver reaches the vIOMMU through its registers and tables in guest
 * RAM; the VMM sees only what the unit's traps show it and acts through
 * VFIO. The one host thing the guest touches is the assigned function's
 * BAR, which QEMU maps straight into the guest.
 *
 * The guest boots with pass-through default domains (`iommu=pt`): its DMA
 * without PASID uses GPAs, which the VMM's MAP_DMA of all RAM translates.
 */
export class Guest {
  readonly vm: Vm;
  readonly viommu: VirtualVtd;
  readonly pages: PageAllocator;
  readonly ioasid: IoasidCore;
  readonly driver: IntelIommu;
  readonly core: IommuCore;
  readonly iommu: Iommu;
  /** The assigned device as the guest's IOMMU core knows it. */
  readonly device: IommuDevice;
  readonly sid: SourceId;
  /** The VM's mdevs as the guest's IOMMU core knows them (PCI functions behind the vIOMMU, SVA enabled), in the VM's order. */
  readonly mdevs: readonly IommuDevice[];

  /** Boots the guest's IOMMU stack; errors from the driver's init (ENOMEM, ETIMEDOUT, EAGAIN) leave nothing set up. */
  constructor(vm: Vm, opts: GuestOptions = {}) {
    vm.checkRunning();
    this.vm = vm;
    const k = vm.kernel;
    this.sid = vm.guestSid;
    const half = vm.ramBytes / 2;
    const pool = opts.pool ?? { base: half, size: half };
    this.pages = new PageAllocator({ base: pool.base, size: pool.size, backing: new PhysMemBacking(vm.ram.view), faults: k.faults });
    this.ioasid = new IoasidCore({ scheduler: k.scheduler, trace: k.trace, faults: k.faults, log: k.log });
    const viommu = (this.viommu = vm.viommu);
    this.driver = new IntelIommu({ name: "vdmar0", mmio: viommu.unit, mem: vm.ram.view, pages: this.pages, kernel: k, ioasid: this.ioasid, poll: () => viommu.service() });
    const driver = this.driver;
    viommu.connectInterrupts((irq) => {
      if (irq.source === "page-request") driver.pageRequestInterrupt();
    });
    this.driver.init();
    try {
      this.core = new IommuCore({ kernel: k, ioasid: this.ioasid, defaultDomain: "identity", name: "guest-iommu" });
      this.iommu = this.core.registerIommu("vdmar0", this.driver);
      // The PASID capability VFIO exposes (vfio-pci passes it through, series patch 8); the vIOMMU's width bounds it.
      this.device = this.core.probeDevice(this.iommu, { name: vm.device.name, sid: this.sid, pasidWidth: viommu.unit.cfg.pasidBits });
      this.core.enableFeature(this.device, "sva");
      this.mdevs = vm.mdevSids.map((sid, i) => {
        const d = this.core.probeDevice(this.iommu, { name: `mdev${i}`, sid, pasidWidth: viommu.unit.cfg.pasidBits });
        this.core.enableFeature(d, "sva");
        return d;
      });
    } catch (e) {
      this.driver.shutdown();
      throw e;
    }
  }

  /** A guest process: its page tables and pages in guest RAM, from the guest kernel's pool. */
  newProcess(name: string): Mm {
    return new Mm({ kernel: this.vm.kernel, mem: this.vm.ram.view, pages: this.pages, name, arch: "x86-64" });
  }

  /**
   * The guest's device driver programs the DMA engine through the BAR and
   * waits for it: a DMA that met a missing page waits while the system runs
   * its deferred work (page requests and their responses).
   */
  dma(req: GuestDmaRequest): DmaResult {
    this.vm.checkRunning();
    const engine = this.vm.device.endpoint.dma;
    engine.setProgram(req);
    let result = engine.trigger();
    const sched = this.vm.host.kernel.scheduler;
    // A page request travels: host PRQ thread → VFIO's fault ring → the VMM → the guest's PRQ thread → its
    // response → the VMM → VFIO's response ring → the device, which retries. Each round may fault again.
    for (let round = 0; result === "pageRequestPending" && round < MAX_FAULT_ROUNDS; round++) {
      sched.runUntilIdle();
      const taken = this.viommu.pollFaults();
      sched.runUntilIdle();
      result = engine.result;
      if (taken === 0) break;
    }
    return engine.result;
  }
}
