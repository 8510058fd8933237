import { Errno, KernelError, type Kernel } from "@vsva/kernel";
import { type IommuCore, nestingInfoSize, reportNestingInfo } from "@vsva/iommu-core";
import type { NestingTarget, VfioContainer } from "./container.js";
import type { VfioMm } from "./vfio-mm.js";

/**
 * The vSVA series' container operations (v7 patches "vfio/type1: Support
 * binding guest page tables to PASID", "Allow invalidating first-level/stage
 * IOMMU cache", "Add vSVA support for IOMMU-backed mdevs"): each is passed to
 * the IOMMU core for every device of the container, an IOMMU-backed mdev as
 * its sub-device on the parent (the core resolves it through the aux domain).
 * The IOMMU UAPI bytes are checked by the core, and the core checks that the
 * PASID belongs to the VM's IOASID set (fixed on the domain at allocation).
 */
export class NestingDispatch {
  readonly #kernel: Kernel;
  readonly #core: IommuCore;
  readonly #mmOf: (c: VfioContainer) => VfioMm;

  constructor(kernel: Kernel, core: IommuCore, mmOf: (c: VfioContainer) => VfioMm) {
    this.#kernel = kernel;
    this.#core = core;
    this.#mmOf = mmOf;
  }

  /** The NESTING capability's body (struct iommu_nesting_info), or null when the container is not of the nesting type. */
  infoBytes(c: VfioContainer): Uint8Array | null {
    if (!c.nesting) return null;
    const domain = c.domains[0];
    if (domain === undefined) return null;
    const info = this.#core.nestingInfo(domain);
    const out = new Uint8Array(nestingInfoSize(info));
    new DataView(out.buffer).setUint32(0, out.length, true);
    reportNestingInfo(info, out);
    return out;
  }

  pasidRequest(c: VfioContainer, op: "alloc" | "free", min: number, max: number): number {
    // vfio_iommu_type1_pasid_alloc/free: only a container with a vfio_mm (the nesting type).
    if (!c.nesting) throw new KernelError(Errno.EOPNOTSUPP, "PASID_REQUEST: not a nesting container");
    const mm = this.#mmOf(c);
    if (op === "alloc") {
      const id = mm.alloc(min, max);
      this.#kernel.trace.emit("vfio.pasid-alloc", "VFIO", { ioasid: id }, { min, max });
      return id;
    }
    const freed = mm.free(min, max);
    this.#kernel.trace.emit("vfio.pasid-free", "VFIO", {}, { min, max, freed });
    return 0;
  }

  /**
   * NESTING_OP(BIND_PGTBL): bind on every device; if one fails, the ones
   * already bound are unbound again and the error returned. EINVAL when the
   * container has an mdev that is not IOMMU-backed (nothing is called for it).
   */
  bind(c: VfioContainer, data: Uint8Array): number {
    const targets = this.#targets(c, "BIND_PGTBL");
    const done: NestingTarget[] = [];
    try {
      for (const t of targets) {
        this.#core.bindGpasid(t.domain, t.dev, data);
        done.push(t);
      }
    } catch (e) {
      for (const t of done.reverse()) this.#core.unbindGpasid(t.domain, t.dev, data);
      throw e;
    }
    this.#kernel.trace.emit("vfio.nesting-op", "VFIO", {}, { op: "bind", devices: targets.length });
    return 0;
  }

  /** NESTING_OP(UNBIND_PGTBL): unbind on every device; the first error is returned after all were tried. */
  unbind(c: VfioContainer, data: Uint8Array): number {
    return this.#each(c, "UNBIND_PGTBL", "unbind", (t) => this.#core.unbindGpasid(t.domain, t.dev, data));
  }

  /** NESTING_OP(CACHE_INVLD): pass the guest's invalidation to every device. */
  invalidate(c: VfioContainer, data: Uint8Array): number {
    return this.#each(c, "CACHE_INVLD", "invalidate", (t) => this.#core.cacheInvalidate(t.domain, t.dev, data));
  }

  #each(c: VfioContainer, what: string, op: string, fn: (t: NestingTarget) => unknown): number {
    const targets = this.#targets(c, what);
    let first: Error | null = null;
    for (const t of targets) {
      try {
        fn(t);
      } catch (e) {
        first ??= e instanceof Error ? e : new KernelError(Errno.EINVAL, String(e));
      }
    }
    if (first !== null) throw first;
    this.#kernel.trace.emit("vfio.nesting-op", "VFIO", {}, { op, devices: targets.length });
    return 0;
  }

  #targets(c: VfioContainer, what: string): NestingTarget[] {
    if (!c.nesting) throw new KernelError(Errno.EOPNOTSUPP, `NESTING_OP ${what}: not a nesting container`);
    const external = c.externalDevices;
    if (external.length > 0) throw new KernelError(Errno.EINVAL, `NESTING_OP ${what}: ${external[0]?.name ?? "an mdev"} is not IOMMU-backed`);
    const targets = c.nestingTargets();
    if (targets.length === 0) throw new KernelError(Errno.EINVAL, `NESTING_OP ${what}: no IOMMU-backed device in the container`);
    return targets;
  }
}
