import { describe, expect, it } from "vitest";
import { Errno, KernelError, NOTIFY_DONE, NOTIFY_OK, TraceRecorder, asGuestPasid, asHostPasid } from "@vsva/kernel";
import { type IoasidEvent, type IoasidNotifyData, IoasidPriority } from "@vsva/ioasid";
import { GVA, vmHost } from "./nested-host.js";
import { PATTERN, bindBytes, dmaWrite } from "./test-host.js";

/** A KVM-like subscriber (CPU priority): a reference from BIND until UNBIND or FREE. */
function kvm(vm: ReturnType<typeof vmHost>) {
  const order: string[] = [];
  const held = new Set<number>();
  const nb = {
    priority: IoasidPriority.CPU,
    call(event: IoasidEvent, d: IoasidNotifyData): number {
      if (event !== "ALLOC") order.push(`KVM:${event}`);
      if (event === "BIND") {
        vm.ioasid.get(d.set, d.id);
        held.add(d.id);
        return NOTIFY_OK;
      }
      if ((event === "UNBIND" || event === "FREE") && held.delete(d.id)) {
        vm.ioasid.put(d.set, d.id);
        return NOTIFY_OK;
      }
      return NOTIFY_DONE;
    },
  };
  vm.ioasid.registerNotifier(vm.set, nb);
  return order;
}

describe("IOASID life cycle of a guest PASID (seed 003, IOMMU column)", () => {
  it("normal order: refs 1, 2 (bind), 3 (KVM on BIND), 2 (KVM on UNBIND), 1 (unbind puts), 0 at free; reclaimed", () => {
    const vm = vmHost();
    kvm(vm);
    const hpasid = vm.alloc();
    const refs = [vm.ioasid.refcount(hpasid)];
    vm.core.bindGpasid(vm.parent, vm.pdev, bindBytes(hpasid, { gpgd: vm.gpgd, gpasid: 101 }));
    refs.push(vm.ioasid.refcount(hpasid));
    vm.core.unbindGpasid(vm.parent, vm.pdev, bindBytes(hpasid, { gpgd: vm.gpgd, gpasid: 101 }));
    refs.push(vm.ioasid.refcount(hpasid));
    vm.ioasid.free(vm.set, hpasid);
    refs.push(vm.ioasid.refcount(hpasid));
    expect(refs).toEqual([1, 3, 1, 0]);
    expect(vm.ioasid.state(hpasid)).toBe("IDLE");
  });

  it("FREE before unbind: the atomic handler only queues work; the work tears the PASID down on every device and drops the reference; the late unbind fails cleanly", () => {
    const vm = vmHost();
    const order = kvm(vm);
    const rec = new TraceRecorder(vm.kernel.trace);
    const hpasid = vm.alloc();
    const mdev = vm.core.addSubDevice(vm.pdev, "wq0");
    vm.core.attachSubDevice(vm.parent, mdev);
    vm.core.bindGpasidData(vm.parent, mdev, decode(vm, hpasid));
    expect(dmaWrite(vm.ep, GVA, PATTERN, hpasid)).toBe("ok");
    expect(vm.ioasid.refcount(hpasid)).toBe(3);

    vm.ioasid.free(vm.set, hpasid);
    // Handlers ran: KVM put its reference at once (CPU priority, first); the driver only queued its teardown.
    expect(order).toEqual(["KVM:BIND", "KVM:FREE"]);
    expect(vm.ioasid.state(hpasid)).toBe("FREE_PENDING");
    expect(vm.ioasid.refcount(hpasid)).toBe(1);
    expect(vm.drv.freeHandler.pending).toBe(1);
    expect(vm.drv.hw.device(vm.pdev).table.isPresent(hpasid)).toBe(true);

    vm.kernel.scheduler.drain();
    expect(vm.drv.freeHandler.pending).toBe(0);
    expect(vm.drv.hw.device(vm.pdev).table.isPresent(hpasid)).toBe(false);
    expect(vm.ioasid.state(hpasid)).toBe("IDLE");
    expect(dmaWrite(vm.ep, GVA, PATTERN, hpasid)).toBe("translationFault");
    expect(rec.ofKind("vtd-drv.free-teardown").map((e) => e.payload.devices)).toEqual([1]);
    // No UNBIND after FREE: the SPID was detached silently.
    expect(order).toEqual(["KVM:BIND", "KVM:FREE"]);

    let errno = 0;
    try {
      vm.drv.nested.unbind(vm.vtd, mdev, hpasid);
    } catch (e) {
      if (e instanceof KernelError) errno = e.errno;
    }
    expect(errno).toBe(Errno.ENOENT);
    vm.vtd.unbindGpasid(mdev, asHostPasid(hpasid));
    expect(vm.ioasid.state(hpasid)).toBe("IDLE");
  });

  it("a bind between FREE and the queued teardown is refused (ENOENT)", () => {
    const vm = vmHost();
    const hpasid = vm.alloc();
    vm.vtd.bindGpasid(vm.pdev, decode(vm, hpasid));
    vm.ioasid.free(vm.set, hpasid);
    const mdev = vm.core.addSubDevice(vm.pdev, "wq1");
    vm.core.attachSubDevice(vm.parent, mdev);
    let errno = 0;
    try {
      vm.core.bindGpasidData(vm.parent, mdev, decode(vm, hpasid));
    } catch (e) {
      if (e instanceof KernelError) errno = e.errno;
    }
    expect(errno).toBe(Errno.ENOENT);
    vm.kernel.scheduler.drain();
    expect(vm.ioasid.state(hpasid)).toBe("IDLE");
  });
});

function decode(vm: ReturnType<typeof vmHost>, hpasid: number) {
  return { format: 1 as const, addrWidth: 48 as const, gpgd: BigInt(vm.gpgd), hpasid: asHostPasid(hpasid), gpasid: asGuestPasid(101), vtd: { flags: 0, pat: 0, emt: 0 } };
}
