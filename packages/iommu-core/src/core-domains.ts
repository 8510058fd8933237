import { Errno, KernelBug, KernelError, isKernelError } from "@vsva/kernel";
import type { CoreContext } from "./core-context.js";
import type { IommuDevice } from "./device.js";
import { BlockedDomain, IdentityDomain, type IommuDomain, PagingDomain } from "./domain.js";
import type { IommuGroup } from "./group.js";
import type { Iommu } from "./iommu.js";
import type { NestingUapi } from "./nesting-uapi.js";
import { type DomainAllocRequest, type DriverDomain, IOMMU_PROT_KNOWN, IommuProt } from "./ops.js";
import { iommuPgsize, pgsizesFromBitmap } from "./pgsize.js";

/**
 * Domains and map/unmap of the IOMMU core (drivers/iommu/iommu.c:
 * `iommu_domain_alloc`, `__iommu_attach_group`, `iommu_map`...): allocation
 * with the kernel's rules, group and aux attach all or nothing, and the
 * page-size splitting and unwinding of map and unmap.
 */
export class CoreDomains {
  readonly #ctx: CoreContext;
  readonly #nesting: NestingUapi;

  constructor(ctx: CoreContext, nesting: NestingUapi) {
    this.#ctx = ctx;
    this.#nesting = nesting;
  }

  alloc(iommu: Iommu, req: DomainAllocRequest): IommuDomain {
    const ctx = this.#ctx;
    const nestingParent = req.type !== "blocked" && req.type !== "identity" && req.nestingParent;
    if (nestingParent && !iommu.ops.capable("nesting")) throw new KernelError(Errno.ENODEV, `${iommu.name} cannot nest`);
    ctx.kernel.faults.inject("iommu.domain-alloc");
    // The owner's set is taken for the domain's life (ioasid_set_get): EINVAL
    // for a set this IOASID namespace does not know or one being destroyed.
    const set = nestingParent ? req.ioasidSet : null;
    if (set !== null) ctx.ioasid.setGet(set);
    let drv: DriverDomain;
    try {
      drv = iommu.ops.domainAlloc(req);
    } catch (e) {
      if (set !== null) ctx.ioasid.setPut(set);
      throw e;
    }
    const id = ctx.allocDomainId();
    let domain: IommuDomain;
    try {
      if (req.type === "blocked" && drv.kind === "blocked") domain = new BlockedDomain(id, iommu, drv);
      else if (req.type === "identity" && drv.kind === "identity") domain = new IdentityDomain(id, iommu, drv);
      else if ((req.type === "dma" || req.type === "unmanaged") && drv.kind === (nestingParent ? "nesting-parent" : "paging")) {
        const paging = drv;
        const { start, end } = paging.aperture;
        if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) {
          throw new KernelError(Errno.EINVAL, `driver ${iommu.ops.name} gave aperture [${start}, ${end}]`);
        }
        domain = new PagingDomain(id, iommu, req.type, paging, pgsizesFromBitmap(paging.pgsizeBitmap), set);
      } else {
        throw new KernelError(Errno.EINVAL, `driver ${iommu.ops.name} returned a ${drv.kind} domain for a ${req.type} request`);
      }
    } catch (e) {
      drv.free();
      if (set !== null) ctx.ioasid.setPut(set);
      throw e;
    }
    if (domain instanceof PagingDomain) this.#nesting.adopt(domain);
    ctx.liveDomains++;
    ctx.trace("iommu.domain-alloc", { domain: id }, { type: domain.type, iommu: iommu.name });
    return domain;
  }

  free(domain: IommuDomain): void {
    if (domain.freed) throw new KernelBug(`domain ${domain.id} freed twice`);
    if (domain.type === "nested") throw new KernelBug(`nested domain ${domain.id} is freed by unbinding, not domainFree`);
    if (domain.attached) throw new KernelBug(`domain ${domain.id} freed while attached`);
    if (domain instanceof PagingDomain) this.#nesting.dropAll(domain);
    domain.driver.free();
    if (domain instanceof PagingDomain && domain.ioasidSet !== null) this.#putSet(domain);
    domain.freed = true;
    this.#ctx.liveDomains--;
    this.#ctx.trace("iommu.domain-free", { domain: domain.id }, { type: domain.type });
  }

  attachGroup(domain: IommuDomain, group: IommuGroup): void {
    if (domain.freed) throw new KernelError(Errno.EINVAL, `domain ${domain.id} was freed`);
    if (domain.iommu !== group.iommu) throw new KernelError(Errno.EINVAL, `domain ${domain.id} belongs to ${domain.iommu.name}, group ${group.id} to ${group.iommu.name}`);
    if (domain.type === "nested") throw new KernelError(Errno.EINVAL, `nested domain ${domain.id} cannot translate requests without PASID`);
    if (group.ownedByOther || (group.defaultDomain === null && group.domain !== null)) {
      throw new KernelError(Errno.EBUSY, `group ${group.id} is owned by domain ${group.domain?.id ?? 0}`);
    }
    this.#switchGroup(group, domain);
    this.#ctx.trace("iommu.attach", { domain: domain.id }, { group: group.id, type: domain.type });
  }

  detachGroup(domain: IommuDomain, group: IommuGroup): void {
    if (group.domain !== domain) throw new KernelBug(`detaching domain ${domain.id} from group ${group.id}, which is in ${group.domain?.id ?? "no domain"}`);
    if (domain === group.defaultDomain) return;
    if (domain instanceof PagingDomain) {
      for (const dev of group.devices) this.#nesting.unbindAllOf(dev, domain);
    }
    const to = group.defaultDomain;
    if (to === null) {
      for (const dev of group.devices) this.detachDevFrom(domain, dev);
      domain.groups.delete(group);
      group.domain = null;
    } else {
      // Re-attaching the default domain can only fail on an allocation the
      // default domain already made; a failure here is a driver bug.
      try {
        this.#switchGroup(group, to);
      } catch (e) {
        throw new KernelBug(`re-attaching the default domain of group ${group.id} failed: ${String(e)}`);
      }
    }
    this.#ctx.trace("iommu.detach", { domain: domain.id }, { group: group.id, to: to?.id ?? null });
  }

  attachSubDevice(domain: IommuDomain, sub: IommuDevice): void {
    if (!sub.isSubDevice) throw new KernelError(Errno.EINVAL, `${sub.name} is not a sub-device`);
    if (!sub.physical.hasFeature("aux")) throw new KernelError(Errno.EINVAL, `${sub.physical.name} has no aux domain support enabled`);
    if (!(domain instanceof PagingDomain) || domain.freed) throw new KernelError(Errno.EINVAL, `aux attach needs a live paging domain`);
    if (domain.iommu !== sub.iommu) throw new KernelError(Errno.EINVAL, `domain ${domain.id} is not on ${sub.name}'s IOMMU`);
    if (sub.auxDomain !== null) throw new KernelError(Errno.EBUSY, `${sub.name} is attached to domain ${sub.auxDomain.id}`);
    domain.driver.attachDev(sub);
    sub.auxDomain = domain;
    domain.subDevices.add(sub);
    this.#ctx.trace("iommu.attach", { domain: domain.id, device: sub.name }, { group: -1, type: domain.type });
  }

  detachSubDevice(domain: IommuDomain, sub: IommuDevice): void {
    if (sub.auxDomain !== domain) throw new KernelBug(`${sub.name} is not aux-attached to domain ${domain.id}`);
    if (domain instanceof PagingDomain) this.#nesting.unbindAllOf(sub, domain);
    this.detachDevFrom(domain, sub);
    domain.subDevices.delete(sub);
    sub.auxDomain = null;
    this.#ctx.trace("iommu.detach", { domain: domain.id, device: sub.name }, { group: -1, to: null });
  }

  /** Gives the owner's set back; teardown cannot fail, so a refusal (never expected) is logged. */
  #putSet(domain: PagingDomain): void {
    if (domain.ioasidSet === null) return;
    try {
      this.#ctx.ioasid.setPut(domain.ioasidSet);
    } catch (e) {
      if (!isKernelError(e)) throw e;
      this.#ctx.kernel.log.warn("iommu.domain-free", `domain ${domain.id}: IOASID set put: ${e.message}`, "IOMMU");
    }
  }

  // ------------------------------------------------------------- map/unmap

  map(domain: IommuDomain, iova: number, paddr: number, size: number, prot: number): void {
    const d = pagingOf(domain, "map");
    checkRange(d, iova, size);
    if (!Number.isSafeInteger(paddr) || paddr < 0 || paddr % d.minPageSize !== 0) {
      throw new KernelError(Errno.EINVAL, `paddr 0x${paddr.toString(16)} is not aligned to 0x${d.minPageSize.toString(16)}`);
    }
    if (!Number.isSafeInteger(paddr + size)) throw new KernelError(Errno.EINVAL, `paddr + size overflows`);
    if (!Number.isInteger(prot) || (prot & ~IOMMU_PROT_KNOWN) !== 0 || (prot & (IommuProt.READ | IommuProt.WRITE)) === 0) {
      throw new KernelError(Errno.EINVAL, `prot 0x${prot.toString(16)}`);
    }
    let mapped = 0;
    while (mapped < size) {
      const { pgsize, count } = iommuPgsize(d.pgsizes, iova + mapped, paddr + mapped, size - mapped);
      const r = d.driver.mapPages(iova + mapped, paddr + mapped, pgsize, count, prot);
      mapped += r.mapped;
      if (r.error !== null) {
        if (mapped > 0) unmapRange(d, iova, mapped);
        throw r.error;
      }
      if (r.mapped !== pgsize * count) throw new KernelBug(`driver ${d.iommu.ops.name} mapped ${r.mapped} of ${pgsize * count} bytes without an error`);
    }
    d.driver.syncMap(iova, size);
    this.#ctx.trace("iommu.map", { domain: d.id }, { iova, paddr, size, prot });
  }

  unmap(domain: IommuDomain, iova: number, size: number): number {
    const d = pagingOf(domain, "unmap");
    checkRange(d, iova, size);
    const unmapped = unmapRange(d, iova, size);
    this.#ctx.trace("iommu.unmap", { domain: d.id }, { iova, size, unmapped });
    return unmapped;
  }

  iovaToPhys(domain: IommuDomain, iova: number): number | null {
    switch (domain.type) {
      case "identity":
        return iova;
      case "dma":
      case "unmanaged":
        return domain.driver.iovaToPhys(iova);
      case "nested":
        return domain.parent.driver.iovaToPhys(iova);
      case "blocked":
        return null;
    }
  }

  // ------------------------------------------------- default domains, attach

  setupDefaultDomain(group: IommuGroup, kind: "dma" | "identity" | "none"): void {
    if (kind === "none") return;
    const req: DomainAllocRequest = kind === "identity" ? { type: "identity" } : { type: "dma", nestingParent: false };
    const domain = this.alloc(group.iommu, req);
    group.defaultDomain = domain;
    try {
      this.#switchGroup(group, domain);
    } catch (e) {
      group.defaultDomain = null;
      this.free(domain);
      throw e;
    }
  }

  teardownDefaultDomain(group: IommuGroup): void {
    const def = group.defaultDomain;
    if (def === null) return;
    if (group.domain === def) {
      for (const dev of group.devices) this.detachDevFrom(def, dev);
      group.domain = null;
    }
    def.groups.delete(group);
    group.defaultDomain = null;
    if (!def.attached && !def.freed) this.free(def);
  }

  attachDevTo(domain: IommuDomain, dev: IommuDevice): void {
    if (domain.type === "nested") throw new KernelBug("nested domains are not attached to requester IDs");
    domain.driver.attachDev(dev);
  }

  detachDevFrom(domain: IommuDomain, dev: IommuDevice): void {
    if (domain.type === "nested") return;
    domain.driver.detachDev(dev);
  }

  /** Moves every device of the group to `to`, all or nothing. */
  #switchGroup(group: IommuGroup, to: IommuDomain): void {
    const from = group.domain;
    const moved: IommuDevice[] = [];
    try {
      for (const dev of group.devices) {
        if (from !== null) this.detachDevFrom(from, dev);
        moved.push(dev);
        this.attachDevTo(to, dev);
      }
    } catch (e) {
      const failed = moved.pop();
      for (const dev of moved) this.detachDevFrom(to, dev);
      if (from !== null) {
        if (failed !== undefined) moved.push(failed);
        for (const dev of moved) this.attachDevTo(from, dev);
      }
      throw e;
    }
    if (from !== null) from.groups.delete(group);
    group.domain = to;
    to.groups.add(group);
  }
}

function pagingOf(domain: IommuDomain, what: string): PagingDomain {
  if (!(domain instanceof PagingDomain)) throw new KernelError(Errno.EINVAL, `${what} on a ${domain.type} domain`);
  if (domain.freed) throw new KernelError(Errno.EINVAL, `${what} on freed domain ${domain.id}`);
  return domain;
}

function checkRange(d: PagingDomain, iova: number, size: number): void {
  const min = d.minPageSize;
  if (!Number.isSafeInteger(size) || size <= 0) throw new KernelError(Errno.EINVAL, `size ${size}`);
  if (!Number.isSafeInteger(iova) || iova < 0) throw new KernelError(Errno.EINVAL, `iova ${iova}`);
  if (iova % min !== 0 || size % min !== 0) {
    throw new KernelError(Errno.EINVAL, `iova 0x${iova.toString(16)} size 0x${size.toString(16)} not aligned to 0x${min.toString(16)}`);
  }
  const last = iova + size - 1;
  if (!Number.isSafeInteger(last) || iova < d.driver.aperture.start || last > d.driver.aperture.end) {
    throw new KernelError(Errno.EINVAL, `[0x${iova.toString(16)}, +0x${size.toString(16)}) outside the aperture`);
  }
}

function unmapRange(d: PagingDomain, iova: number, size: number): number {
  let unmapped = 0;
  while (unmapped < size) {
    const { pgsize, count } = iommuPgsize(d.pgsizes, iova + unmapped, iova + unmapped, size - unmapped);
    const n = d.driver.unmapPages(iova + unmapped, pgsize, count);
    if (n === 0) break;
    unmapped += n;
  }
  if (unmapped > 0) d.driver.flushIotlb(iova, unmapped);
  return unmapped;
}
