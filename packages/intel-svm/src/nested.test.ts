import { describe, expect, it } from "vitest";
import { Errno, TraceRecorder, asHostPasid } from "@vsva/kernel";
import { PasidEntry, Pgtt } from "@vsva/iommu-hw";
import { IommuProt, VtdGpasidFlag } from "@vsva/iommu-core";
import { GPA_DATA, GUEST_HPA, GVA, bindData, vmHost } from "./nested-host.js";
import { PATTERN, bindBytes, dmaWrite } from "./test-host.js";
import { errnoOf } from "@vsva/kernel/testing";

describe("bind_gpasid: nested translation", () => {
  it("DMA with the host PASID goes through the guest first level and the domain's second level", () => {
    const vm = vmHost();
    const hpasid = vm.alloc();
    vm.core.bindGpasid(vm.parent, vm.pdev, bindBytes(hpasid, { gpgd: vm.gpgd, gpasid: 101 }));
    expect(dmaWrite(vm.ep, GVA + 0x40, PATTERN, hpasid)).toBe("ok");
    expect(vm.mem.read32(GUEST_HPA + GPA_DATA + 0x40)).toBe(0xefbeadde);
  });

  it("writes a nested entry: PGTT=3, first level = the guest's pgd (a GPA), second level and DID of the domain, flags from the bind", () => {
    const vm = vmHost();
    const hpasid = vm.alloc();
    vm.vtd.bindGpasid(vm.pdev, bindData(vm, hpasid, 101, { vtdFlags: VtdGpasidFlag.SRE | VtdGpasidFlag.WPE }));
    const e = vm.drv.hw.device(vm.pdev).table.read(hpasid);
    expect(e).not.toBeNull();
    if (e === null) return;
    const f = PasidEntry.decode(e);
    expect([f.P, f.PGTT, f.FLPTPTR * 4096, f.SLPTPTR * 4096, f.DID, f.SRE, f.WPE, f.EAFE, f.FLPM]).toEqual([
      1, Pgtt.NESTED, vm.gpgd, vm.vtd.writer.root, vm.vtd.did, 1, 1, 0, 0,
    ]);
  });

  it("takes an IOASID reference at bind and attaches the guest PASID (BIND); the last unbind detaches (UNBIND) and puts", () => {
    const vm = vmHost();
    const rec = new TraceRecorder(vm.kernel.trace);
    const hpasid = vm.alloc();
    vm.vtd.bindGpasid(vm.pdev, bindData(vm, hpasid, 101));
    expect(vm.ioasid.refcount(hpasid)).toBe(2);
    expect(vm.ioasid.info(hpasid)?.spid).toBe(101);
    vm.vtd.unbindGpasid(vm.pdev, asHostPasid(hpasid));
    expect(vm.ioasid.refcount(hpasid)).toBe(1);
    expect(vm.ioasid.info(hpasid)?.spid).toBeNull();
    expect(rec.ofKind("ioasid.notify").map((e) => e.payload.event)).toEqual(expect.arrayContaining(["BIND", "UNBIND"]));
  });

  it("unbind clears the entry with the full flush: no stale IOTLB or device-TLB translation serves the PASID afterwards", () => {
    const vm = vmHost();
    const hpasid = vm.alloc();
    vm.core.bindGpasid(vm.parent, vm.pdev, bindBytes(hpasid, { gpgd: vm.gpgd }));
    expect(dmaWrite(vm.ep, GVA, PATTERN, hpasid)).toBe("ok");
    expect([...vm.unit.cachedTranslations()].some((t) => t.hadPasid && t.pasid === hpasid)).toBe(true);
    vm.core.unbindGpasid(vm.parent, vm.pdev, bindBytes(hpasid, { gpgd: vm.gpgd }));
    expect([...vm.unit.cachedTranslations()].some((t) => t.hadPasid && t.pasid === hpasid)).toBe(false);
    expect([...vm.ep.deviceTlb.entries()].some((t) => t.pasid === hpasid)).toBe(false);
    expect(dmaWrite(vm.ep, GVA, PATTERN, hpasid)).toBe("translationFault");
    expect(vm.drv.hw.device(vm.pdev).table.isPresent(hpasid)).toBe(false);
  });

  it("unmapping guest RAM from the second level also reaches nested translations cached with it", () => {
    const vm = vmHost();
    const hpasid = vm.alloc();
    vm.core.bindGpasid(vm.parent, vm.pdev, bindBytes(hpasid, { gpgd: vm.gpgd }));
    expect(dmaWrite(vm.ep, GVA, PATTERN, hpasid)).toBe("ok");
    // Guest RAM was mapped with 2 MiB pages: the VMM unmaps the one holding the data page.
    expect(vm.core.unmap(vm.parent, 0, 2 * 1024 * 1024)).toBe(2 * 1024 * 1024);
    expect(vm.unit.checkCaches()).toEqual([]);
    expect([...vm.ep.deviceTlb.entries()].some((t) => t.pasid === hpasid)).toBe(false);
    expect(dmaWrite(vm.ep, GVA, PATTERN, hpasid)).toBe("translationFault");
    vm.core.map(vm.parent, 0, GUEST_HPA, 2 * 1024 * 1024, IommuProt.READ | IommuProt.WRITE);
    expect(dmaWrite(vm.ep, GVA, PATTERN, hpasid)).toBe("ok");
  });

  it("refuses a second bind on the same device (EBUSY), and a sub-device, which the core resolves to its physical device (EINVAL)", () => {
    const vm = vmHost();
    const hpasid = vm.alloc();
    const data = bindData(vm, hpasid);
    vm.vtd.bindGpasid(vm.pdev, data);
    expect(errnoOf(() => vm.vtd.bindGpasid(vm.pdev, data))).toBe(Errno.EBUSY);
    const mdev = vm.core.addSubDevice(vm.pdev, "wq0");
    expect(errnoOf(() => vm.vtd.bindGpasid(mdev, bindData(vm, vm.alloc())))).toBe(Errno.EINVAL);
    expect(vm.ioasid.refcount(hpasid)).toBe(2);
    expect(vm.drv.nested.svmOf(hpasid)?.users).toBe(1);
  });

  it("an unbind of a live PASID not bound here is EINVAL; of a freed PASID ENOENT; both leave state alone", () => {
    const vm = vmHost();
    const hpasid = vm.alloc();
    expect(errnoOf(() => vm.drv.nested.unbind(vm.vtd, vm.pdev, hpasid))).toBe(Errno.EINVAL);
    vm.ioasid.free(vm.set, hpasid);
    expect(errnoOf(() => vm.drv.nested.unbind(vm.vtd, vm.pdev, hpasid))).toBe(Errno.ENOENT);
    // The domain op cannot fail: it logs.
    const lines = vm.kernel.log.lines.length;
    vm.vtd.unbindGpasid(vm.pdev, asHostPasid(hpasid));
    expect(vm.kernel.log.lines.length).toBe(lines + 1);
  });
});

describe("bind_gpasid refusals (each one rate-limited in the log)", () => {
  interface Case {
    readonly name: string;
    readonly errno: Errno;
    readonly setup: (vm: ReturnType<typeof vmHost>) => () => void;
    readonly opts?: Parameters<typeof vmHost>[0];
  }
  const c = (name: string, errno: Errno, setup: Case["setup"], opts?: Case["opts"]): Case => (opts === undefined ? { name, errno, setup } : { name, errno, setup, opts });
  const cases: readonly Case[] = [
    c("host PASID 0", Errno.EINVAL, (vm) => () => vm.vtd.bindGpasid(vm.pdev, bindData(vm, 0))),
    c("host PASID beyond a narrower unit's table", Errno.EINVAL, (vm) => () => vm.vtd.bindGpasid(vm.pdev, bindData(vm, 0x400)), { pasidBits: 10 }),
    c("PASID not allocated", Errno.ENOENT, (vm) => () => vm.vtd.bindGpasid(vm.pdev, bindData(vm, 0x77))),
    c(
      "PASID owned by another VM's set",
      Errno.EACCES,
      (vm) => {
        const other = vm.ioasid.allocSet({ vm: 2 }, 4, "mm");
        const theirs = vm.ioasid.alloc(other, 1, 0xfffff);
        return () => vm.vtd.bindGpasid(vm.pdev, bindData(vm, theirs));
      },
    ),
    c(
      "PASID being freed",
      Errno.ENOENT,
      (vm) => {
        const p = vm.alloc();
        vm.ioasid.get(vm.set, p);
        vm.ioasid.free(vm.set, p);
        return () => vm.vtd.bindGpasid(vm.pdev, bindData(vm, p));
      },
    ),
    c(
      "device without the full 20-bit PASID space",
      Errno.EINVAL,
      (vm) => {
        const narrow = vm.core.probeDevice(vm.iommu, { name: "narrow", sid: (vm.ep.sid + 8) as never, pasidWidth: 16 });
        return () => vm.vtd.bindGpasid(narrow, bindData(vm, vm.alloc()));
      },
    ),
    c("5-level guest on a unit without FL5LP", Errno.EINVAL, (vm) => () => vm.vtd.bindGpasid(vm.pdev, bindData(vm, vm.alloc(), undefined, { addrWidth: 57 })), { firstLevel5: false, mgaw: 48 }),
    c("guest width above MGAW", Errno.EINVAL, (vm) => () => vm.vtd.bindGpasid(vm.pdev, bindData(vm, vm.alloc(), undefined, { addrWidth: 57 })), { mgaw: 48 }),
    c("guest pgd not page aligned", Errno.EINVAL, (vm) => () => vm.vtd.bindGpasid(vm.pdev, bindData(vm, vm.alloc(), undefined, { gpgd: 0x1008 }))),
    c("guest pgd beyond the second level", Errno.EINVAL, (vm) => () => vm.vtd.bindGpasid(vm.pdev, bindData(vm, vm.alloc(), undefined, { gpgd: 2 ** 50 }))),
    c("EAFE on a unit without EAFS", Errno.EINVAL, (vm) => () => vm.vtd.bindGpasid(vm.pdev, bindData(vm, vm.alloc(), undefined, { vtdFlags: VtdGpasidFlag.EAFE }))),
    c("memory-type flags", Errno.EINVAL, (vm) => () => vm.vtd.bindGpasid(vm.pdev, bindData(vm, vm.alloc(), undefined, { vtdFlags: VtdGpasidFlag.PCD }))),
    c(
      "PASID already bound to another first level",
      Errno.EBUSY,
      (vm) => {
        const p = vm.alloc();
        vm.vtd.bindGpasid(vm.pdev, bindData(vm, p));
        return () => vm.vtd.bindGpasid(vm.pdev, bindData(vm, p, undefined, { gpgd: 0x2000 }));
      },
    ),
  ];

  it.each(cases)("$name -> errno $errno, nothing programmed, no reference kept", ({ errno, setup, opts }) => {
    const vm = vmHost(opts ?? {});
    const run = setup(vm);
    const live = vm.pages.stats.livePages;
    const refs = [...vm.drv.nested.svms.keys()].length;
    const logged = vm.kernel.log.lines.filter((l) => l.key === "dmar0.bind-gpasid").length;
    expect(errnoOf(run)).toBe(errno);
    expect(vm.pages.stats.livePages).toBe(live);
    expect([...vm.drv.nested.svms.keys()].length).toBe(refs);
    expect(vm.kernel.log.lines.filter((l) => l.key === "dmar0.bind-gpasid").length).toBe(logged + 1);
  });
});
