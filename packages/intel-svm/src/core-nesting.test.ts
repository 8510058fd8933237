import { describe, expect, it } from "vitest";
import { Errno } from "@vsva/kernel";
import { errnoOf } from "@vsva/kernel/testing";
import { IoasidCore } from "@vsva/ioasid";
import { VtdNestingDomain } from "@vsva/intel-svm";
import { GVA, vmHost } from "./nested-host.js";
import { PATTERN, bindBytes, dmaWrite } from "./test-host.js";

/**
 * The nesting life cycle as VFIO will drive it: through IommuCore only, on
 * the VT-d driver, with the public exports of both packages.
 */
describe("the IOASID set is fixed when the nesting domain is allocated", () => {
  it("the driver's domain gets the set from the core's allocation request, and the domain holds a set reference until it is freed", () => {
    const vm = vmHost();
    expect(vm.vtd).toBeInstanceOf(VtdNestingDomain);
    expect(vm.vtd.ioasidSet).toBe(vm.set);
    expect(vm.parent.ioasidSet).toBe(vm.set);
    expect(vm.set.refcount).toBe(2);
    vm.core.detachDevice(vm.parent, vm.pdev);
    vm.core.domainFree(vm.parent);
    expect(vm.set.refcount).toBe(1);
  });

  it("refuses a set the host's IOASID namespace does not know (EINVAL), leaving no domain behind", () => {
    const vm = vmHost();
    const foreign = new IoasidCore({ scheduler: vm.kernel.scheduler, trace: vm.kernel.trace, faults: vm.kernel.faults, log: vm.kernel.log, name: "other-pasid" });
    const theirs = foreign.allocSet({ vm: 9 }, 4, "mm");
    const live = vm.core.liveDomains;
    const pages = vm.pages.stats.livePages;
    expect(errnoOf(() => vm.core.domainAlloc(vm.pdev, { type: "unmanaged", nestingParent: true, ioasidSet: theirs }))).toBe(Errno.EINVAL);
    expect(vm.core.liveDomains).toBe(live);
    expect(vm.pages.stats.livePages).toBe(pages);
  });

  it("the core checks the set owns the PASID before it calls the driver: another VM's PASID is EACCES with no driver work and no reference taken", () => {
    const vm = vmHost();
    const other = vm.ioasid.allocSet({ vm: 2 }, 4, "mm");
    const theirs = vm.ioasid.alloc(other, 1, 0xfffff);
    const driverLines = (): number => vm.kernel.log.lines.filter((l) => l.key.startsWith("dmar0.")).length;
    const before = driverLines();
    expect(errnoOf(() => vm.core.bindGpasid(vm.parent, vm.pdev, bindBytes(theirs, { gpgd: vm.gpgd })))).toBe(Errno.EACCES);
    expect(errnoOf(() => vm.core.unbindGpasid(vm.parent, vm.pdev, bindBytes(theirs, { gpgd: vm.gpgd })))).toBe(Errno.EACCES);
    expect(driverLines()).toBe(before);
    expect(vm.ioasid.refcount(theirs)).toBe(1);
    expect(vm.drv.hw.device(vm.pdev).table.isPresent(theirs)).toBe(false);
    expect(dmaWrite(vm.ep, GVA, PATTERN, theirs)).toBe("translationFault");
  });
});
